//! The real `ferry-server` (its library: [`ferry_server::Server`]) serving on 127.0.0.1:0
//! from a task of the calling tokio runtime. Stops when dropped (or on [`InProcess::stop`]).
//!
//! A test without a runtime of its own (one that runs the `ferry` binary, say) builds a
//! multi-threaded runtime, starts the server with `runtime.block_on(...)` and keeps the
//! runtime alive as long as the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_server::{Server, ServerOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pki::Pki;

/// A server running in this process.
pub struct InProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The directory holding `storage/` and `certs/`.
    pub root: PathBuf,
    /// Its certificate directory (created by the server on its first start).
    pub certs: PathBuf,
    /// Its storage directory.
    pub storage: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl InProcess {
    /// Starts a server with storage and certificates under `root` (kept after the server
    /// stops, so that a second server can start on the same files). `adjust` changes the
    /// options before the server binds.
    pub async fn start(root: &Path, adjust: impl FnOnce(&mut ServerOptions)) -> InProcess {
        Self::start_in(root, None, adjust).await
    }

    /// Starts a server with storage and certificates in a temporary directory that is
    /// removed when this value drops.
    pub async fn start_temp(adjust: impl FnOnce(&mut ServerOptions)) -> InProcess {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let root = temp.path().to_path_buf();
        Self::start_in(&root, Some(temp), adjust).await
    }

    async fn start_in(
        root: &Path,
        temp: Option<tempfile::TempDir>,
        adjust: impl FnOnce(&mut ServerOptions),
    ) -> InProcess {
        let mut options = ServerOptions {
            listen: "127.0.0.1:0".into(),
            ..ServerOptions::in_data_dir(ferry_certs::DataDir::new(root))
        };
        adjust(&mut options);
        let (certs, storage) = (options.certs.clone(), options.storage.clone());
        let server = Server::bind(options).await.expect("ferry-server binds");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("ferry-server serves");
        });
        InProcess {
            addr,
            root: root.to_path_buf(),
            certs,
            storage,
            stop: Some(stop),
            task: Some(task),
            _temp: temp,
        }
    }

    /// The server's certificate directory.
    pub fn pki(&self) -> Pki {
        Pki::open(&self.certs)
    }

    /// The storage directory of client `name` (the server keys files on the name).
    pub fn identity_dir(&self, name: &str) -> PathBuf {
        self.storage.join(name)
    }

    /// Where the server keeps the committed file `file` of client `client`.
    pub fn stored(&self, client: &str, file: &str) -> PathBuf {
        self.identity_dir(client).join("files").join(file)
    }

    /// Rots the stored copy of `file` of client `client` on disk: flips the byte at
    /// `offset` in place, so size, inode and the recorded digest stay as they were.
    pub fn rot(&self, client: &str, file: &str, offset: usize) {
        let path = self.stored(client, file);
        let mut bytes = std::fs::read(&path).expect("the stored file");
        bytes[offset] ^= 0x55;
        std::fs::write(&path, bytes).expect("rewriting the stored file");
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("ferry-server stopped");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_tokio::client::Client;

    #[tokio::test]
    async fn a_client_stores_a_file_where_stored_says() {
        let server = InProcess::start_temp(|options| options.quota = 1 << 20).await;
        assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
        let dir = tempfile::tempdir().unwrap();
        let data = crate::data::pseudo_random(100_000, 3);
        let path = crate::data::write_file(dir.path(), "f", &data);
        let options = server.pki().client_options("local", server.addr);
        let mut client = Client::connect(options).await.unwrap();
        client.upload_file(&path, "f", &mut |_| {}).await.unwrap();
        assert_eq!(std::fs::read(server.stored("local", "f")).unwrap(), data);

        server.rot("local", "f", 10);
        let rotten = std::fs::read(server.stored("local", "f")).unwrap();
        assert_eq!(rotten.len(), data.len());
        assert_ne!(rotten[10], data[10]);
        assert_eq!(rotten[..10], data[..10]);
        client.close().await;
    }

    #[tokio::test]
    async fn stop_returns_once_the_server_has_stopped() {
        let mut server = InProcess::start_temp(|_| {}).await;
        server.stop().await;
        let refused = tokio::net::TcpStream::connect(server.addr).await;
        assert!(refused.is_err(), "nothing listens after stop");
    }
}
