//! Browser sessions: each one a random secret (the cookie) bound to a client certificate
//! issued on the fly, kept in memory, bounded in number and forgotten when idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_certs::{Ca, CertDir, IssuedClient};
use ferry_tokio::client::ClientOptions;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "ferry_session";

/// Fills `buf` from the system's secure random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    ferry_certs::crypto_provider()
        .secure_random
        .fill(buf)
        .expect("the system random number generator failed");
}

/// A fresh random secret: 32 bytes as 64 hex digits.
pub(crate) fn random_hex32() -> String {
    let mut buf = [0u8; 32];
    random_bytes(&mut buf);
    hex::encode(buf)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// One browser session and its identity.
pub(crate) struct Session {
    /// The client certificate's name (`web-<12 hex>`).
    pub name: String,
    /// The token every state-changing request must carry (64 hex digits).
    pub csrf: String,
    /// The certificate, key and CA.
    pub issued: IssuedClient,
    /// How the ferry-tokio client connects as this identity.
    pub client: ClientOptions,
    /// Milliseconds since the store started, at the last request.
    last_used: AtomicU64,
}

impl Session {
    /// The identity's fingerprint (the server's namespace for it).
    pub fn fingerprint(&self) -> &str {
        &self.issued.fingerprint
    }
}

/// Why no session could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Every slot is taken by a session in use.
    #[error("too many sessions in use ({0}); try again later")]
    Full(usize),
    /// The certificate could not be issued or recorded.
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
}

/// The sessions, keyed by the SHA-256 of their secret.
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    /// Issuing and recording one certificate at a time (the index file is rewritten).
    ca: Arc<Mutex<Ca>>,
    certs_dir: PathBuf,
    server: String,
    cert_days: u32,
    max: usize,
    idle: Duration,
    started: Instant,
}

impl Sessions {
    pub fn new(
        ca: Ca,
        certs_dir: PathBuf,
        server: String,
        cert_days: u32,
        max: usize,
        idle: Duration,
    ) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ca: Arc::new(Mutex::new(ca)),
            certs_dir,
            server,
            cert_days,
            max,
            idle,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle_ms(&self) -> u64 {
        u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// The session whose cookie value is `secret`, marked as used now.
    pub fn get(&self, secret: &str) -> Option<Arc<Session>> {
        if secret.len() != 64 {
            return None;
        }
        let key = sha256(secret.as_bytes());
        let now = self.now_ms();
        let mut map = self.map.lock().expect("sessions lock");
        let session = map.get(&key)?.clone();
        if now.saturating_sub(session.last_used.load(Ordering::Relaxed)) > self.idle_ms() {
            map.remove(&key);
            return None;
        }
        session.last_used.store(now, Ordering::Relaxed);
        Some(session)
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    /// Forgets the sessions idle for longer than the limit; returns how many.
    pub fn expire(&self) -> usize {
        let now = self.now_ms();
        let idle = self.idle_ms();
        let mut map = self.map.lock().expect("sessions lock");
        let before = map.len();
        map.retain(|_, s| now.saturating_sub(s.last_used.load(Ordering::Relaxed)) <= idle);
        before - map.len()
    }

    /// Makes a session: issues and records its certificate. Returns the cookie secret and
    /// the session.
    pub async fn create(&self) -> Result<(String, Arc<Session>), SessionError> {
        if self.len() >= self.max {
            self.expire();
            if self.len() >= self.max {
                return Err(SessionError::Full(self.max));
            }
        }
        let mut id = [0u8; 6];
        random_bytes(&mut id);
        let name = format!("web-{}", hex::encode(id));
        let ca = self.ca.clone();
        let certs_dir = self.certs_dir.clone();
        let days = self.cert_days;
        let server = self.server.clone();
        let issue_name = name.clone();
        let (issued, client) = tokio::task::spawn_blocking(move || {
            let ca = ca.lock().expect("CA lock");
            let issued = ca
                .issue_client(&issue_name, days)
                .map_err(|e| SessionError::Issue(e.to_string()))?;
            CertDir::new(&certs_dir)
                .record_client(&issued)
                .map_err(|e| SessionError::Issue(e.to_string()))?;
            let client =
                ClientOptions::from_pem(&server, &issued.ca_pem, &issued.cert_pem, &issued.key_pem)
                    .map_err(|e| SessionError::Issue(e.to_string()))?;
            Ok::<_, SessionError>((issued, client))
        })
        .await
        .map_err(|e| SessionError::Issue(format!("the issuing task failed: {e}")))??;
        let secret = random_hex32();
        let session = Arc::new(Session {
            name,
            csrf: random_hex32(),
            issued,
            client,
            last_used: AtomicU64::new(self.now_ms()),
        });
        let mut map = self.map.lock().expect("sessions lock");
        if map.len() >= self.max {
            return Err(SessionError::Full(self.max));
        }
        map.insert(sha256(secret.as_bytes()), session.clone());
        drop(map);
        tracing::info!(
            "new session: identity {} (fingerprint {})",
            session.name,
            session.fingerprint()
        );
        Ok((secret, session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_hex() {
        let a = random_hex32();
        let b = random_hex32();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    fn store(dir: &std::path::Path, max: usize, idle: Duration) -> Sessions {
        let certs = CertDir::new(dir);
        ferry_certs::init(&certs, &ferry_certs::InitOptions::default()).unwrap();
        Sessions::new(
            certs.load_ca().unwrap(),
            dir.to_path_buf(),
            "127.0.0.1:9".into(),
            1,
            max,
            idle,
        )
    }

    #[tokio::test]
    async fn sessions_are_capped_and_recorded_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = store(dir.path(), 2, Duration::from_secs(60));
        let (secret, session) = sessions.create().await.unwrap();
        assert!(session.name.starts_with("web-"));
        assert_eq!(
            sessions.get(&secret).unwrap().fingerprint(),
            session.fingerprint()
        );
        assert!(sessions.get(&random_hex32()).is_none());
        assert!(sessions.get("short").is_none());
        let (_, other) = sessions.create().await.unwrap();
        assert_ne!(other.fingerprint(), session.fingerprint());
        assert_ne!(other.csrf, session.csrf);
        assert!(matches!(
            sessions.create().await,
            Err(SessionError::Full(2))
        ));
        let listed = CertDir::new(dir.path()).list().unwrap();
        assert!(listed.iter().any(|e| e.name == session.name));
        assert!(listed.iter().any(|e| e.name == other.name));
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_free_their_slot() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = store(dir.path(), 1, Duration::from_millis(50));
        let (secret, _) = sessions.create().await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        // The slot is free again: the idle session is dropped to make room.
        let (fresh, _) = sessions.create().await.unwrap();
        assert!(sessions.get(&secret).is_none());
        assert!(sessions.get(&fresh).is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(sessions.expire(), 1);
        assert_eq!(sessions.len(), 0);
    }
}
