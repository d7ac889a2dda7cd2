//! The upload page served beside the Ferry port when the binary is built with the `web`
//! feature (the default); without it the page is absent and `--web` is ignored with a warning.

use std::net::SocketAddr;

use ferry_server::pg::Database;
use ferry_server::{Args, ServerOptions};

#[cfg(feature = "web")]
pub use with_web::WebPage;
#[cfg(not(feature = "web"))]
pub use without_web::WebPage;

#[cfg(feature = "web")]
mod with_web {
    use super::*;
    use anyhow::Context;

    /// The web page to serve beside the server.
    pub struct WebPage {
        options: ferry_web::WebOptions,
        /// Whether --web was given (a busy default port is then not fatal).
        explicit: bool,
    }

    /// A bound page, ready to serve.
    pub struct RunningPage(ferry_web::WebServer);

    impl WebPage {
        /// The page the command line asks for: on by default (127.0.0.1:5000), off with --no-web.
        pub fn from_args(args: &Args, options: &ServerOptions) -> Option<WebPage> {
            (!args.no_web).then(|| WebPage {
                options: ferry_web::WebOptions {
                    listen: args.web.unwrap_or(ferry_web::DEFAULT_LISTEN),
                    certs_dir: options.certs.clone(),
                    access_token: args.web_token.clone(),
                    tls_cert: args.web_tls_cert.clone(),
                    tls_key: args.web_tls_key.clone(),
                    max_upload_bytes: options.max_file_size,
                    token_flag: "--web-token",
                    ..ferry_web::WebOptions::default()
                },
                explicit: args.web.is_some(),
            })
        }

        /// Binds the page's socket, before the server creates any certificate. A busy default
        /// port only warns (the page is then not served).
        pub async fn reserve(self) -> anyhow::Result<Option<ReservedPage>> {
            let addr = self.options.listen;
            ferry_web::check_access_token(&self.options).context("web page")?;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => Ok(Some(ReservedPage {
                    page: self,
                    listener,
                })),
                Err(error) if !self.explicit => {
                    tracing::warn!(
                        "web page not served: cannot listen on {addr}: {error} (choose another with --web ADDR, or --no-web)"
                    );
                    Ok(None)
                }
                Err(error) => {
                    Err(error).with_context(|| format!("web page: cannot listen on {addr}"))
                }
            }
        }
    }

    /// A page whose socket is bound.
    pub struct ReservedPage {
        page: WebPage,
        listener: tokio::net::TcpListener,
    }

    impl ReservedPage {
        /// Starts the page; it reaches the server on its own address (0.0.0.0 becomes
        /// 127.0.0.1, which the server certificate carries).
        pub async fn start(
            self,
            server: SocketAddr,
            database: Option<&Database>,
        ) -> anyhow::Result<RunningPage> {
            let mut options = self.page.options;
            options.server = ferry_web::server_address_for(server);
            let page =
                ferry_web::WebServer::on_listener(options, self.listener).context("web page")?;
            if let Some(database) = database {
                let shared = ferry_web::SharedSessions::open(database.pool().clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("web page: sharing sessions: {e}"))?;
                page.share_sessions(shared);
            }
            Ok(RunningPage(page))
        }
    }

    impl RunningPage {
        /// The page's address, for the start-up line.
        pub fn url(&self) -> String {
            self.0.url().trim_end_matches('/').to_string()
        }

        /// Serves until `stopped` changes.
        pub fn spawn(
            self,
            mut stopped: tokio::sync::watch::Receiver<bool>,
        ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
            tokio::spawn(async move {
                self.0
                    .serve(async move {
                        let _ = stopped.changed().await;
                    })
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
    }
}

#[cfg(not(feature = "web"))]
mod without_web {
    use super::*;

    /// Never built: this binary has no web page.
    pub enum WebPage {}

    /// Never built: this binary has no web page.
    pub enum RunningPage {}

    impl WebPage {
        /// No page; `--web` is refused (the binary was built without the `web` feature).
        pub fn from_args(args: &Args, _options: &ServerOptions) -> Option<WebPage> {
            if args.web.is_some() {
                tracing::warn!("--web ignored: this ferry-server was built without the web page (cargo feature `web`)");
            }
            None
        }

        pub async fn reserve(self) -> anyhow::Result<Option<ReservedPage>> {
            match self {}
        }
    }

    /// Never built: this binary has no web page.
    pub enum ReservedPage {}

    impl ReservedPage {
        pub async fn start(
            self,
            _server: SocketAddr,
            _database: Option<&Database>,
        ) -> anyhow::Result<RunningPage> {
            match self {}
        }
    }

    impl RunningPage {
        pub fn url(&self) -> String {
            match *self {}
        }

        pub fn spawn(
            self,
            _stopped: tokio::sync::watch::Receiver<bool>,
        ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
            match self {}
        }
    }
}
