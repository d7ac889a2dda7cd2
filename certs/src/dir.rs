//! The certificate directory on disk: layout, `init`, issuing to files, revocation, listing.

use crate::ca::{
    random_serial, server_sans, validity_days, Ca, CertKind, IssueRequest, IssuedCert,
    IssuedClient, RevokedSerial, DEFAULT_CA_DAYS, DEFAULT_CA_NAME, DEFAULT_CLIENT_DAYS,
    DEFAULT_SERVER_DAYS, SERVER_COMMON_NAME,
};
use crate::error::{CertError, Result};
use crate::fsutil::{create_dir, write_atomic, Visibility};
use crate::index::{Index, IndexEntry, IndexLock, NameStatus};
use crate::names::validate_client_name;
use crate::renew::Renewal;
use crate::tls::ServerTlsPaths;
use crate::x509::{self, now, parse_rfc3339, rfc3339, CertInfo};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// CA certificate file name.
pub const CA_CERT: &str = "ca.crt";
/// CA private key file name.
pub const CA_KEY: &str = "ca.key";
/// Server certificate file name.
pub const SERVER_CERT: &str = "server.crt";
/// Server private key file name.
pub const SERVER_KEY: &str = "server.key";
/// Directory of client certificates.
pub const CLIENTS_DIR: &str = "clients";
/// Certificate revocation list file name.
pub const CRL_FILE: &str = "crl.pem";
/// Index file name.
pub const INDEX_FILE: &str = "index.json";
/// The client certificate `init` creates.
pub const LOCAL_CLIENT: &str = "local";

/// A certificate directory:
///
/// ```text
/// DIR/ca.crt  ca.key  server.crt  server.key  crl.pem  index.json
/// DIR/clients/NAME.crt  NAME.key  NAME.bundle.pem
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    root: PathBuf,
}

/// The three files of a client written under `clients/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPaths {
    /// `clients/NAME.crt`
    pub cert: PathBuf,
    /// `clients/NAME.key` (mode 0600)
    pub key: PathBuf,
    /// `clients/NAME.bundle.pem`: certificate, key and CA certificate (mode 0600)
    pub bundle: PathBuf,
}

/// Options of [`init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// Common name of a new CA.
    pub ca_name: String,
    /// Validity of a new CA, days.
    pub ca_days: u32,
    /// Validity of a new server certificate, days.
    pub server_days: u32,
    /// Validity of the new `local` client certificate, days.
    pub client_days: u32,
    /// Subject alternative names added to the defaults (`localhost`, `127.0.0.1`, `::1`).
    pub extra_sans: Vec<String>,
    /// Replace an existing CA, server and `local` client (and start a new index and CRL).
    pub force: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            ca_name: DEFAULT_CA_NAME.to_string(),
            ca_days: DEFAULT_CA_DAYS,
            server_days: DEFAULT_SERVER_DAYS,
            client_days: DEFAULT_CLIENT_DAYS,
            extra_sans: Vec::new(),
            force: false,
        }
    }
}

/// What [`init`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Files written.
    pub created: Vec<PathBuf>,
    /// Files that already existed and were kept (after checking them).
    pub existing: Vec<PathBuf>,
}

/// What [`CertDir::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeReport {
    /// The client name.
    pub name: String,
    /// Serials (hex) revoked by this call.
    pub newly_revoked: Vec<String>,
    /// Serials (hex) of that name that were already revoked.
    pub already_revoked: Vec<String>,
    /// Number of the CRL just written.
    pub crl_number: u64,
}

/// Options of [`CertDir::new_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// Validity, days.
    pub days: u32,
    /// Issue a name whose certificates were all revoked (whoever gets it gets its files).
    pub reuse_revoked_name: bool,
}

impl Default for NewClient {
    fn default() -> Self {
        NewClient {
            days: DEFAULT_CLIENT_DAYS,
            reuse_revoked_name: false,
        }
    }
}

fn entry_for(kind: CertKind, name: &str, info: &CertInfo) -> IndexEntry {
    IndexEntry {
        name: name.to_string(),
        kind,
        serial: info.serial.clone(),
        fingerprint: info.fingerprint(),
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
        revoked_at: None,
    }
}

pub(crate) fn entry_for_issued(issued: &IssuedCert) -> IndexEntry {
    IndexEntry {
        name: issued.name.clone(),
        kind: issued.kind,
        serial: issued.serial.clone(),
        fingerprint: issued.fingerprint.clone(),
        not_before: rfc3339(OffsetDateTime::from(issued.not_before)),
        not_after: rfc3339(OffsetDateTime::from(issued.not_after)),
        revoked_at: None,
    }
}

/// Which of `paths` exist; errors if some but not all do.
fn all_or_none(paths: &[&Path]) -> Result<bool> {
    let present: Vec<&Path> = paths.iter().copied().filter(|p| p.exists()).collect();
    if present.is_empty() {
        return Ok(false);
    }
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        return Err(CertError::Incomplete {
            present: present[0].to_path_buf(),
            missing: missing.to_path_buf(),
        });
    }
    Ok(true)
}

impl CertDir {
    /// A certificate directory rooted at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> CertDir {
        CertDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ca.crt`
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join(CA_CERT)
    }

    /// `ca.key`
    pub fn ca_key(&self) -> PathBuf {
        self.root.join(CA_KEY)
    }

    /// `server.crt`
    pub fn server_cert(&self) -> PathBuf {
        self.root.join(SERVER_CERT)
    }

    /// `server.key`
    pub fn server_key(&self) -> PathBuf {
        self.root.join(SERVER_KEY)
    }

    /// `crl.pem`
    pub fn crl(&self) -> PathBuf {
        self.root.join(CRL_FILE)
    }

    /// `index.json`
    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// `clients/`
    pub fn clients_dir(&self) -> PathBuf {
        self.root.join(CLIENTS_DIR)
    }

    /// The files of client `name` (which must be a safe identifier).
    pub fn client_paths(&self, name: &str) -> Result<ClientPaths> {
        validate_client_name(name)?;
        let dir = self.clients_dir();
        Ok(ClientPaths {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            bundle: dir.join(format!("{name}.bundle.pem")),
        })
    }

    /// The paths the server needs: CA certificate, server certificate and key, CRL.
    pub fn server_tls_paths(&self) -> ServerTlsPaths {
        ServerTlsPaths {
            ca_cert: self.ca_cert(),
            server_cert: self.server_cert(),
            server_key: self.server_key(),
            crl: Some(self.crl()),
        }
    }

    /// Loads the CA (see [`Ca::load`]).
    pub fn load_ca(&self) -> Result<Ca> {
        Ca::load(&self.root)
    }

    /// Reads the index (empty if the file does not exist yet).
    pub fn load_index(&self) -> Result<Index> {
        Index::load(&self.index_path())
    }

    /// A serial not yet in `index`.
    pub(crate) fn fresh_serial(index: &Index) -> Vec<u8> {
        loop {
            let s = random_serial();
            if !index.contains_serial(&hex::encode(&s)) {
                return s;
            }
        }
    }

    /// Issues a server certificate (default SANs plus `extra_sans`), writes `server.key`
    /// (0600) and `server.crt`, and records it in the index.
    ///
    /// Without `force`, an existing `server.key` or `server.crt` is an error and nothing is
    /// written.
    pub fn issue_server(
        &self,
        extra_sans: &[String],
        days: u32,
        force: bool,
    ) -> Result<IssuedCert> {
        let ca = self.load_ca()?;
        let _lock = self.lock_index()?;
        let mut index = self.load_index()?;
        let issued = self.issue_server_with(&ca, &mut index, extra_sans, days, force)?;
        index.save(&self.index_path())?;
        Ok(issued)
    }

    fn issue_server_with(
        &self,
        ca: &Ca,
        index: &mut Index,
        extra_sans: &[String],
        days: u32,
        force: bool,
    ) -> Result<IssuedCert> {
        let (key_path, cert_path) = (self.server_key(), self.server_cert());
        if !force {
            for p in [&key_path, &cert_path] {
                if p.exists() {
                    return Err(CertError::AlreadyExists { path: p.clone() });
                }
            }
        }
        let (not_before, not_after) = validity_days(days)?;
        let issued = ca.issue(IssueRequest {
            kind: CertKind::Server,
            name: SERVER_COMMON_NAME,
            sans: server_sans(extra_sans)?,
            not_before,
            not_after,
            serial: Self::fresh_serial(index),
            key: None,
        })?;
        write_atomic(
            &key_path,
            issued.key_pem.as_bytes(),
            Visibility::Secret,
            force,
        )?;
        write_atomic(
            &cert_path,
            issued.cert_pem.as_bytes(),
            Visibility::Public,
            force,
        )?;
        let mut entry = entry_for_issued(&issued);
        entry.name = "server".into();
        index.add(entry, &self.index_path())?;
        Ok(issued)
    }

    /// Takes the index's lock (see [`IndexLock`]); changes of the index made while it is
    /// held cannot interleave with those of another process.
    pub fn lock_index(&self) -> Result<IndexLock> {
        IndexLock::acquire(&self.root)
    }

    /// Issues a client certificate, writes `clients/NAME.key` (0600), `clients/NAME.crt` and
    /// `clients/NAME.bundle.pem` (0600), and records it in the index.
    ///
    /// Without `force` this is [`CertDir::new_client`] with default options: a name already
    /// issued, or revoked, is refused. With `force` it is [`CertDir::renew`] with a new key
    /// (and the name need not be known yet); the existing files are replaced.
    pub fn issue_client(&self, name: &str, days: u32, force: bool) -> Result<IssuedClient> {
        if force {
            validate_client_name(name)?;
            let ca = self.load_ca()?;
            let _lock = self.lock_index()?;
            let renewal = Renewal {
                days,
                new_key: true,
                ..Renewal::default()
            };
            return Ok(self.renew_locked(&ca, name, &renewal, true)?.issued);
        }
        self.new_client(
            name,
            &NewClient {
                days,
                ..NewClient::default()
            },
        )
    }

    /// Issues a certificate to a new client `name` (see [`CertDir::issue_client`] for the
    /// files). A name the index already holds is refused ([`CertError::NameTaken`]: renew it
    /// instead), and so is a revoked one ([`CertError::NameRevoked`]) unless
    /// `options.reuse_revoked_name` (its old files are then replaced). Checked and recorded
    /// under the index's lock.
    pub fn new_client(&self, name: &str, options: &NewClient) -> Result<IssuedClient> {
        validate_client_name(name)?;
        let ca = self.load_ca()?;
        let _lock = self.lock_index()?;
        let mut index = self.load_index()?;
        check_name_free(&index, name, options.reuse_revoked_name)?;
        // The files of a revoked name are of no use any more: a reissue replaces them.
        let replace = index.name_status(name) == NameStatus::Revoked;
        let issued = self.issue_client_with(&ca, &mut index, name, options.days, replace)?;
        index.save(&self.index_path())?;
        Ok(issued)
    }

    fn issue_client_with(
        &self,
        ca: &Ca,
        index: &mut Index,
        name: &str,
        days: u32,
        force: bool,
    ) -> Result<IssuedClient> {
        let paths = self.client_paths(name)?;
        if !force {
            for p in [&paths.key, &paths.cert, &paths.bundle] {
                if p.exists() {
                    return Err(CertError::AlreadyExists { path: p.clone() });
                }
            }
        }
        let (not_before, not_after) = validity_days(days)?;
        let issued = ca.issue(IssueRequest {
            kind: CertKind::Client,
            name,
            sans: Vec::new(),
            not_before,
            not_after,
            serial: Self::fresh_serial(index),
            key: None,
        })?;
        create_dir(&self.clients_dir())?;
        write_atomic(
            &paths.key,
            issued.key_pem.as_bytes(),
            Visibility::Secret,
            force,
        )?;
        write_atomic(
            &paths.cert,
            issued.cert_pem.as_bytes(),
            Visibility::Public,
            force,
        )?;
        write_atomic(
            &paths.bundle,
            issued.bundle_pem().as_bytes(),
            Visibility::Secret,
            force,
        )?;
        index.add(entry_for_issued(&issued), &self.index_path())?;
        Ok(issued)
    }

    /// Records a client certificate issued in memory (by [`Ca::issue_client`]) in the index,
    /// so that `list` shows it and `revoke` can revoke it. No file other than the index is
    /// written. Under the index's lock, like [`CertDir::new_client`], it refuses a name the
    /// index already holds, revoked or not, and a serial already recorded: the web page
    /// records its sessions' certificates this way and so can never take another client's
    /// name (drop the certificate when this fails).
    pub fn record_client(&self, issued: &IssuedClient) -> Result<()> {
        validate_client_name(&issued.name)?;
        let _lock = self.lock_index()?;
        let mut index = self.load_index()?;
        check_name_free(&index, &issued.name, false)?;
        index.add(entry_for_issued(issued), &self.index_path())?;
        index.save(&self.index_path())
    }

    /// Revokes every certificate issued to client `name`: marks them in the index, bumps the
    /// CRL number and writes a new signed `crl.pem` atomically.
    ///
    /// An unknown name is an error. If all its certificates were already revoked, the CRL is
    /// still re-signed with a higher number.
    pub fn revoke(&self, name: &str) -> Result<RevokeReport> {
        validate_client_name(name)?;
        let ca = self.load_ca()?;
        let _lock = self.lock_index()?;
        let index = self.load_index()?;
        if index.clients_named(name).next().is_none() {
            return Err(CertError::UnknownClient {
                path: self.index_path(),
                name: name.to_string(),
            });
        }
        self.revoke_where(&ca, index, name, |e| {
            e.kind == CertKind::Client && e.name == name
        })
    }

    /// Revokes the one certificate with serial `serial` (hex, any case), a client's or the
    /// server's, and writes a new signed `crl.pem`; the name's other certificates stay valid.
    pub fn revoke_serial(&self, serial: &str) -> Result<RevokeReport> {
        let ca = self.load_ca()?;
        let _lock = self.lock_index()?;
        let index = self.load_index()?;
        let entry = index
            .entries
            .iter()
            .find(|e| e.kind != CertKind::Ca && e.serial.eq_ignore_ascii_case(serial))
            .ok_or_else(|| CertError::UnknownSerial {
                path: self.index_path(),
                serial: serial.to_string(),
            })?;
        let (name, serial) = (entry.name.clone(), entry.serial.clone());
        self.revoke_where(&ca, index, &name, |e| e.serial == serial)
    }

    fn revoke_where(
        &self,
        ca: &Ca,
        mut index: Index,
        name: &str,
        selected: impl Fn(&IndexEntry) -> bool,
    ) -> Result<RevokeReport> {
        let index_path = self.index_path();
        let stamp = rfc3339(now());
        let (mut newly_revoked, mut already_revoked) = (Vec::new(), Vec::new());
        for e in index.entries.iter_mut().filter(|e| selected(e)) {
            if e.revoked_at.is_some() {
                already_revoked.push(e.serial.clone());
            } else {
                e.revoked_at = Some(stamp.clone());
                newly_revoked.push(e.serial.clone());
            }
        }
        index.crl_number += 1;
        // The index is written first: if writing the CRL fails, the next revoke (or init)
        // re-creates it from the index with a still higher number.
        index.save(&index_path)?;
        self.write_crl(ca, &index)?;
        Ok(RevokeReport {
            name: name.to_string(),
            newly_revoked,
            already_revoked,
            crl_number: index.crl_number,
        })
    }

    /// Signs and writes `crl.pem` from the index's revoked entries and CRL number.
    pub(crate) fn write_crl(&self, ca: &Ca, index: &Index) -> Result<()> {
        let index_path = self.index_path();
        let revoked = index
            .entries
            .iter()
            .filter_map(|e| {
                let at = e.revoked_at.as_ref()?;
                Some((e, at))
            })
            .map(|(e, at)| {
                let bad = |reason: String| CertError::Index {
                    path: index_path.clone(),
                    reason,
                };
                Ok(RevokedSerial {
                    serial: hex::decode(&e.serial).map_err(|error| {
                        bad(format!("serial {:?} is not hex: {error}", e.serial))
                    })?,
                    revoked_at: parse_rfc3339(at)
                        .ok_or_else(|| bad(format!("revoked_at {at:?} is not RFC 3339")))?
                        .into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pem = ca.sign_crl(index.crl_number, &revoked)?;
        write_atomic(&self.crl(), pem.as_bytes(), Visibility::Public, true)
    }

    /// Every certificate recorded in the index, oldest first.
    pub fn list(&self) -> Result<Vec<IndexEntry>> {
        Ok(self.load_index()?.entries)
    }
}

/// Refuses a client name the index already holds ([`CertError::NameTaken`]) or holds only
/// revoked ([`CertError::NameRevoked`], unless `reuse_revoked`).
fn check_name_free(index: &Index, name: &str, reuse_revoked: bool) -> Result<()> {
    match index.name_status(name) {
        NameStatus::Free => Ok(()),
        NameStatus::Revoked if reuse_revoked => Ok(()),
        NameStatus::Revoked => Err(CertError::NameRevoked {
            name: name.to_string(),
        }),
        NameStatus::Active => Err(CertError::NameTaken {
            name: name.to_string(),
        }),
    }
}

/// Checks that an existing certificate file parses and was issued by `ca`; returns its info.
fn check_existing_cert(path: &Path, ca: &Ca) -> Result<CertInfo> {
    let der = x509::read_certs(path)?.remove(0);
    let info = CertInfo::parse_file(&der, path)?;
    if !ca.issued(&der) {
        return Err(CertError::WrongIssuer {
            path: path.to_path_buf(),
            ca: ca.cert_path().to_path_buf(),
        });
    }
    Ok(info)
}

/// Checks that an existing CRL is signed by `ca`; returns its CRL number.
fn check_existing_crl(path: &Path, ca: &Ca) -> Result<u64> {
    let crls = crate::tls::read_crls(path, ca)?;
    let first = crls.first().ok_or_else(|| CertError::BadCrl {
        path: path.to_path_buf(),
        reason: "no X509 CRL block found".into(),
    })?;
    let (_, crl) = x509_parser::parse_x509_crl(first).map_err(|e| CertError::BadCrl {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

/// Creates (or completes) a certificate directory: CA, server certificate, the `local` client
/// certificate and bundle, an empty signed CRL (number 1) and the index.
///
/// Idempotent: without `options.force`, existing files are checked (they must parse, match
/// their keys and chain to the CA) and kept, and only what is missing is created; the report
/// lists both. With `force`, a new CA and everything under it replace the old ones, and a new
/// index is started.
pub fn init(dir: &CertDir, options: &InitOptions) -> Result<InitReport> {
    let mut report = InitReport::default();
    let force = options.force;
    create_dir(dir.root())?;
    let _lock = dir.lock_index()?;
    create_dir(&dir.clients_dir())?;
    let index_path = dir.index_path();

    // The CA.
    let (ca_cert, ca_key) = (dir.ca_cert(), dir.ca_key());
    let ca_exists = !force && all_or_none(&[&ca_cert, &ca_key])?;
    if !ca_exists && !force {
        // A new CA would not have signed what is already there: refuse before writing anything.
        let local = dir.client_paths(LOCAL_CLIENT)?;
        for p in [
            dir.server_cert(),
            dir.server_key(),
            local.cert,
            local.key,
            local.bundle,
        ] {
            if p.exists() {
                return Err(CertError::AlreadyExists { path: p });
            }
        }
    }
    let (ca, mut index) = if ca_exists {
        let ca = dir.load_ca()?;
        report.existing.extend([ca_cert.clone(), ca_key.clone()]);
        (ca, dir.load_index()?)
    } else {
        let (ca, key_pem) = Ca::generate(&options.ca_name, options.ca_days, &ca_cert)?;
        write_atomic(&ca_key, key_pem.as_bytes(), Visibility::Secret, force)?;
        write_atomic(
            &ca_cert,
            ca.cert_pem().as_bytes(),
            Visibility::Public,
            force,
        )?;
        report.created.extend([ca_cert.clone(), ca_key.clone()]);
        if force && index_path.exists() {
            tracing::warn!(
                "{}: starting a new index for the new CA; certificates issued by the old CA no longer verify",
                index_path.display()
            );
        }
        (ca, Index::default())
    };
    if !index.contains_serial(ca.serial()) {
        let entry = entry_for(CertKind::Ca, ca.common_name(), ca.info());
        index.add(entry, &index_path)?;
    }

    // The server certificate.
    let (server_cert, server_key) = (dir.server_cert(), dir.server_key());
    if !force && all_or_none(&[&server_cert, &server_key])? {
        let info = check_existing_cert(&server_cert, &ca)?;
        crate::tls::check_key_matches(&server_cert, &server_key)?;
        if !index.contains_serial(&info.serial) {
            index.add(entry_for(CertKind::Server, "server", &info), &index_path)?;
        }
        report.existing.extend([server_cert, server_key]);
    } else {
        dir.issue_server_with(
            &ca,
            &mut index,
            &options.extra_sans,
            options.server_days,
            force,
        )?;
        report.created.extend([server_cert, server_key]);
    }

    // The `local` client.
    let local = dir.client_paths(LOCAL_CLIENT)?;
    if !force && all_or_none(&[&local.cert, &local.key, &local.bundle])? {
        let info = check_existing_cert(&local.cert, &ca)?;
        crate::tls::check_key_matches(&local.cert, &local.key)?;
        if !index.contains_serial(&info.serial) {
            index.add(
                entry_for(CertKind::Client, LOCAL_CLIENT, &info),
                &index_path,
            )?;
        }
        report
            .existing
            .extend([local.cert, local.key, local.bundle]);
    } else {
        dir.issue_client_with(&ca, &mut index, LOCAL_CLIENT, options.client_days, force)?;
        report.created.extend([local.cert, local.key, local.bundle]);
    }

    // The CRL.
    let crl = dir.crl();
    if ca_exists && crl.exists() {
        let number = check_existing_crl(&crl, &ca)?;
        index.crl_number = index.crl_number.max(number);
        report.existing.push(crl);
    } else {
        index.crl_number += 1;
        dir.write_crl(&ca, &index)?;
        report.created.push(crl);
    }

    index.save(&index_path)?;
    Ok(report)
}
