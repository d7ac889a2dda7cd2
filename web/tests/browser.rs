//! A real browser: headless Chromium, driven through WebDriver (`chromedriver`), opens the
//! page, picks a file in the file input, clicks Upload, waits for the verified result and
//! checks that the server holds the file byte for byte; then it checks the file list, follows
//! a link to the page from another site (same identity afterwards) and deletes the file with
//! its Delete button.
//!
//! Needs Debian's `chromium` and `chromium-driver` (CI installs them). It fails, never skips,
//! when they are missing. `FERRY_WEB_SCREENSHOT=FILE.png` saves a screenshot of the page.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{pseudo_random, Env};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver(http: &reqwest::Client) -> Driver {
    for program in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: install Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http.get(format!("{}/status", driver.base)).send().await {
            if let Ok(status) = response.json::<Value>().await {
                if status["value"]["ready"] == true {
                    return driver;
                }
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A WebDriver session.
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn new(http: &reqwest::Client, driver: &Driver, profile: &Path) -> Session {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1200,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                    "unhandledPromptBehavior": "accept",
                }
            }
        });
        let response: Value = http
            .post(format!("{}/session", driver.base))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"));
        Session {
            http: http.clone(),
            url: format!("{}/session/{id}", driver.base),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.url));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = response["value"]["error"].as_str() {
            panic!(
                "WebDriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, Value::Null).await
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    /// Waits for an element matching `css`.
    async fn wait_for(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.find_all(css).await.into_iter().next() {
                return found;
            }
            if Instant::now() > deadline {
                let uploads = self.text(&self.find("#uploads").await).await;
                panic!("no {css} within {within:?}; transfers: {uploads:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, element: &str) -> String {
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn send_keys(&self, element: &str, text: &str) {
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn screenshot(&self, path: &Path) {
        use std::io::Write;
        let data = self.get("/screenshot").await;
        let png = decode_base64(data.as_str().unwrap());
        std::fs::File::create(path)
            .unwrap()
            .write_all(&png)
            .unwrap();
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uploads_a_file_through_the_page() {
    let env = Env::start().await;
    let http = support::http_client();
    let driver = start_driver(&http).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = Session::new(&http, &driver, profile.path()).await;

    // A file of 5 MiB and a bit, with a space and a non-ASCII letter in its name.
    let name = "ferry browser test é.bin";
    let data = pseudo_random(5 * 1024 * 1024 + 777, 42);
    let upload_dir = tempfile::tempdir().unwrap();
    let path = upload_dir.path().join(name);
    std::fs::write(&path, &data).unwrap();

    browser
        .post("/url", json!({ "url": format!("{}/", env.base()) }))
        .await;
    let fingerprint = browser.text(&browser.find("#fingerprint").await).await;
    assert_eq!(fingerprint.len(), 64, "{fingerprint:?}");
    // The file list loads (empty) on its own.
    let status = browser
        .wait_for("#files-status", Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text(&status).await != "No files yet." {
        assert!(Instant::now() < deadline, "the file list did not load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pick the file and click Upload.
    let input = browser.find("#file-input").await;
    browser.send_keys(&input, path.to_str().unwrap()).await;
    browser.click(&browser.find("#upload-button").await).await;
    let done = browser
        .wait_for(
            "#uploads li[data-state=\"verified\"], #uploads li[data-state=\"failed\"]",
            Duration::from_secs(60),
        )
        .await;
    let result = browser.text(&done).await;
    assert!(result.contains("Verified"), "the page says: {result:?}");
    assert!(result.contains(name), "{result:?}");

    // The server holds the file byte for byte, under this browser's identity.
    let stored = std::fs::read(env.stored(&fingerprint, name)).expect("stored");
    assert!(stored == data, "the server holds other bytes");
    let digest = result.rsplit("digest ").next().unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "{result:?}");

    // The list shows it with its digest.
    let row = browser
        .wait_for("#files tbody tr", Duration::from_secs(10))
        .await;
    let row_text = browser.text(&row).await;
    assert!(row_text.contains(name), "{row_text:?}");
    assert!(row_text.contains(&digest), "{row_text:?}");
    if let Ok(shot) = std::env::var("FERRY_WEB_SCREENSHOT") {
        browser.screenshot(Path::new(&shot)).await;
    }

    // A link from another site: the SameSite=Strict cookie is withheld on that navigation,
    // and the page must bounce through a same-origin reload instead of making a new identity.
    let link_page = format!(
        "data:text/html,<a id=\"go\" href=\"{}/\">Ferry</a>",
        env.base()
    );
    browser.post("/url", json!({ "url": link_page })).await;
    browser.click(&browser.find("#go").await).await;
    let again = browser
        .wait_for("#fingerprint", Duration::from_secs(10))
        .await;
    assert_eq!(
        browser.text(&again).await,
        fingerprint,
        "a cross-site link started a new identity"
    );
    browser
        .wait_for("#files tbody tr", Duration::from_secs(10))
        .await;

    // Delete it with its button (the confirmation is accepted).
    let delete = browser.find("#files tbody tr button.danger").await;
    browser.click(&delete).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.find_all("#files tbody tr").await.is_empty() {
        if let Ok(alert) = http
            .post(format!("{}/alert/accept", browser.url))
            .json(&json!({}))
            .send()
            .await
        {
            drop(alert);
        }
        assert!(Instant::now() < deadline, "the file was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!env.stored(&fingerprint, name).exists());
    browser.quit().await;
    drop(driver);
    env.stop().await;
}
