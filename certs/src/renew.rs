//! Renewal: a fresh certificate for a client name that exists, with its key or a new one.
//!
//! A server keys a client's files on its name, so a renewed client keeps them.

use crate::ca::{load_key, validity_days, Ca, CertKind, IssueRequest, IssuedClient};
use crate::dir::{entry_for_issued, CertDir, ClientPaths};
use crate::error::{CertError, Result};
use crate::fsutil::{create_dir, write_atomic, Visibility};
use crate::index::{IndexEntry, NameStatus};
use crate::names::validate_client_name;
use crate::x509::{now, rfc3339};
use crate::DEFAULT_CLIENT_DAYS;

/// Options of [`CertDir::renew`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// Validity of the new certificate, days.
    pub days: u32,
    /// Generate a new key instead of certifying `clients/NAME.key` again.
    pub new_key: bool,
    /// Revoke the name's other certificates (otherwise they stay valid until they expire).
    pub revoke_old: bool,
    /// Renew a name whose certificates were all revoked.
    pub reuse_revoked_name: bool,
}

impl Default for Renewal {
    fn default() -> Self {
        Renewal {
            days: DEFAULT_CLIENT_DAYS,
            new_key: false,
            revoke_old: false,
            reuse_revoked_name: false,
        }
    }
}

/// What [`CertDir::renew`] did.
#[derive(Debug, Clone)]
pub struct RenewReport {
    /// The new certificate.
    pub issued: IssuedClient,
    /// Where it was written.
    pub paths: ClientPaths,
    /// Serials (hex) of the name's earlier certificates that stay valid.
    pub still_valid: Vec<String>,
    /// Serials (hex) revoked by `revoke_old`, and the number of the CRL written then.
    pub revoked: Option<(Vec<String>, u64)>,
}

impl CertDir {
    /// Issues a fresh certificate to the existing client `name`: the same key
    /// (`clients/NAME.key`) unless `renewal.new_key`. The index records it first, then the
    /// certificate, the bundle and a new key are each replaced atomically. The name's
    /// earlier certificates stay valid until they expire, unless `renewal.revoke_old`.
    ///
    /// Servers key a client's files on its name, so the files stay with the renewed client.
    pub fn renew(&self, name: &str, renewal: &Renewal) -> Result<RenewReport> {
        validate_client_name(name)?;
        let ca = self.load_ca()?;
        let _lock = self.lock_index()?;
        self.renew_locked(&ca, name, renewal, false)
    }

    /// [`CertDir::renew`] with the index's lock held; `allow_new` also issues a name the index
    /// does not hold (`client NAME --force`).
    pub(crate) fn renew_locked(
        &self,
        ca: &Ca,
        name: &str,
        renewal: &Renewal,
        allow_new: bool,
    ) -> Result<RenewReport> {
        let index_path = self.index_path();
        let mut index = self.load_index()?;
        match index.name_status(name) {
            NameStatus::Free if !allow_new => {
                return Err(CertError::UnknownClient {
                    path: index_path,
                    name: name.to_string(),
                })
            }
            NameStatus::Revoked if !renewal.reuse_revoked_name => {
                return Err(CertError::NameRevoked {
                    name: name.to_string(),
                })
            }
            _ => {}
        }
        let paths = self.client_paths(name)?;
        let key = if renewal.new_key {
            None
        } else {
            match load_key(&paths.key) {
                Ok(key) => Some(key),
                Err(CertError::Missing { path }) => {
                    return Err(CertError::NoKeyToRenew {
                        path,
                        name: name.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        };
        let (not_before, not_after) = validity_days(renewal.days)?;
        let issued = ca.issue(IssueRequest {
            kind: CertKind::Client,
            name,
            sans: Vec::new(),
            not_before,
            not_after,
            serial: Self::fresh_serial(&index),
            key,
        })?;
        // Recorded before any file is written: a certificate that exists is revocable.
        index.add(entry_for_issued(&issued), &index_path)?;
        index.save(&index_path)?;
        create_dir(&self.clients_dir())?;
        let bundle = issued.bundle_pem();
        write_atomic(&paths.bundle, bundle.as_bytes(), Visibility::Secret, true)?;
        if renewal.new_key {
            write_atomic(
                &paths.key,
                issued.key_pem.as_bytes(),
                Visibility::Secret,
                true,
            )?;
        }
        write_atomic(
            &paths.cert,
            issued.cert_pem.as_bytes(),
            Visibility::Public,
            true,
        )?;
        let earlier = |e: &&mut IndexEntry| {
            e.kind == CertKind::Client
                && e.name == name
                && !e.is_revoked()
                && e.serial != issued.serial
        };
        let mut revoked = None;
        let mut still_valid = Vec::new();
        if renewal.revoke_old {
            let stamp = rfc3339(now());
            let mut serials = Vec::new();
            for e in index.entries.iter_mut().filter(earlier) {
                e.revoked_at = Some(stamp.clone());
                serials.push(e.serial.clone());
            }
            index.crl_number += 1;
            index.save(&index_path)?;
            self.write_crl(ca, &index)?;
            revoked = Some((serials, index.crl_number));
        } else {
            still_valid = index
                .entries
                .iter_mut()
                .filter(earlier)
                .map(|e| e.serial.clone())
                .collect();
        }
        Ok(RenewReport {
            issued,
            paths,
            still_valid,
            revoked,
        })
    }
}
