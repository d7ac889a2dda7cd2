//! A real browser: headless Chromium, driven through WebDriver (`chromedriver`, with the
//! thirtyfour client), opens the page, picks a file in the file input, clicks Upload, waits
//! for the verified result and checks that the server holds the file byte for byte; then it
//! checks the file list, follows a link to the page from another site (same identity
//! afterwards) and deletes the file with its Delete button.
//!
//! Needs Debian's `chromium` and `chromium-driver` (CI installs them). It fails, never skips,
//! when they are missing. `FERRY_WEB_SCREENSHOT=FILE.png` saves a screenshot of the page.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{pseudo_random, Env};
use thirtyfour::prelude::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

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

/// A headless Chromium session with a fresh profile in `profile`.
async fn open_browser(http: &reqwest::Client, driver: &Driver, profile: &Path) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM).unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1000",
        &format!("--user-data-dir={}", profile.display()),
    ] {
        caps.add_arg(arg).unwrap();
    }
    caps.set("unhandledPromptBehavior", "accept").unwrap();
    WebDriver::builder(&driver.base, caps)
        .client(http.clone())
        .await
        .expect("a WebDriver session")
}

/// Waits for an element matching `css`.
async fn wait_for(browser: &WebDriver, css: &str, within: Duration) -> WebElement {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = browser
            .find_all(By::Css(css))
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            return found;
        }
        if Instant::now() > deadline {
            let uploads = browser.find(By::Id("uploads")).await.unwrap();
            let uploads = uploads.text().await.unwrap();
            panic!("no {css} within {within:?}; transfers: {uploads:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`.
async fn text_of(browser: &WebDriver, css: &str) -> String {
    browser
        .find(By::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uploads_a_file_through_the_page() {
    let env = Env::start().await;
    let http = support::http_client();
    let driver = start_driver(&http).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(&http, &driver, profile.path()).await;

    // A file of 5 MiB and a bit, with a space and a non-ASCII letter in its name.
    let name = "ferry browser test é.bin";
    let data = pseudo_random(5 * 1024 * 1024 + 777, 42);
    let upload_dir = tempfile::tempdir().unwrap();
    let path = upload_dir.path().join(name);
    std::fs::write(&path, &data).unwrap();

    browser.goto(format!("{}/", env.base())).await.unwrap();
    let fingerprint = text_of(&browser, "#fingerprint").await;
    assert_eq!(fingerprint.len(), 64, "{fingerprint:?}");
    let identity = text_of(&browser, "#identity").await;
    // The file list loads (empty) on its own.
    let status = wait_for(&browser, "#files-status", Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.text().await.unwrap() != "No files yet." {
        assert!(Instant::now() < deadline, "the file list did not load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pick the file and click Upload.
    let input = browser.find(By::Id("file-input")).await.unwrap();
    input.send_keys(path.to_str().unwrap()).await.unwrap();
    let upload = browser.find(By::Id("upload-button")).await.unwrap();
    upload.click().await.unwrap();
    let done = wait_for(
        &browser,
        "#uploads li[data-state=\"verified\"], #uploads li[data-state=\"failed\"]",
        Duration::from_secs(60),
    )
    .await;
    let result = done.text().await.unwrap();
    assert!(result.contains("Verified"), "the page says: {result:?}");
    assert!(result.contains(name), "{result:?}");

    // The server holds the file byte for byte, under this browser's identity.
    let stored = std::fs::read(env.stored(&identity, name)).expect("stored");
    assert!(stored == data, "the server holds other bytes");
    let digest = result.rsplit("digest ").next().unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "{result:?}");

    // The list shows it with its digest.
    let row = wait_for(&browser, "#files tbody tr", Duration::from_secs(10)).await;
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains(name), "{row_text:?}");
    assert!(row_text.contains(&digest), "{row_text:?}");
    if let Ok(shot) = std::env::var("FERRY_WEB_SCREENSHOT") {
        browser.screenshot(Path::new(&shot)).await.unwrap();
    }

    // A link from another site: the SameSite=Strict cookie is withheld on that navigation,
    // and the page must bounce through a same-origin reload instead of making a new identity.
    let link_page = format!(
        "data:text/html,<a id=\"go\" href=\"{}/\">Ferry</a>",
        env.base()
    );
    browser.goto(link_page).await.unwrap();
    browser
        .find(By::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let again = wait_for(&browser, "#fingerprint", Duration::from_secs(10)).await;
    assert_eq!(
        again.text().await.unwrap(),
        fingerprint,
        "a cross-site link started a new identity"
    );
    wait_for(&browser, "#files tbody tr", Duration::from_secs(10)).await;

    // Delete it with its button (the confirmation is accepted).
    let delete = browser
        .find(By::Css("#files tbody tr button.danger"))
        .await
        .unwrap();
    delete.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser
        .find_all(By::Css("#files tbody tr"))
        .await
        .unwrap()
        .is_empty()
    {
        // Only fails when no confirmation is open (the capability may have accepted it).
        let _ = browser.accept_alert().await;
        assert!(Instant::now() < deadline, "the file was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!env.stored(&identity, name).exists());
    browser.quit().await.unwrap();
    drop(driver);
    env.stop().await;
}
