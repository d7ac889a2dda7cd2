//! Honest clients that keep working while an attack runs: the ferry client library (a new
//! connection per operation, as the `ferry` command makes) listing, uploading and
//! downloading, or a browser-like HTTP client on the web page. They run on their own thread
//! and runtime, so that the attack's tasks do not take their turns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferry_testkit::pki::Pki;
use ferry_tokio::client::Client;
use hdrhistogram::Histogram;
use tokio::sync::watch;

/// The target: every honest operation done within this.
pub const TARGET: Duration = Duration::from_secs(2);
/// Bytes of each honest upload.
const UPLOAD_BYTES: usize = 64 * 1024;
/// Pause between two operations of one honest client.
const PAUSE: Duration = Duration::from_millis(50);
/// Honest clients running at once.
const CLIENTS: usize = 2;

/// What the honest clients did.
pub struct Tally {
    pub attempted: u64,
    pub ok: u64,
    /// Succeeded within [`TARGET`].
    pub ok_in_target: u64,
    /// Latency of every attempt (failed ones with the time they took), microseconds.
    pub latency: Histogram<u64>,
    /// The first failures, for the report.
    pub failures: Vec<String>,
    /// Failures told "server disk full" (all of them, also counted in `attempted`).
    pub disk_full: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            attempted: 0,
            ok: 0,
            ok_in_target: 0,
            latency: Histogram::new(3).expect("a histogram"),
            failures: Vec::new(),
            disk_full: 0,
        }
    }
}

/// What the server tells a client whose upload met a full disk.
pub const DISK_FULL: &str = "server disk full";

impl Tally {
    pub fn record(&mut self, what: &str, took: Duration, result: Result<(), String>) {
        self.attempted += 1;
        let _ = self.latency.record(took.as_micros().max(1) as u64);
        if matches!(&result, Err(why) if why.contains(DISK_FULL)) {
            self.disk_full += 1;
        }
        match result {
            Ok(()) => {
                self.ok += 1;
                if took <= TARGET {
                    self.ok_in_target += 1;
                }
            }
            Err(why) if self.failures.len() < 3 => self
                .failures
                .push(format!("{what} after {:.1} s: {why}", took.as_secs_f64())),
            Err(_) => {}
        }
    }

    /// A percentile of the latency, milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// What the honest clients use.
#[derive(Clone)]
pub enum Workload {
    /// Ferry protocol clients with identities `honest-N` of the certificate directory.
    Protocol { addr: SocketAddr, certs: PathBuf },
    /// Browser-like clients of the web page at `url`, sending `token` if the page needs one.
    Web { url: String, token: Option<String> },
}

/// The running honest clients.
pub struct Honest {
    stop: watch::Sender<bool>,
    thread: JoinHandle<Tally>,
}

impl Honest {
    /// Starts the clients; each operation that takes longer than `op_timeout` fails.
    pub fn start(workload: Workload, op_timeout: Duration) -> Honest {
        let (stop, flag) = watch::channel(false);
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the honest clients");
            let tally = Arc::new(Mutex::new(Tally::default()));
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for n in 0..CLIENTS {
                    let (workload, flag, tally) = (workload.clone(), flag.clone(), tally.clone());
                    tasks.push(tokio::spawn(async move {
                        match workload {
                            Workload::Protocol { addr, certs } => {
                                protocol_client(n, addr, certs, flag, tally, op_timeout).await
                            }
                            Workload::Web { url, token } => {
                                web_client(n, url, token, flag, tally, op_timeout).await
                            }
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
            let tally = std::mem::take(&mut *tally.lock().unwrap());
            tally
        });
        Honest { stop, thread }
    }

    /// Stops the clients (an operation cut short by the stop is not counted) and returns
    /// what they did.
    pub fn finish(self) -> Tally {
        let _ = self.stop.send(true);
        self.thread.join().expect("the honest clients")
    }
}

/// Runs `op` with a limit and records it, unless the clients are stopped first.
async fn timed<F>(stop: &mut Stop, tally: &Mutex<Tally>, what: &str, limit: Duration, op: F)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let result = tokio::select! {
        result = tokio::time::timeout(limit, op) => match result {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        },
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    tally
        .lock()
        .unwrap()
        .record(what, started.elapsed(), result);
}

/// Set when the honest clients must stop.
type Stop = watch::Receiver<bool>;

fn stopped(stop: &Stop) -> bool {
    *stop.borrow()
}

async fn protocol_client(
    n: usize,
    addr: SocketAddr,
    certs: PathBuf,
    mut stop: Stop,
    tally: Arc<Mutex<Tally>>,
    limit: Duration,
) {
    let options = Pki::open(&certs).client_options(&format!("honest-{n}"), addr);
    let data = ferry_testkit::data::pseudo_random(UPLOAD_BYTES, n as u64 + 1);
    let scratch = tempfile::tempdir().expect("a download directory");
    let mut round = 0u64;
    let mut uploaded: Option<String> = None;
    while !stopped(&stop) {
        let name = format!("honest-{}.bin", round % 4);
        match round % 3 {
            0 => {
                let op = async {
                    let mut client = Client::connect(options.clone()).await.map_err(e)?;
                    client.list().await.map_err(e)?;
                    client.close().await;
                    Ok(())
                };
                timed(&mut stop, &tally, "list", limit, op).await;
            }
            1 => {
                let op = async {
                    let mut client = Client::connect(options.clone()).await.map_err(e)?;
                    client
                        .upload_stream(&name, data.len() as u64, &data[..], &mut |_| {})
                        .await
                        .map_err(e)?;
                    client.close().await;
                    Ok(())
                };
                let before = tally.lock().unwrap().ok;
                timed(&mut stop, &tally, "upload", limit, op).await;
                if tally.lock().unwrap().ok > before {
                    uploaded = Some(name);
                }
            }
            _ => {
                let Some(name) = uploaded.clone() else {
                    round += 1;
                    continue;
                };
                let dest = scratch.path().join("download.bin");
                let op = async {
                    let mut client = Client::connect(options.clone()).await.map_err(e)?;
                    client
                        .download_file(&name, &dest, &mut |_| {})
                        .await
                        .map_err(e)?;
                    client.close().await;
                    if std::fs::read(&dest).map_err(e)? != data {
                        return Err("the download differs from the upload".into());
                    }
                    Ok(())
                };
                timed(&mut stop, &tally, "download", limit, op).await;
            }
        }
        round += 1;
        tokio::time::sleep(PAUSE).await;
    }
}

fn e(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A browser's view of the page: its session cookie and CSRF token.
pub struct WebSession {
    pub cookie: String,
    pub csrf: String,
}

/// A client of the web page that sends what a browser would (origin, CSRF token, cookie).
pub struct WebClient {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

impl WebClient {
    pub fn new(url: &str, token: Option<String>) -> WebClient {
        WebClient::from(url, token, None)
    }

    /// A new visitor: another person, so another source address (127.1.N.V), as people
    /// arriving at a page come from their own addresses.
    pub fn visitor(url: &str, token: Option<String>, client: usize, visitor: u64) -> WebClient {
        let address = std::net::Ipv4Addr::new(127, 1, client as u8, (visitor % 250) as u8 + 1);
        WebClient::from(url, token, Some(address.into()))
    }

    /// A client whose requests come from [`super::ATTACKER_IP`].
    pub fn attacker(url: &str, token: Option<String>) -> WebClient {
        WebClient::from(url, token, Some(super::ATTACKER_IP))
    }

    fn from(url: &str, token: Option<String>, source: Option<std::net::IpAddr>) -> WebClient {
        WebClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(source)
                .build()
                .expect("an HTTP client"),
            url: url.to_string(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("origin", &self.url)
            .header("sec-fetch-site", "same-origin");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// `GET path`; the status.
    pub async fn get(&self, path: &str, session: Option<&WebSession>) -> Result<u16, String> {
        let mut request = self.request(reqwest::Method::GET, path);
        if let Some(session) = session {
            request = request.header("cookie", &session.cookie);
        }
        let response = request.send().await.map_err(e)?;
        let status = response.status().as_u16();
        response.bytes().await.map_err(e)?;
        Ok(status)
    }

    /// A new visitor's session (`POST /api/session`, `X-CSRF-Token: new`); the status and,
    /// when made, the session.
    pub async fn new_session(&self) -> Result<(u16, Option<WebSession>), String> {
        let response = self
            .request(reqwest::Method::POST, "/api/session")
            .header("x-csrf-token", "new")
            .send()
            .await
            .map_err(e)?;
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let csrf = body["csrf"].as_str().map(str::to_string);
        Ok(match (cookie, csrf) {
            (Some(cookie), Some(csrf)) => (status, Some(WebSession { cookie, csrf })),
            _ => (status, None),
        })
    }

    /// Uploads `data` as `name` through `POST /api/upload`; the status.
    pub async fn upload(
        &self,
        session: &WebSession,
        name: &str,
        data: Vec<u8>,
    ) -> Result<u16, String> {
        let size = data.len().to_string();
        let form = reqwest::multipart::Form::new().text("size", size).part(
            "file",
            reqwest::multipart::Part::bytes(data).file_name(name.to_string()),
        );
        let response = self
            .request(reqwest::Method::POST, "/api/upload")
            .header("cookie", &session.cookie)
            .header("x-csrf-token", &session.csrf)
            .multipart(form)
            .send()
            .await
            .map_err(e)?;
        let status = response.status().as_u16();
        response.bytes().await.map_err(e)?;
        Ok(status)
    }
}

fn success(status: Result<u16, String>) -> Result<(), String> {
    match status? {
        200..=299 => Ok(()),
        other => Err(format!("HTTP {other}")),
    }
}

async fn web_client(
    n: usize,
    url: String,
    token: Option<String>,
    mut stop: Stop,
    tally: Arc<Mutex<Tally>>,
    limit: Duration,
) {
    let mut web = WebClient::new(&url, token.clone());
    let data = ferry_testkit::data::pseudo_random(UPLOAD_BYTES, n as u64 + 1);
    let mut session: Option<WebSession> = None;
    let mut round = 0u64;
    while !stopped(&stop) {
        // Every fourth round a new visitor arrives (a browser without the cookie).
        if round.is_multiple_of(4) || session.is_none() {
            web = WebClient::visitor(&url, token.clone(), n, round / 4);
            let mut made = None;
            let op = async {
                match web.new_session().await? {
                    (_, Some(new)) => {
                        made = Some(new);
                        Ok(())
                    }
                    (status, None) => Err(format!("new visitor: HTTP {status}")),
                }
            };
            timed(&mut stop, &tally, "new session", limit, op).await;
            if made.is_some() {
                session = made;
            }
        }
        if let Some(current) = &session {
            match round % 3 {
                0 => {
                    timed(&mut stop, &tally, "GET /", limit, async {
                        success(web.get("/", None).await)
                    })
                    .await
                }
                1 => {
                    let name = format!("honest-{n}-{}.bin", round % 4);
                    let op = async { success(web.upload(current, &name, data.clone()).await) };
                    timed(&mut stop, &tally, "web upload", limit, op).await
                }
                _ => {
                    let op = async { success(web.get("/api/files", Some(current)).await) };
                    timed(&mut stop, &tally, "web list", limit, op).await
                }
            }
        }
        round += 1;
        tokio::time::sleep(PAUSE).await;
    }
}
