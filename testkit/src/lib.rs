//! Ferry's test kit: what the workspace's integration tests share. Never published; add it
//! as a dev-dependency (`ferry-testkit.workspace = true`).
//!
//! - [`data`]: deterministic pseudo-random test data, in memory or streamed to a file.
//! - [`pki`]: certificate directories made with the ferry-certs library, their paths and
//!   rustls client configurations.
//! - [`server`]: the real `ferry-server` running in this process on 127.0.0.1:0.
//! - [`proxy`]: a TCP relay between a client and the server that counts bytes and
//!   connections and breaks connections on demand.
//! - [`cluster`]: outside servers as real processes on ephemeral ports: PostgreSQL,
//!   s3s-fs, a Garage cluster and HAProxy, stopped by pid on drop.
//!
//! ```no_run
//! # async fn example() {
//! use ferry_testkit::proxy::{Direction, Proxy};
//! use ferry_testkit::server::InProcess;
//!
//! let server = InProcess::start_temp(|options| options.quota = 1 << 30).await;
//! let proxy = Proxy::start(server.addr).await;
//! // The next connection through the relay breaks after 1 MiB from the client.
//! proxy.cut_next(Direction::Upstream, 1 << 20);
//! let options = server.pki().client_options("local", proxy.addr);
//! let data = ferry_testkit::data::pseudo_random(3 << 20, 7);
//! # let _ = (options, data);
//! # }
//! ```

pub mod cluster;
pub mod data;
pub mod pki;
pub mod proxy;
pub mod server;
