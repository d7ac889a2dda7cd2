//! Browser sessions: each one a random secret (the cookie) bound to a client certificate,
//! issued when the browser first needs one (or loaded from a bundle the user kept). Sessions
//! are kept on disk ([`crate::store`]) so that they outlive restarts of the page and of the
//! Ferry server, with the most recently used ones cached in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_certs::{Ca, CertDir, ClientIdentity};
use ferry_tokio::client::{Client, ClientOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::shared::{Change, SharedSessions};
use crate::store::{Record, Store};

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

/// Milliseconds since the epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One browser session and its identity.
pub(crate) struct Session {
    /// SHA-256 of the cookie secret: the key of the session's record.
    key: [u8; 32],
    /// What is kept on disk (the `stored` field is tracked by [`Session::stored`]).
    record: Record,
    /// Whether a file was stored under this identity from the page.
    stored: AtomicBool,
    /// How the ferry-tokio client connects as this identity.
    pub client: ClientOptions,
    /// Milliseconds since the epoch, at the last request.
    last_used: AtomicU64,
}

impl Session {
    fn from_record(key: [u8; 32], record: Record, server: &str) -> Result<Session, SessionError> {
        let client =
            ClientOptions::from_pem(server, &record.ca_pem, &record.cert_pem, &record.key_pem)
                .map_err(|e| SessionError::Issue(e.to_string()))?;
        Ok(Session {
            key,
            stored: AtomicBool::new(record.stored),
            record,
            client,
            last_used: AtomicU64::new(now_ms()),
        })
    }

    /// The certificate's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The token every state-changing request must carry (64 hex digits).
    pub fn csrf(&self) -> &str {
        &self.record.csrf
    }

    /// The identity's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.record.fingerprint
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.record.cert_pem
    }

    /// The private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.record.key_pem
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.record.ca_pem
    }

    /// Certificate, key and CA in one PEM file (what [`Sessions::import`] takes back).
    pub fn bundle_pem(&self) -> String {
        let mut s = String::new();
        for part in [self.cert_pem(), self.key_pem(), self.ca_pem()] {
            s.push_str(part);
            if !part.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }

    fn current_record(&self) -> Record {
        Record {
            stored: self.stored.load(Ordering::Relaxed),
            ..self.record.clone()
        }
    }
}

/// Why no session could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Every slot is taken by a session with a request running.
    #[error("too many sessions in use ({0}); try again later")]
    Full(usize),
    /// The certificate could not be issued or recorded.
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
    /// A bundle the user loaded is not a usable identity of this CA.
    #[error("{0}")]
    Bundle(String),
    /// The session could not be kept on disk.
    #[error("cannot keep the session: {0}")]
    Store(#[from] std::io::Error),
}

/// How sessions are kept.
pub(crate) struct SessionConfig {
    pub certs_dir: PathBuf,
    pub state_dir: PathBuf,
    pub server: String,
    pub cert_days: u32,
    /// Sessions cached in memory at once.
    pub max: usize,
    /// Lifetime of a session (the cookie's Max-Age).
    pub idle: Duration,
    /// Age after which an identity this page issued and that never stored a file is revoked.
    pub prune_unused: Duration,
}

/// The sessions, keyed by the SHA-256 of their secret. Every live session is in memory
/// (loaded from disk at start), so the cap counts them all.
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    /// Issuing, recording and revoking one certificate at a time (the index is rewritten).
    ca: Arc<Mutex<Ca>>,
    store: Store,
    config: SessionConfig,
    /// Making room and adding a session, one newcomer at a time, so the cap holds.
    admission: tokio::sync::Mutex<()>,
    /// Sessions ended to make room for a newcomer.
    pub evicted: AtomicU64,
    /// Sessions ended at the end of their lifetime.
    pub expired: AtomicU64,
    /// The log shared with other servers' pages, if their database is configured.
    shared: OnceLock<SharedSessions>,
    /// The last sequence number of the shared log applied here.
    seen: AtomicI64,
}

/// Why a session ends (its identity with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Its lifetime is over.
    Expired,
    /// The least recently used, ended for a newcomer.
    Evicted,
    /// Issued here, older than the pruning age, never stored a file.
    Unused,
}

impl Sessions {
    pub fn new(ca: Ca, config: SessionConfig) -> std::io::Result<Sessions> {
        let store = Store::open(&config.state_dir, "sessions")?;
        let mut map = HashMap::new();
        for (key, record) in store.all::<Record>()? {
            let mut raw = [0u8; 32];
            if hex::decode_to_slice(&key, &mut raw).is_err() {
                continue;
            }
            match Session::from_record(raw, record, &config.server) {
                Ok(session) => {
                    map.insert(raw, Arc::new(session));
                }
                Err(e) => tracing::warn!("unusable session record {key}: {e}"),
            }
        }
        Ok(Sessions {
            map: Mutex::new(map),
            ca: Arc::new(Mutex::new(ca)),
            store,
            config,
            admission: tokio::sync::Mutex::new(()),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            shared: OnceLock::new(),
            seen: AtomicI64::new(0),
        })
    }

    fn expired(&self, record: &Record, now: u64) -> bool {
        now.saturating_sub(record.created) > millis(self.config.idle)
    }

    /// The session whose cookie value is `secret` (none once it expired: the sweep then
    /// revokes its identity).
    pub fn get(&self, secret: &str) -> Option<Arc<Session>> {
        if secret.len() != 64 {
            return None;
        }
        let key = sha256(secret.as_bytes());
        let now = now_ms();
        let session = self.map.lock().expect("sessions lock").get(&key).cloned()?;
        if self.expired(&session.record, now) {
            return None;
        }
        session.last_used.store(now, Ordering::Relaxed);
        Some(session)
    }

    /// Sessions alive now.
    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    /// Notes that `session` stored a file (so its identity is never pruned).
    pub fn mark_stored(&self, session: &Session) {
        if !session.stored.swap(true, Ordering::Relaxed) {
            let key = hex::encode(session.key);
            let record = session.current_record();
            if let Err(e) = self.store.save(&key, &record) {
                tracing::warn!("{}: cannot update the session record: {e}", session.name());
            }
            if let Some(shared) = self.shared.get().cloned() {
                tokio::spawn(async move {
                    if let Err(e) = shared.publish(&key, Some(&record)).await {
                        tracing::warn!("{}: cannot share the session record: {e}", record.name);
                    }
                });
            }
        }
    }

    /// Shares sessions with the pages of other servers on one database from now on: what
    /// this page makes or ends is published, and [`Sessions::apply_shared`] takes theirs.
    pub fn share(&self, shared: SharedSessions) {
        let _ = self.shared.set(shared);
    }

    /// Publishes `session`'s record (a failure is logged: the session still works here).
    async fn publish(&self, key: &[u8; 32], record: Option<&Record>) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        if let Err(e) = shared.publish(&hex::encode(key), record).await {
            tracing::warn!("cannot share a session change with the other servers: {e}");
        }
    }

    /// Applies the shared log's changes since the last call: sessions made by other
    /// servers' pages are kept here too (in memory and in the state directory), sessions
    /// ended there end here. Returns how many changes were applied.
    pub async fn apply_shared(&self) -> usize {
        let Some(shared) = self.shared.get() else {
            return 0;
        };
        let changes = match shared
            .changes_since(self.seen.load(Ordering::Relaxed))
            .await
        {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("cannot read the sessions shared by the other servers: {e}");
                return 0;
            }
        };
        let mut applied = 0;
        for Change { key, record, seq } in changes {
            self.seen.fetch_max(seq, Ordering::Relaxed);
            let mut raw = [0u8; 32];
            if hex::decode_to_slice(&key, &mut raw).is_err() {
                continue;
            }
            applied += usize::from(self.apply_change(raw, &key, record));
        }
        applied
    }

    /// One change of the shared log; whether it changed anything here.
    fn apply_change(&self, raw: [u8; 32], key: &str, record: Option<Record>) -> bool {
        let known = self.map.lock().expect("sessions lock").get(&raw).cloned();
        match (record, known) {
            (None, None) => false,
            (None, Some(session)) => {
                self.map.lock().expect("sessions lock").remove(&raw);
                if let Err(e) = self.store.remove(key, &[]) {
                    tracing::warn!("{}: cannot remove the session record: {e}", session.name());
                }
                true
            }
            (Some(record), Some(session)) => {
                // Only `stored` changes in a session's life.
                record.stored && !session.stored.swap(true, Ordering::Relaxed)
            }
            (Some(record), None) => {
                let name = record.name.clone();
                match Session::from_record(raw, record, &self.config.server) {
                    Ok(session) => {
                        if let Err(e) = self.store.save(key, &session.current_record()) {
                            tracing::warn!("{name}: cannot keep the shared session: {e}");
                        }
                        self.map
                            .lock()
                            .expect("sessions lock")
                            .insert(raw, Arc::new(session));
                        true
                    }
                    Err(e) => {
                        tracing::warn!("{name}: unusable shared session: {e}");
                        false
                    }
                }
            }
        }
    }

    /// Ends a session: revokes its certificate if this page issued it (the CRL is written
    /// again, for the Ferry server to reload), then removes its record, which holds its key.
    /// The files it stored stay on the server. Returns whether it ended; if the revocation
    /// failed, the session stays and the next sweep tries again.
    async fn end(&self, key: &[u8; 32], record: &Record, why: Ending) -> bool {
        if !matches!(self.store.load::<Record>(&hex::encode(key)), Ok(Some(_))) {
            // Ended already (by the sweep and a newcomer at once).
            self.map.lock().expect("sessions lock").remove(key);
            return true;
        }
        if record.issued_here {
            if let Err(e) = self.revoke(&record.name).await {
                tracing::warn!("{}: cannot revoke the identity ({why:?}): {e}", record.name);
                return false;
            }
        }
        self.map.lock().expect("sessions lock").remove(key);
        if let Err(e) = self.store.remove(&hex::encode(key), &[]) {
            tracing::warn!("{}: cannot remove the session record: {e}", record.name);
        }
        self.publish(key, None).await;
        let counter = match why {
            Ending::Expired => Some(&self.expired),
            Ending::Evicted => Some(&self.evicted),
            Ending::Unused => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(
            "session of {} ended ({why:?}): identity revoked, key removed",
            record.name
        );
        true
    }

    /// Ends expired sessions, and revokes (and removes) the identities this page issued that
    /// are older than the pruning age and hold no file on the server. Returns how many
    /// sessions went.
    pub async fn sweep(&self) -> usize {
        let records = match self.store.all::<Record>() {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!("cannot list session records: {e}");
                return 0;
            }
        };
        let now = now_ms();
        let mut gone = 0;
        for (key, record) in records {
            let mut raw = [0u8; 32];
            if hex::decode_to_slice(&key, &mut raw).is_err() {
                continue;
            }
            let key = raw;
            if self.expired(&record, now) {
                gone += usize::from(self.end(&key, &record, Ending::Expired).await);
                continue;
            }
            let unused = record.issued_here
                && !record.stored
                && now.saturating_sub(record.created) > millis(self.config.prune_unused);
            if unused {
                match self.holds_files(&key, &record).await {
                    Some(false) => {
                        gone += usize::from(self.end(&key, &record, Ending::Unused).await);
                    }
                    Some(true) => {
                        let cached = self.map.lock().expect("sessions lock").get(&key).cloned();
                        if let Some(session) = cached {
                            self.mark_stored(&session);
                        }
                    }
                    None => {} // server unreachable: try again at the next sweep
                }
            }
        }
        gone
    }

    /// Whether the identity of `record` holds files on the server (`None`: cannot tell).
    async fn holds_files(&self, key: &[u8; 32], record: &Record) -> Option<bool> {
        let session = Session::from_record(*key, record.clone(), &self.config.server).ok()?;
        let mut client = Client::new(session.client.clone());
        let listed = client.list().await;
        client.close().await;
        match listed {
            Ok(files) => Some(!files.is_empty()),
            Err(e) => {
                tracing::debug!("{}: cannot list files before pruning: {e}", record.name);
                None
            }
        }
    }

    /// Revokes every certificate of `name` and writes the CRL again (a name the index does
    /// not hold has nothing to revoke).
    async fn revoke(&self, name: &str) -> Result<(), String> {
        let ca = self.ca.clone();
        let certs_dir = self.config.certs_dir.clone();
        let name = name.to_string();
        let result = tokio::task::spawn_blocking(move || {
            let _ca = ca.lock().expect("CA lock");
            CertDir::new(&certs_dir).revoke(&name)
        })
        .await
        .map_err(|e| format!("the revoking task failed: {e}"))?;
        match result {
            Ok(_) | Err(ferry_certs::CertError::UnknownClient { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Makes room for one more session: ends expired sessions and, while the cap is still
    /// reached, the least recently used session that has no request running. Fails only when
    /// every session has one.
    async fn room(&self) -> Result<(), SessionError> {
        if self.len() < self.config.max {
            return Ok(());
        }
        let now = now_ms();
        let expired: Vec<Arc<Session>> = self
            .map
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| self.expired(&s.record, now))
            .cloned()
            .collect();
        for session in expired {
            self.end(&session.key, &session.record, Ending::Expired)
                .await;
        }
        while self.len() >= self.config.max {
            // A session a request holds has more than the map's reference.
            let idle = self
                .map
                .lock()
                .expect("sessions lock")
                .values()
                .filter(|s| Arc::strong_count(s) == 1)
                .min_by_key(|s| s.last_used.load(Ordering::Relaxed))
                .cloned();
            let Some(oldest) = idle else {
                return Err(SessionError::Full(self.config.max));
            };
            if !self.end(&oldest.key, &oldest.record, Ending::Evicted).await {
                return Err(SessionError::Full(self.config.max));
            }
        }
        Ok(())
    }

    /// Keeps a new session for `record`: on disk, then in memory. Returns the cookie secret.
    fn keep(&self, record: Record) -> Result<(String, Arc<Session>), SessionError> {
        let secret = random_hex32();
        let key = sha256(secret.as_bytes());
        let session = Arc::new(Session::from_record(key, record, &self.config.server)?);
        self.store
            .save(&hex::encode(key), &session.current_record())?;
        self.map
            .lock()
            .expect("sessions lock")
            .insert(key, session.clone());
        Ok((secret, session))
    }

    /// How long a new session's certificate is valid: its days, but never past the end of
    /// the session (to the second: certificates count whole seconds, so one is added for
    /// the truncation).
    fn cert_lifetime(&self) -> Duration {
        let days = Duration::from_secs(u64::from(self.config.cert_days) * 24 * 3600);
        days.min(self.config.idle + Duration::from_secs(1))
    }

    /// Makes a session: issues and records its certificate. Returns the cookie secret and
    /// the session.
    pub async fn create(&self) -> Result<(String, Arc<Session>), SessionError> {
        let _admission = self.admission.lock().await;
        self.room().await?;
        let mut id = [0u8; 6];
        random_bytes(&mut id);
        let name = format!("web-{}", hex::encode(id));
        let ca = self.ca.clone();
        let certs_dir = self.config.certs_dir.clone();
        let lifetime = self.cert_lifetime();
        let issue_name = name.clone();
        let issued = tokio::task::spawn_blocking(move || {
            let ca = ca.lock().expect("CA lock");
            let now = SystemTime::now();
            let issued = ca
                .issue_client_with_validity(
                    &issue_name,
                    now - ferry_certs::BACKDATE,
                    now + lifetime,
                )
                .map_err(|e| SessionError::Issue(e.to_string()))?;
            CertDir::new(&certs_dir)
                .record_client(&issued)
                .map_err(|e| SessionError::Issue(e.to_string()))?;
            Ok::<_, SessionError>(issued)
        })
        .await
        .map_err(|e| SessionError::Issue(format!("the issuing task failed: {e}")))??;
        let (secret, session) = self.keep(Record {
            name,
            fingerprint: issued.fingerprint.clone(),
            csrf: random_hex32(),
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
            ca_pem: issued.ca_pem.clone(),
            created: now_ms(),
            issued_here: true,
            stored: false,
        })?;
        self.publish(&session.key, Some(&session.current_record()))
            .await;
        tracing::info!(
            "new session: identity {} (fingerprint {})",
            session.name(),
            session.fingerprint()
        );
        Ok((secret, session))
    }

    /// Makes a session from a certificate bundle the user kept (certificate, private key,
    /// CA, PEM): the certificate must be issued by this page's CA, recorded in its index and
    /// not revoked, and the key must be the certificate's.
    pub async fn import(&self, bundle: &str) -> Result<(String, Arc<Session>), SessionError> {
        let _admission = self.admission.lock().await;
        self.room().await?;
        let bad = |why: &str| SessionError::Bundle(format!("the bundle is not usable: {why}"));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&e.to_string()))?;
        let cert = certs
            .first()
            .ok_or_else(|| bad("it holds no certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(bundle.as_bytes())
            .map_err(|_| bad("it holds no private key"))?;
        let (ca_pem, issued_by_ca) = {
            let ca = self.ca.lock().expect("CA lock");
            (ca.cert_pem().to_string(), ca.issued(cert))
        };
        if !issued_by_ca {
            return Err(bad("its certificate was not issued by this server's CA"));
        }
        let identity = ClientIdentity::from_certificate(cert).map_err(|e| bad(&e.to_string()))?;
        let certs_dir = self.config.certs_dir.clone();
        let entries = tokio::task::spawn_blocking(move || CertDir::new(&certs_dir).list())
            .await
            .map_err(|e| SessionError::Issue(e.to_string()))?
            .map_err(|e| SessionError::Issue(e.to_string()))?;
        let entry = entries
            .iter()
            .find(|e| e.fingerprint == identity.fingerprint)
            .ok_or_else(|| bad("its certificate is not in this CA's index"))?;
        if entry.is_revoked() {
            return Err(bad("its certificate has been revoked"));
        }
        let cert_pem = pem_block("CERTIFICATE", cert);
        let key_label = match &key {
            PrivateKeyDer::Pkcs8(_) => "PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            _ => return Err(bad("its private key is of an unknown kind")),
        };
        let key_pem = pem_block(key_label, key.secret_der());
        // The key must sign for the certificate: rustls checks that they match.
        ClientOptions::from_pem(&self.config.server, &ca_pem, &cert_pem, &key_pem)
            .map_err(|e| bad(&e.to_string()))?;
        let (secret, session) = self.keep(Record {
            name: identity.name.clone(),
            fingerprint: identity.fingerprint,
            csrf: random_hex32(),
            cert_pem,
            key_pem,
            ca_pem,
            created: now_ms(),
            issued_here: false,
            stored: true,
        })?;
        self.publish(&session.key, Some(&session.current_record()))
            .await;
        tracing::info!("session from a loaded bundle: identity {}", session.name());
        Ok((secret, session))
    }
}

/// `der` as a PEM block with `label` (LF line endings).
fn pem_block(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
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

    fn config(dir: &std::path::Path, max: usize, idle: Duration) -> SessionConfig {
        SessionConfig {
            certs_dir: dir.join("certs"),
            state_dir: dir.join("web"),
            // Nothing listens here: pruning cannot ask the server.
            server: "127.0.0.1:9".into(),
            cert_days: 30,
            max,
            idle,
            prune_unused: Duration::from_secs(3600),
        }
    }

    fn store(dir: &std::path::Path, max: usize, idle: Duration) -> Sessions {
        let certs = CertDir::new(dir.join("certs"));
        if !certs.ca_cert().exists() {
            ferry_certs::init(&certs, &ferry_certs::InitOptions::default()).unwrap();
        }
        Sessions::new(certs.load_ca().unwrap(), config(dir, max, idle)).unwrap()
    }

    /// A pool on a fresh database of a real PostgreSQL (the testkit starts one).
    fn shared_pool(postgres: &ferry_testkit::cluster::Postgres) -> deadpool_postgres::Pool {
        let url = postgres.unique_database("web_sessions").unwrap();
        let config: tokio_postgres::Config = url.parse().unwrap();
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        deadpool_postgres::Pool::builder(manager)
            .max_size(2)
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_made_or_ended_on_one_page_reach_the_other() {
        let postgres = ferry_testkit::cluster::Postgres::shared().unwrap();
        let pool = shared_pool(&postgres);
        // Two pages of two servers: one CA (the certs directory), their own state directories.
        let dir = tempfile::tempdir().unwrap();
        let one = store(dir.path(), 10, Duration::from_secs(600));
        let mut other_config = config(dir.path(), 10, Duration::from_secs(600));
        other_config.state_dir = dir.path().join("web-other");
        let other = Sessions::new(
            CertDir::new(dir.path().join("certs")).load_ca().unwrap(),
            other_config,
        )
        .unwrap();
        one.share(SharedSessions::open(pool.clone()).await.unwrap());
        other.share(SharedSessions::open(pool).await.unwrap());

        let (secret, made) = one.create().await.unwrap();
        assert!(other.get(&secret).is_none(), "not applied yet");
        assert_eq!(other.apply_shared().await, 1);
        let seen = other
            .get(&secret)
            .expect("the session reached the other page");
        assert_eq!(seen.name(), made.name());
        assert_eq!(seen.key_pem(), made.key_pem());
        // Kept in the other page's state directory too, so it outlives a restart there.
        let key = hex::encode(made.key);
        assert!(other.store.load::<Record>(&key).unwrap().is_some());
        // Applying again changes nothing (the overlap re-reads the row).
        assert_eq!(other.apply_shared().await, 0);

        one.mark_stored(&made);
        let mut stored = false;
        for _ in 0..100 {
            other.apply_shared().await;
            stored = seen.stored.load(Ordering::Relaxed);
            if stored {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(stored, "the stored mark reached the other page");

        assert!(one.end(&made.key, &made.record, Ending::Expired).await);
        assert_eq!(other.apply_shared().await, 1);
        assert!(other.get(&secret).is_none(), "ended everywhere");
        assert!(other.store.load::<Record>(&key).unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_are_capped_and_recorded_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = store(dir.path(), 2, Duration::from_secs(60));
        let (secret, session) = sessions.create().await.unwrap();
        assert!(session.name().starts_with("web-"));
        assert_eq!(
            sessions.get(&secret).unwrap().fingerprint(),
            session.fingerprint()
        );
        assert!(sessions.get(&random_hex32()).is_none());
        assert!(sessions.get("short").is_none());
        let (_, other) = sessions.create().await.unwrap();
        assert_ne!(other.fingerprint(), session.fingerprint());
        assert_ne!(other.csrf(), session.csrf());
        // Both held by a request: no room.
        assert!(matches!(
            sessions.create().await,
            Err(SessionError::Full(2))
        ));
        let listed = CertDir::new(dir.path().join("certs")).list().unwrap();
        assert!(listed.iter().any(|e| e.name == session.name()));
        assert!(listed.iter().any(|e| e.name == other.name()));

        // Once no request holds them, the least recently used one makes room, revoked.
        let (first, second) = (session.name().to_string(), other.name().to_string());
        drop((session, other));
        let (_, third) = sessions.create().await.unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(&secret).is_none(), "the oldest was ended");
        let listed = CertDir::new(dir.path().join("certs")).list().unwrap();
        let revoked = |name: &str| listed.iter().any(|e| e.name == name && e.is_revoked());
        assert!(revoked(&first));
        assert!(!revoked(&second) && !revoked(third.name()));
        assert_eq!(sessions.evicted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn certificates_live_no_longer_than_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = store(dir.path(), 2, Duration::from_secs(600));
        let (_, session) = sessions.create().await.unwrap();
        let listed = CertDir::new(dir.path().join("certs")).list().unwrap();
        let entry = listed.iter().find(|e| e.name == session.name()).unwrap();
        let at = |t: &str| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        };
        // 30 days asked (the config's 1 day), 10 minutes of session: 10 minutes.
        let lifetime = at(&entry.not_after) - at(&entry.not_before);
        let least = ferry_certs::BACKDATE + Duration::from_secs(600);
        let most = ferry_certs::BACKDATE + Duration::from_secs(600 + 2);
        assert!(lifetime >= least && lifetime <= most, "{lifetime:?}");
    }

    #[tokio::test]
    async fn sessions_outlive_the_process_and_expire_with_their_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, fingerprint, csrf) = {
            let sessions = store(dir.path(), 10, Duration::from_millis(400));
            let (secret, session) = sessions.create().await.unwrap();
            (
                secret,
                session.fingerprint().to_string(),
                session.csrf().to_string(),
            )
        };
        // A new store (a restarted page) finds the session on disk.
        let sessions = store(dir.path(), 10, Duration::from_millis(400));
        let again = sessions
            .get(&secret)
            .expect("the session outlived the store");
        assert_eq!(again.fingerprint(), fingerprint);
        assert_eq!(again.csrf(), csrf);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(sessions.get(&secret).is_none(), "expired with its cookie");
        assert_eq!(sessions.sweep().await, 1);
        assert!(
            sessions.store.all::<Record>().unwrap().is_empty(),
            "record removed"
        );
        let listed = CertDir::new(dir.path().join("certs")).list().unwrap();
        assert!(listed
            .iter()
            .all(|e| e.name.starts_with("web-") == e.is_revoked()));
        assert_eq!(sessions.expired.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_kept_bundle_comes_back_unless_revoked_or_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = store(dir.path(), 10, Duration::from_secs(60));
        let (_, session) = sessions.create().await.unwrap();
        let (secret, back) = sessions.import(&session.bundle_pem()).await.unwrap();
        assert_eq!(back.fingerprint(), session.fingerprint());
        assert_eq!(back.name(), session.name());
        assert_ne!(back.csrf(), session.csrf(), "a new session, a new token");
        assert!(sessions.get(&secret).is_some());

        // Garbage, a certificate without its key, another CA's certificate.
        assert!(matches!(
            sessions.import("nothing").await,
            Err(SessionError::Bundle(_))
        ));
        assert!(matches!(
            sessions.import(session.cert_pem()).await,
            Err(SessionError::Bundle(_))
        ));
        let other = tempfile::tempdir().unwrap();
        let foreign = store(other.path(), 10, Duration::from_secs(60));
        let (_, stranger) = foreign.create().await.unwrap();
        let refused = sessions.import(&stranger.bundle_pem()).await;
        assert!(matches!(refused, Err(SessionError::Bundle(ref m)) if m.contains("CA")));

        // A key that is not the certificate's.
        let mixed = format!("{}{}", session.cert_pem(), stranger.key_pem());
        assert!(matches!(
            sessions.import(&mixed).await,
            Err(SessionError::Bundle(_))
        ));

        CertDir::new(dir.path().join("certs"))
            .revoke(session.name())
            .unwrap();
        let refused = sessions.import(&session.bundle_pem()).await;
        assert!(matches!(refused, Err(SessionError::Bundle(ref m)) if m.contains("revoked")));
    }
}
