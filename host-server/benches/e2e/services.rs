//! The servers measured: `ferry-server`, nginx (TLS 1.3, client certificates, WebDAV PUT) and
//! sshd (for scp, sftp and rsync), each on 127.0.0.1 and stopped by its process id.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::config::SSH_CIPHER;
use crate::procs::{parent_of, process_tree, run_plain, signal};

/// A server we started; stopped by its process id when dropped.
pub struct Service {
    name: String,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let pid = self.pid();
        let tree = process_tree(pid);
        signal(pid, Signal::TERM);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= until => {
                    eprintln!(
                        "e2e: {} ({pid}) did not stop on SIGTERM: SIGKILL",
                        self.name
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
        // Processes it started (nginx workers) must not outlive it.
        for other in tree.into_iter().skip(1) {
            if parent_of(other).is_some_and(|ppid| ppid == pid || ppid == 1) {
                signal(other, Signal::KILL);
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_for_port(port: u16, service: &mut Service, log: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!(
                "{} exited ({status}) before it listened:\n{}",
                service.name,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not listen on port {port}", service.name);
}

pub struct FerryServer {
    pub service: Service,
    pub addr: SocketAddr,
    /// STORAGE/<client name>/files/<name>.
    pub storage: PathBuf,
}

pub fn start_ferry(bin: &Path, storage: &Path, certs: &Path, log: &Path) -> FerryServer {
    let child = Command::new(bin)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--storage")
        .arg(storage)
        .arg("--certs")
        .arg(certs)
        // The file server alone: no web page beside it.
        .arg("--no-web")
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .expect("start ferry-server");
    let mut service = Service {
        name: "ferry-server".into(),
        child,
    };
    let stdout = service.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                    break addr.trim().parse().expect("an address");
                }
            }
            _ => panic!(
                "ferry-server exited before it listened:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ),
        }
    };
    thread::spawn(move || for _ in lines {});
    FerryServer {
        service,
        addr,
        storage: storage.to_path_buf(),
    }
}

pub struct Nginx {
    pub service: Service,
    pub port: u16,
    /// Where PUT stores files and GET serves them from.
    pub root: PathBuf,
}

pub fn start_nginx(dir: &Path, certs: &Path) -> Nginx {
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::create_dir_all(dir.join("body")).unwrap();
    fs::create_dir_all(dir.join("logs")).unwrap();
    let port = free_port();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 2;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certs}/server.crt;
        ssl_certificate_key {certs}/server.key;
        ssl_protocols TLSv1.3;
        ssl_client_certificate {certs}/ca.crt;
        ssl_verify_client on;
        client_max_body_size 0;
        location / {{
            root {dir}/www;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"#,
        dir = dir.display(),
        certs = certs.display(),
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).unwrap();
    let log = dir.join("error.log");
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start nginx");
    let mut service = Service {
        name: "nginx".into(),
        child,
    };
    wait_for_port(port, &mut service, &dir.join("stderr.log"));
    // Both workers up before any measurement.
    let until = Instant::now() + Duration::from_secs(10);
    while process_tree(service.pid()).len() < 3 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        service,
        port,
        root: dir.join("www"),
    }
}

pub struct Sshd {
    pub service: Service,
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    user: String,
    /// The directory the ssh tools copy to and from.
    pub remote: PathBuf,
}

pub fn start_sshd(dir: &Path) -> Sshd {
    fs::create_dir_all(dir).unwrap();
    let remote = dir.join("remote");
    fs::create_dir_all(&remote).unwrap();
    let host_key = dir.join("host_ed25519");
    let key = dir.join("user_ed25519");
    for path in [&host_key, &key] {
        run_plain(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-e2e", "-f"])
                .arg(path),
        );
    }
    fs::copy(dir.join("user_ed25519.pub"), dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let host_pub = fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known_hosts = dir.join("known_hosts");
    fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
    )
    .unwrap();
    let user = run_plain(Command::new("id").arg("-un")).trim().to_string();
    let sftp_server = if Path::new("/usr/lib/openssh/sftp-server").exists() {
        "/usr/lib/openssh/sftp-server"
    } else {
        "internal-sftp"
    };
    let conf = format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
MaxStartups 64:30:128
Ciphers {SSH_CIPHER}
Subsystem sftp {sftp_server}
",
        host_key = host_key.display(),
        dir = dir.display(),
    );
    let conf_path = dir.join("sshd_config");
    fs::write(&conf_path, conf).unwrap();
    // sshd's privilege separation directory.
    let _ = fs::create_dir_all("/run/sshd");
    let log = dir.join("sshd.log");
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start sshd");
    let mut service = Service {
        name: "sshd".into(),
        child,
    };
    wait_for_port(port, &mut service, &log);
    Sshd {
        service,
        port,
        key,
        known_hosts,
        user,
        remote,
    }
}

impl Sshd {
    /// Options for ssh, scp and sftp (`-F /dev/null`: no user configuration).
    fn options(&self) -> Vec<String> {
        let mut options = vec!["-F".to_string(), "/dev/null".to_string()];
        options.push("-i".into());
        options.push(self.key.display().to_string());
        options.push("-c".into());
        options.push(SSH_CIPHER.into());
        for option in [
            "IdentitiesOnly=yes".to_string(),
            "BatchMode=yes".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "Compression=no".to_string(),
            "LogLevel=ERROR".to_string(),
        ] {
            options.push("-o".into());
            options.push(option);
        }
        options
    }

    pub fn target(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.user, path.display())
    }

    pub fn scp(&self) -> Command {
        let mut cmd = Command::new("scp");
        cmd.arg("-q")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.options());
        cmd
    }

    pub fn sftp(&self, batch: &Path) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.arg("-q")
            .arg("-P")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(batch)
            .args(self.options())
            .arg(format!("{}@127.0.0.1", self.user));
        cmd
    }

    pub fn rsync(&self) -> Command {
        let mut ssh = format!("ssh -p {}", self.port);
        for option in self.options() {
            ssh.push(' ');
            ssh.push_str(&option);
        }
        let mut cmd = Command::new("rsync");
        cmd.arg("-a").arg("-e").arg(ssh);
        cmd
    }
}
