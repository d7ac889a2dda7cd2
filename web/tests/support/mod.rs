//! Helpers of ferry-web's tests: a real Ferry server and the page, both in process on
//! 127.0.0.1:0 with temporary storage and certificates, and a minimal browser-like HTTP
//! client (cookie, CSRF token from the page).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_testkit::server::InProcess;
use ferry_web::{WebOptions, WebServer};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// Not every test file uses it.
#[allow(unused_imports)]
pub use ferry_testkit::data::pseudo_random;

/// How long the page and the server get to stop.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A running Ferry server and web page.
pub struct Env {
    /// First, so that it stops before its directory goes.
    server: InProcess,
    pub dir: tempfile::TempDir,
    pub storage: PathBuf,
    pub certs: PathBuf,
    pub server_addr: SocketAddr,
    pub web_addr: SocketAddr,
    pub https: bool,
    /// The page's options (its real address once bound), for restarts.
    pub options: WebOptions,
    web_stop: Option<oneshot::Sender<()>>,
    web_task: Option<JoinHandle<()>>,
}

impl Env {
    /// Server and page with default options.
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// Server and page; `tweak` adjusts the page's options.
    pub async fn start_with(tweak: impl FnOnce(&mut WebOptions)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = InProcess::start(dir.path(), |_| {}).await;
        let mut options = WebOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            server: ferry_web::server_address_for(server.addr),
            certs_dir: server.certs.clone(),
            scratch_dir: Some(dir.path().join("scratch")),
            ..WebOptions::default()
        };
        std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
        tweak(&mut options);
        let (web_addr, https, web_stop, web_task) = start_web(options.clone()).await;
        options.listen = web_addr;
        Env {
            dir,
            storage: server.storage.clone(),
            certs: server.certs.clone(),
            server_addr: server.addr,
            web_addr,
            https,
            server,
            options,
            web_stop: Some(web_stop),
            web_task: Some(web_task),
        }
    }

    async fn stop_web(&mut self) {
        if let Some(stop) = self.web_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.web_task.take() {
            tokio::time::timeout(STOP_WAIT, task)
                .await
                .expect("the page stops in time")
                .unwrap();
        }
    }

    /// Stops the page and starts a new one on the same address and directories.
    pub async fn restart_web(&mut self) {
        self.stop_web().await;
        let (_, _, stop, task) = start_web(self.options.clone()).await;
        self.web_stop = Some(stop);
        self.web_task = Some(task);
    }

    /// Stops the Ferry server and starts it again on the same address and directories.
    pub async fn restart_server(&mut self) {
        tokio::time::timeout(STOP_WAIT, self.server.stop())
            .await
            .expect("the server stops in time");
        let listen = self.server_addr.to_string();
        self.server = InProcess::start(self.dir.path(), |o| o.listen = listen).await;
    }

    /// `http://ADDR` (or https).
    pub fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.web_addr
        )
    }

    /// Where the server keeps `name` of the client named `client`.
    pub fn stored(&self, client: &str, name: &str) -> PathBuf {
        self.storage.join(client).join("files").join(name)
    }

    /// The files committed under client `client`.
    pub fn stored_names(&self, client: &str) -> Vec<String> {
        let dir = self.storage.join(client).join("files");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Stops the page, then the server.
    pub async fn stop(mut self) {
        self.stop_web().await;
        tokio::time::timeout(STOP_WAIT, self.server.stop())
            .await
            .expect("the server stops in time");
    }
}

type WebTask = (SocketAddr, bool, oneshot::Sender<()>, JoinHandle<()>);

/// Binds and serves a page: its address, whether it is HTTPS, its stop switch and task.
async fn start_web(options: WebOptions) -> WebTask {
    let web = WebServer::bind(options).await.expect("ferry-web binds");
    let web_addr = web.local_addr();
    let https = web.is_https();
    let (web_stop, web_stopped) = oneshot::channel::<()>();
    let web_task = tokio::spawn(async move {
        web.serve(async {
            let _ = web_stopped.await;
        })
        .await
        .unwrap();
    });
    (web_addr, https, web_stop, web_task)
}

/// A reqwest client that talks to the page (no proxies, short timeouts).
/// A temporary directory holding a new CA (and the server and `local` certificates).
pub fn fresh_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ferry_certs::init(
        &ferry_certs::CertDir::new(dir.path()),
        &ferry_certs::InitOptions::default(),
    )
    .unwrap();
    dir
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        // A new connection per request: tests restart the page, and a kept connection to the
        // stopped one would fail the next request.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The value of `name` in the response's Set-Cookie headers, and the whole header.
pub fn set_cookie_value(response: &Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let parsed = cookie::Cookie::parse(v).ok()?;
            (parsed.name() == name).then(|| (parsed.value().to_string(), v.to_string()))
        })
}

/// The content of `<meta name="NAME" content="...">` in a page.
pub fn meta(page: &str, name: &str) -> Option<String> {
    let marker = format!("<meta name=\"{name}\" content=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

/// The text of the element with `id` (its first text, up to the next tag).
pub fn element_text(page: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\"");
    let start = page.find(&marker)?;
    let open_end = page[start..].find('>')? + start + 1;
    let close = page[open_end..].find('<')? + open_end;
    Some(page[open_end..close].to_string())
}

/// `POST /api/session` as the page's script sends it (same origin, `X-CSRF-Token: new`).
pub async fn new_session(http: &reqwest::Client, base: &str, extra: &HeaderMap) -> Response {
    let mut headers = extra.clone();
    headers.insert("x-csrf-token", HeaderValue::from_static("new"));
    headers.insert(
        reqwest::header::ORIGIN,
        HeaderValue::from_str(base).unwrap(),
    );
    headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    http.post(format!("{base}/api/session"))
        .headers(headers)
        .send()
        .await
        .unwrap()
}

/// One browser: its session cookie and CSRF token.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub identity: String,
    pub fingerprint: String,
    /// Extra headers on every request (an access token).
    pub extra: HeaderMap,
}

impl Browser {
    /// Opens the page: a new session.
    pub async fn open(env: &Env) -> Browser {
        Browser::open_with(env.base(), http_client(), HeaderMap::new()).await
    }

    pub async fn open_with(base: String, http: reqwest::Client, extra: HeaderMap) -> Browser {
        let response = http
            .get(format!("{base}/"))
            .headers(extra.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            set_cookie_value(&response, "ferry_session").is_none(),
            "the page made a session on GET /"
        );
        // The first action that needs an identity makes the session, as the page's script does.
        let response = new_session(&http, &base, &extra).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (cookie, _) = set_cookie_value(&response, "ferry_session").expect("session cookie");
        let info: serde_json::Value = response.json().await.unwrap();
        Browser {
            http,
            base,
            cookie: format!("ferry_session={cookie}"),
            csrf: info["csrf"].as_str().expect("csrf").to_string(),
            identity: info["identity"].as_str().expect("identity").to_string(),
            fingerprint: info["fingerprint"]
                .as_str()
                .expect("fingerprint")
                .to_string(),
            extra,
        }
    }

    /// The headers a same-origin script sends.
    pub fn headers(&self, csrf: bool) -> HeaderMap {
        let mut headers = self.extra.clone();
        headers.insert(
            reqwest::header::COOKIE,
            HeaderValue::from_str(&self.cookie).unwrap(),
        );
        if csrf {
            headers.insert("x-csrf-token", HeaderValue::from_str(&self.csrf).unwrap());
            headers.insert(
                reqwest::header::ORIGIN,
                HeaderValue::from_str(&self.base).unwrap(),
            );
            headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        }
        headers
    }

    pub fn form(size: u64, name: &str, data: Vec<u8>) -> Form {
        Form::new()
            .text("size", size.to_string())
            .part("file", Part::bytes(data).file_name(name.to_string()))
    }

    /// Uploads with the given headers and form.
    pub async fn post_form(&self, headers: HeaderMap, form: Form) -> Response {
        self.http
            .post(format!("{}/api/upload", self.base))
            .headers(headers)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `data` as `name`; returns the status and JSON body.
    pub async fn upload(&self, name: &str, data: &[u8]) -> (StatusCode, serde_json::Value) {
        let form = Browser::form(data.len() as u64, name, data.to_vec());
        let response = self.post_form(self.headers(true), form).await;
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn list(&self) -> Vec<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}/api/files", self.base))
            .headers(self.headers(false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub fn file_url(&self, name: &str) -> String {
        let mut url = reqwest::Url::parse(&format!("{}/api/file", self.base)).unwrap();
        url.query_pairs_mut().append_pair("name", name);
        url.to_string()
    }

    pub async fn download(&self, name: &str) -> Response {
        self.http
            .get(self.file_url(name))
            .headers(self.headers(false))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_with(&self, name: &str, headers: HeaderMap) -> Response {
        self.http
            .delete(self.file_url(name))
            .headers(headers)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, name: &str) -> Response {
        self.delete_with(name, self.headers(true)).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .headers(self.headers(false))
            .send()
            .await
            .unwrap()
    }
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> [u8; 32] {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().into()
}
