//! Outside servers for the cluster tests, each a real process on 127.0.0.1 at an ephemeral
//! port in a temporary directory, stopped by pid when its value drops:
//!
//! - [`Postgres`]: a fresh PostgreSQL cluster (initdb, then `postgres`); one database per
//!   test with [`Postgres::create_database`].
//! - [`S3Server`]: `s3s-fs`, a single-node S3 server on a directory; a bucket is a
//!   directory under its root ([`S3Server::create_bucket`]).
//! - [`Garage`]: an n-node Garage cluster on this machine (opt-in runs only).
//! - [`HaProxy`]: `haproxy` in the foreground with a configuration given as text.
//!
//! Flow: `start` finds the binary (a clear [`std::io::ErrorKind::NotFound`] naming the
//! README's test command when it is missing), picks a free port, spawns the process with
//! its output in a log file of its directory and waits until it answers; when the process
//! exits first (the port was taken meanwhile) it retries on another port. Errors carry the
//! log's tail. [`Postgres::shared`] and [`S3Server::shared`] hand one server to the tests
//! of a binary that run at the same time and stop it when the last one drops it.
//!
//! Synchronous on purpose (Drop stops the process): from async code call `start` inside
//! `tokio::task::spawn_blocking` or accept that it blocks a worker for a second or two.

mod garage;
mod haproxy;
mod postgres;
mod process;
mod s3;

pub use garage::{Garage, GarageNode};
pub use haproxy::HaProxy;
pub use postgres::Postgres;
pub use process::{free_port, wait_listening, Daemon};
pub use s3::S3Server;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    #[test]
    fn postgres_serves_a_database_per_test_and_stops_on_drop() {
        let postgres = Postgres::start().unwrap();
        let url = postgres.unique_database("harness").unwrap();
        assert!(url.starts_with(&format!(
            "postgres://postgres@127.0.0.1:{}/harness_",
            postgres.port()
        )));
        let database = url.rsplit('/').next().unwrap();
        postgres
            .psql(
                database,
                "CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)",
            )
            .unwrap();
        assert_eq!(
            postgres
                .psql(database, "SELECT sum(n) FROM t")
                .unwrap()
                .trim(),
            "42"
        );
        assert!(postgres.create_database("Bad-Name").is_err());
        let addr = SocketAddr::from(([127, 0, 0, 1], postgres.port()));
        drop(postgres);
        assert!(
            TcpStream::connect(addr).is_err(),
            "nothing listens after drop"
        );
    }

    #[test]
    fn s3s_fs_answers_and_a_bucket_is_a_directory() {
        let mut s3 = S3Server::start().unwrap();
        s3.create_bucket("ferry-harness").unwrap();
        assert!(s3.root().join("ferry-harness").is_dir());
        assert!(s3.create_bucket("x").is_err());
        // An unsigned request is refused by the S3 server itself (an HTTP answer).
        let mut stream = TcpStream::connect(("127.0.0.1", s3.port())).unwrap();
        stream
            .write_all(b"GET /ferry-harness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        s3.kill();
        assert!(TcpStream::connect(("127.0.0.1", s3.port())).is_err());
    }

    #[test]
    fn haproxy_relays_tcp_to_a_backend() {
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let front = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let config = format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend f\n  bind {front}\n  default_backend b\n\
             backend b\n  server s1 {backend_addr}\n"
        );
        let mut haproxy = HaProxy::start(&config).unwrap();
        haproxy.wait_listening(front).unwrap();
        let echo = std::thread::spawn(move || loop {
            let (mut conn, _) = backend.accept().unwrap();
            let mut byte = [0u8; 5];
            // The wait above may have opened (and closed) a connection: skip it.
            if conn.read_exact(&mut byte).is_ok() {
                conn.write_all(&byte).unwrap();
                return;
            }
        });
        let mut client = TcpStream::connect(front).unwrap();
        client.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
    }

    /// Run twice: by the test runner, then (with FERRY_WATCHDOG_CHILD) as a child process
    /// that starts a daemon and exits without dropping it.
    #[test]
    fn a_daemon_is_stopped_when_the_process_that_started_it_dies() {
        if std::env::var_os("FERRY_WATCHDOG_CHILD").is_some() {
            let dir = tempfile::tempdir().unwrap();
            let mut sleep = std::process::Command::new("sleep");
            sleep.arg("60");
            let daemon = Daemon::spawn(
                "sleep",
                sleep,
                &dir.path().join("log"),
                "TERM",
                std::time::Duration::from_secs(1),
            )
            .unwrap();
            println!("daemon pid {}", daemon.pid());
            std::mem::forget(daemon);
            std::process::exit(0);
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cluster::tests::a_daemon_is_stopped_when_the_process_that_started_it_dies",
                "--nocapture",
            ])
            .env("FERRY_WATCHDOG_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let pid: u32 = stdout
            .lines()
            .find_map(|line| line.strip_prefix("daemon pid "))
            .unwrap_or_else(|| panic!("no pid in {stdout}"))
            .trim()
            .parse()
            .unwrap();
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Gone, or a zombie left to init to reap.
        let alive = || {
            std::fs::read_to_string(proc_dir.join("stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false)
        };
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "daemon {pid} outlived its parent"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    #[test]
    fn a_missing_binary_names_the_install_command() {
        let error = process::find_binary("ferry-no-such-binary", &[]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(error.to_string().contains(".ci/test-deps"), "{error}");
    }
}
