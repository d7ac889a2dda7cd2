//! `GET /metrics`: the page's counters and gauges, in the Prometheus text format.

use warp::http::header::{self, HeaderValue};
use warp::reply::Response;

use crate::routes::State;

/// `GET /metrics`: the page's counters, in the Prometheus text format.
pub(crate) fn metrics(state: &State) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let refusals = &state.limits.refusals;
    let counters = [
        (
            "ferry_web_tus_bytes_received_total",
            "counter",
            "Bytes of resumable-upload bodies received.",
            state.uploads.bytes_received.load(Relaxed),
        ),
        (
            "ferry_web_tus_uploads_completed_total",
            "counter",
            "Resumable uploads verified by the Ferry server.",
            state.uploads.completed.load(Relaxed),
        ),
        (
            "ferry_web_sessions_cached",
            "gauge",
            "Sessions held in memory.",
            state.sessions.len() as u64,
        ),
        (
            "ferry_web_sessions_evicted_total",
            "counter",
            "Least recently used sessions ended (certificate revoked) to make room for a newcomer.",
            state.sessions.evicted.load(Relaxed),
        ),
        (
            "ferry_web_sessions_expired_total",
            "counter",
            "Sessions ended at the end of their lifetime (certificate revoked).",
            state.sessions.expired.load(Relaxed),
        ),
        (
            "ferry_web_identities_rate_limited_total",
            "counter",
            "New identities refused (429): too many from one source address.",
            refusals.identity_rate_limited.load(Relaxed),
        ),
        (
            "ferry_web_sessions_full_total",
            "counter",
            "New identities refused (503): every session had a request running.",
            refusals.sessions_full.load(Relaxed),
        ),
        (
            "ferry_web_token_slowdowns_total",
            "counter",
            "Requests refused (429) because their source guessed wrong access tokens too often.",
            refusals.token_slowdown.load(Relaxed),
        ),
        (
            "ferry_web_connections_refused_total",
            "counter",
            "Connections closed at once: too many open from the source or in total.",
            refusals.connections_refused.load(Relaxed),
        ),
        (
            "ferry_web_connections_open",
            "gauge",
            "HTTP connections open.",
            state.connections.open(),
        ),
        (
            "ferry_web_scratch_bytes",
            "gauge",
            "Bytes of downloads staged in the scratch directory now.",
            state.scratch_budget.used(),
        ),
        (
            "ferry_web_scratch_full_total",
            "counter",
            "Downloads refused (503): the scratch space was taken.",
            refusals.scratch_full.load(Relaxed),
        ),
        (
            "ferry_web_send_timeouts_total",
            "counter",
            "Downloads cut because the browser read nothing for the send timeout.",
            refusals.send_timeouts.load(Relaxed),
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in counters {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    let mut response = Response::new(text.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
