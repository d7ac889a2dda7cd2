//! The server's Prometheus metrics: one registry per [`Server`](crate::Server), no global
//! recorder (several servers in one process, as in tests, keep their own counts).
//!
//! Cardinality is bounded: labels take values from small fixed sets (reasons, kinds,
//! results, operations, protocol error codes), never a client name, a file name or an address.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ferry_core::wire::ErrorCode;
use ferry_core::Stats;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Why a TCP connection was closed before its session began.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum RefusedReason {
    /// `--max-connections` (authenticated sessions) reached: answered BUSY after the
    /// handshake.
    max_connections,
    /// `--max-connections-per-identity` reached: answered BUSY after the handshake.
    max_connections_per_identity,
    /// `--max-handshakes` reached: dropped before the handshake.
    handshake_budget,
    /// `--max-handshakes-per-source` reached: dropped before the handshake.
    handshake_per_source,
    /// Random early drop while the handshake budget is filling up.
    early_drop,
    /// `--proxy-protocol`: the TCP peer is not inside `--proxy-from`.
    proxy_untrusted,
    /// `--proxy-protocol`: no valid PROXY v2 header in time.
    proxy_header,
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum HandshakeFailure {
    timeout,
    /// The client certificate is on the CRL.
    revoked,
    expired,
    /// The client certificate does not chain to the CA: no CA of its issuer's name.
    unknown_issuer,
    /// The client certificate names the CA as issuer but the CA did not sign it (a client
    /// of another CA of the same name).
    bad_signature,
    /// Another problem with the client certificate.
    bad_certificate,
    /// No client certificate.
    no_certificate,
    /// The TLS handshake itself failed (protocol, version, cipher suites).
    protocol,
    /// The connection broke during the handshake.
    io,
}

impl HandshakeFailure {
    /// The reason of a failed `tokio_rustls` accept.
    pub fn of(error: &std::io::Error) -> HandshakeFailure {
        use rustls::{CertificateError, Error};
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>());
        match tls {
            Some(Error::InvalidCertificate(CertificateError::Revoked)) => HandshakeFailure::revoked,
            Some(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => HandshakeFailure::expired,
            Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                HandshakeFailure::unknown_issuer
            }
            Some(Error::InvalidCertificate(CertificateError::BadSignature)) => {
                HandshakeFailure::bad_signature
            }
            Some(Error::InvalidCertificate(_)) => HandshakeFailure::bad_certificate,
            Some(Error::NoCertificatesPresented) => HandshakeFailure::no_certificate,
            Some(_) => HandshakeFailure::protocol,
            None => HandshakeFailure::io,
        }
    }
}

/// What a transfer moves.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Kind {
    upload,
    download,
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Outcome {
    verified,
    failed,
}

/// A request of the protocol.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Op {
    upload,
    download,
    list,
    delete,
}

impl Op {
    /// The operation named `name` in the session's log lines.
    pub fn from_name(name: &str) -> Op {
        match name {
            "upload" => Op::upload,
            "download" => Op::download,
            "delete" => Op::delete,
            _ => Op::list,
        }
    }
}

/// Whether something succeeded.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Success {
    ok,
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabel {
    reason: RefusedReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabel {
    reason: HandshakeFailure,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: Kind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    kind: Kind,
    result: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedRequestLabels {
    op: Op,
    /// A protocol error code's name in snake case (a fixed set: `not_found`, `quota_exceeded`..).
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: Success,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from 1 ms to about 9 hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    connections_refused: Family<RefusedLabel, Counter>,
    handshakes_failed: Family<HandshakeLabel, Counter>,
    revoked_refused: Counter,
    transfers_started: Family<KindLabel, Counter>,
    transfers_finished: Family<FinishedLabels, Counter>,
    transfer_seconds: Histograms<KindLabel>,
    requests_refused: Family<RefusedRequestLabels, Counter>,
    bytes_received: Counter,
    bytes_sent: Counter,
    chunks_refused: Counter,
    chunks_resent: Counter,
    commit_seconds: Histogram,
    partial_uploads: Gauge,
    partial_uploads_expired: Counter,
    crl_reloads: Family<ResultLabel, Counter>,
    storage_used: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferry");
        let metrics = Metrics {
            registry: Registry::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            handshakes_failed: Family::default(),
            revoked_refused: Counter::default(),
            transfers_started: Family::default(),
            transfers_finished: Family::default(),
            transfer_seconds: Family::new_with_constructor(duration_histogram),
            requests_refused: Family::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            chunks_refused: Counter::default(),
            chunks_resent: Counter::default(),
            commit_seconds: duration_histogram(),
            partial_uploads: Gauge::default(),
            partial_uploads_expired: Counter::default(),
            crl_reloads: Family::default(),
            storage_used: Gauge::default(),
        };
        let m = &metrics;
        registry.register(
            "connections_open",
            "Client connections open (TLS handshake included)",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed by a connection limit",
            m.connections_refused.clone(),
        );
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes that failed, by reason",
            m.handshakes_failed.clone(),
        );
        registry.register(
            "revoked_certificates_refused",
            "Handshakes refused because the client certificate is on the CRL",
            m.revoked_refused.clone(),
        );
        registry.register(
            "transfers_started",
            "Uploads and downloads accepted",
            m.transfers_started.clone(),
        );
        registry.register(
            "transfers_finished",
            "Uploads and downloads ended, by result",
            m.transfers_finished.clone(),
        );
        registry.register_with_unit(
            "transfer_duration",
            "Time from the start of a transfer to its end",
            Unit::Seconds,
            m.transfer_seconds.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused, by operation and protocol error code",
            m.requests_refused.clone(),
        );
        registry.register_with_unit(
            "received",
            "File data received in chunks and stored",
            Unit::Bytes,
            m.bytes_received.clone(),
        );
        registry.register_with_unit(
            "sent",
            "File data read from storage and sent in chunks",
            Unit::Bytes,
            m.bytes_sent.clone(),
        );
        registry.register(
            "chunks_refused",
            "Chunks refused (bad digest or length) and asked for again",
            m.chunks_refused.clone(),
        );
        registry.register(
            "chunks_resent",
            "Chunks sent again after a NACK or a timeout",
            m.chunks_resent.clone(),
        );
        registry.register_with_unit(
            "commit_duration",
            "Time to commit a verified upload (fsync, metadata, rename)",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        registry.register(
            "partial_uploads",
            "Partial uploads held for a resume (at the last scrape)",
            m.partial_uploads.clone(),
        );
        registry.register(
            "partial_uploads_expired",
            "Abandoned partial uploads removed",
            m.partial_uploads_expired.clone(),
        );
        registry.register(
            "crl_reloads",
            "CRL reloads (SIGHUP or a change of the file), by result",
            m.crl_reloads.clone(),
        );
        registry.register_with_unit(
            "storage_used",
            "Bytes of files under the storage directory (at the last scrape)",
            Unit::Bytes,
            m.storage_used.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The OpenMetrics text exposition (Prometheus reads it), `# EOF` included.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            let _ = writeln!(text, "# cannot encode the metrics: {e}");
        }
        text
    }

    /// Counts an open connection until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// A connection closed by a limit.
    pub fn connection_refused(&self, reason: RefusedReason) {
        self.connections_refused
            .get_or_create(&RefusedLabel { reason })
            .inc();
    }

    /// A failed TLS handshake.
    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshakes_failed
            .get_or_create(&HandshakeLabel { reason })
            .inc();
        if reason == HandshakeFailure::revoked {
            self.revoked_refused.inc();
        }
    }

    /// A transfer accepted.
    pub fn transfer_started(&self, kind: Kind) {
        self.transfers_started
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A transfer ended after `elapsed`.
    pub fn transfer_finished(&self, kind: Kind, result: Outcome, elapsed: Duration) {
        self.transfers_finished
            .get_or_create(&FinishedLabels { kind, result })
            .inc();
        self.transfer_seconds
            .get_or_create(&KindLabel { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// A request refused with `code`.
    pub fn request_refused(&self, op: Op, code: ErrorCode) {
        let code = code.name().replace(' ', "_");
        self.requests_refused
            .get_or_create(&RefusedRequestLabels { op, code })
            .inc();
    }

    /// Chunk data stored.
    pub fn received(&self, bytes: usize) {
        self.bytes_received.inc_by(bytes as u64);
    }

    /// Chunk data sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes_sent.inc_by(bytes as u64);
    }

    /// The protocol counters of a connection that ended.
    pub fn connection_stats(&self, stats: Stats) {
        self.chunks_refused.inc_by(stats.chunks_nacked);
        self.chunks_resent.inc_by(stats.chunks_resent);
    }

    /// An upload committed in `elapsed`.
    pub fn committed(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Abandoned partial uploads removed.
    pub fn partials_expired(&self, removed: usize) {
        self.partial_uploads_expired.inc_by(removed as u64);
    }

    /// A CRL reload.
    pub fn crl_reloaded(&self, ok: bool) {
        let result = if ok { Success::ok } else { Success::failed };
        self.crl_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Updates the storage gauges from a walk of the storage directory.
    pub fn measure_storage(&self, root: &Path) -> std::io::Result<()> {
        let usage = StorageUsage::walk(root)?;
        self.storage_used.set(usage.bytes);
        self.partial_uploads
            .set(i64::try_from(usage.partials).unwrap_or(i64::MAX));
        Ok(())
    }
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the storage directory holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct StorageUsage {
    /// Bytes of regular files.
    bytes: u64,
    /// Partial uploads (`*.part` files).
    partials: u64,
}

impl StorageUsage {
    fn walk(root: &Path) -> std::io::Result<StorageUsage> {
        let mut usage = StorageUsage::default();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file() {
                    usage.bytes += entry.metadata()?.len();
                    if entry.path().extension().is_some_and(|e| e == "part") {
                        usage.partials += 1;
                    }
                }
            }
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let metrics = Metrics::new();
        metrics.transfer_started(Kind::upload);
        metrics.transfer_finished(Kind::upload, Outcome::verified, Duration::from_millis(3));
        metrics.received(1000);
        metrics.handshake_failed(HandshakeFailure::revoked);
        metrics.request_refused(Op::upload, ErrorCode::QUOTA_EXCEEDED);
        let open = metrics.connection_opened();
        let text = metrics.encode();
        assert!(
            text.contains("ferry_transfers_started_total{kind=\"upload\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_transfers_finished_total{kind=\"upload\",result=\"verified\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_received_bytes_total 1000")
                && text.contains(
                    "ferry_requests_refused_total{op=\"upload\",code=\"quota_exceeded\"} 1"
                ),
            "{text}"
        );
        assert!(
            text.contains("ferry_revoked_certificates_refused_total 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_tls_handshakes_failed_total{reason=\"revoked\"} 1"),
            "{text}"
        );
        assert!(text.contains("ferry_connections_open 1"), "{text}");
        assert!(
            text.contains("ferry_transfer_duration_seconds_count{kind=\"upload\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        drop(open);
        assert!(metrics.encode().contains("ferry_connections_open 0"));
    }

    #[test]
    fn storage_walk_counts_files_and_partials() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("id/partial");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("k.part"), [0u8; 100]).unwrap();
        std::fs::write(partial.join("k.held"), [0u8; 10]).unwrap();
        std::fs::create_dir_all(dir.path().join("id/files")).unwrap();
        std::fs::write(dir.path().join("id/files/a"), [0u8; 7]).unwrap();
        let usage = StorageUsage::walk(dir.path()).unwrap();
        assert_eq!(
            usage,
            StorageUsage {
                bytes: 117,
                partials: 1
            }
        );
    }
}
