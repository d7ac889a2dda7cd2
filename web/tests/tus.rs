//! The tus endpoint at the HTTP level, against a real Ferry server: an upload sent in pieces
//! that resumes across restarts of the page and of the server without re-sending what the
//! server held, the bytes received counted by the page; a tus client no one here wrote
//! (tuspy) uploading and resuming; and bad input refused with nothing stored.

mod support;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use support::{pseudo_random, Browser, Env};

fn tus_headers(browser: &Browser) -> HeaderMap {
    let mut headers = browser.headers(true);
    headers.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
    headers
}

fn metadata(name: &str) -> String {
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    )
}

async fn create(browser: &Browser, headers: HeaderMap, size: u64, name: &str) -> Response {
    browser
        .http
        .post(format!("{}/api/tus/", browser.base))
        .headers(headers)
        .header("upload-length", size.to_string())
        .header("upload-metadata", metadata(name))
        .send()
        .await
        .unwrap()
}

async fn head(browser: &Browser, headers: HeaderMap, url: &str) -> Response {
    browser
        .http
        .head(format!("{}{url}", browser.base))
        .headers(headers)
        .send()
        .await
        .unwrap()
}

async fn patch(
    browser: &Browser,
    headers: HeaderMap,
    url: &str,
    offset: u64,
    body: Vec<u8>,
) -> Response {
    browser
        .http
        .patch(format!("{}{url}", browser.base))
        .headers(headers)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
}

fn offset_of(response: &Response) -> u64 {
    response.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn bytes_received(browser: &Browser) -> u64 {
    let text = browser.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ferry_web_tus_bytes_received_total "))
        .expect("the counter")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tus_upload_in_pieces_resumes_across_restarts() {
    let mut env = Env::start().await;
    let browser = Browser::open(&env).await;
    let data = pseudo_random(5 * 1024 * 1024 + 4321, 7);
    let size = data.len() as u64;

    let response = browser
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/tus/", browser.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let h = response.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-extension"], "creation,termination");
    assert!(h["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > size);

    let response = create(&browser, tus_headers(&browser), size, "pieces é.bin").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    let url = response.headers()["location"].to_str().unwrap().to_string();
    assert!(url.starts_with("/api/tus/"), "{url}");
    let response = head(&browser, tus_headers(&browser), &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(offset_of(&response), 0);
    assert_eq!(
        response.headers()["upload-length"],
        size.to_string().as_str()
    );

    // A first piece that ends mid-chunk: the offset is what the server holds (whole chunks).
    let first = 2 * 1024 * 1024 + 100;
    let response = patch(
        &browser,
        tus_headers(&browser),
        &url,
        0,
        data[..first].to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let held = offset_of(&response);
    assert!(held > 0 && held <= first as u64, "held {held}");

    // Restart the page, then the server: the offset stands.
    env.restart_web().await;
    let response = head(&browser, tus_headers(&browser), &url).await;
    assert_eq!(offset_of(&response), held, "after a page restart");
    env.restart_server().await;
    let response = head(&browser, tus_headers(&browser), &url).await;
    assert_eq!(offset_of(&response), held, "after a server restart");

    // An offset that is not where the upload stands: 409, nothing read or stored.
    let before = bytes_received(&browser).await;
    for wrong in [held + 1, held.saturating_sub(1), 0] {
        let body = data[wrong as usize..].to_vec();
        let response = patch(&browser, tus_headers(&browser), &url, wrong, body).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "offset {wrong}");
    }
    assert!(env.stored_names(&browser.identity).is_empty());
    let wasted = bytes_received(&browser).await - before;

    // The rest, from the held offset.
    let before = bytes_received(&browser).await;
    let response = patch(
        &browser,
        tus_headers(&browser),
        &url,
        held,
        data[held as usize..].to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&response), size);
    let digest = response.headers()["x-ferry-digest"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(digest.len(), 64);
    let rest = bytes_received(&browser).await - before;
    assert_eq!(
        rest,
        size - held,
        "only what the server lacked was received"
    );
    println!(
        "tus resume: {size} bytes; first piece {first} bytes, server held {held}; resumed with {rest} bytes; \
         {wasted} bytes of refused pieces read while refusing"
    );
    let stored = std::fs::read(env.stored(&browser.identity, "pieces é.bin")).unwrap();
    assert!(stored == data, "the server holds other bytes");
    let files = browser.list().await;
    assert_eq!(files[0]["digest"], digest.as_str());

    // Done: HEAD says so, and a repeated last PATCH is harmless.
    let response = head(&browser, tus_headers(&browser), &url).await;
    assert_eq!(offset_of(&response), size);
    let response = patch(&browser, tus_headers(&browser), &url, size, Vec::new()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // An empty file is stored at creation (tus clients send no PATCH for it).
    let response = create(&browser, tus_headers(&browser), 0, "empty").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        std::fs::read(env.stored(&browser.identity, "empty")).unwrap(),
        b""
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tus_requests_are_refused_and_store_nothing() {
    let env = Env::start_with(|o| o.max_upload_bytes = 1024 * 1024).await;
    let alice = Browser::open(&env).await;
    let bob = Browser::open(&env).await;
    let response = create(&alice, tus_headers(&alice), 1000, "a.bin").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = response.headers()["location"].to_str().unwrap().to_string();

    // CSRF: missing or wrong token, on every method.
    let mut missing = tus_headers(&alice);
    missing.remove("x-csrf-token");
    let mut wrong = tus_headers(&alice);
    wrong.insert("x-csrf-token", HeaderValue::from_static("0123"));
    for (what, headers) in [("missing", missing), ("wrong", wrong)] {
        let status = create(&alice, headers.clone(), 10, "x").await.status();
        assert_eq!(status, StatusCode::FORBIDDEN, "create, {what} token");
        let status = head(&alice, headers.clone(), &url).await.status();
        assert_eq!(status, StatusCode::FORBIDDEN, "head, {what} token");
        let status = patch(&alice, headers.clone(), &url, 0, vec![1; 1000])
            .await
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN, "patch, {what} token");
        let status = alice
            .http
            .delete(format!("{}{url}", alice.base))
            .headers(headers)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN, "delete, {what} token");
    }
    // No Tus-Resumable: 412.
    let status = create(&alice, alice.headers(true), 10, "x").await.status();
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    // Another identity's upload URL does not exist for it.
    assert_eq!(
        head(&bob, tus_headers(&bob), &url).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = patch(&bob, tus_headers(&bob), &url, 0, vec![2; 1000]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = bob
        .http
        .delete(format!("{}{url}", bob.base))
        .headers(tus_headers(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Lengths: over the limit at creation, a body past the declared length (announced, or
    // only found out while streaming), no length at all.
    let status = create(&alice, tus_headers(&alice), 1024 * 1024 + 1, "big")
        .await
        .status();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let response = patch(&alice, tus_headers(&alice), &url, 0, vec![3; 1001]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![4; 600]), Ok(vec![4; 600])];
    let response = alice
        .http
        .patch(format!("{}{url}", alice.base))
        .headers(tus_headers(&alice))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = alice
        .http
        .post(format!("{}/api/tus/", alice.base))
        .headers(tus_headers(&alice))
        .header("upload-metadata", metadata("n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Not a tus body, no offset, a name that is not base64.
    let response = alice
        .http
        .patch(format!("{}{url}", alice.base))
        .headers(tus_headers(&alice))
        .header("upload-offset", "0")
        .body(vec![5; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = alice
        .http
        .patch(format!("{}{url}", alice.base))
        .headers(tus_headers(&alice))
        .header("content-type", "application/offset+octet-stream")
        .body(vec![5; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = alice
        .http
        .post(format!("{}/api/tus/", alice.base))
        .headers(tus_headers(&alice))
        .header("upload-length", "10")
        .header("upload-metadata", "filename !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Huge headers: refused before any handler runs.
    let response = alice
        .http
        .post(format!("{}/api/tus/", alice.base))
        .headers(tus_headers(&alice))
        .header("upload-length", "10")
        .header("x-padding", "a".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{}",
        response.text().await.unwrap()
    );
    let status = alice
        .http
        .post(format!("{}/api/tus/", alice.base))
        .headers(tus_headers(&alice))
        .header("upload-length", "10")
        .header(
            "upload-metadata",
            format!("filename {}", "QUFB".repeat(2000)),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::BAD_REQUEST, "oversized metadata");

    assert!(
        env.stored_names(&alice.identity).is_empty(),
        "something was stored"
    );
    assert!(
        env.stored_names(&bob.identity).is_empty(),
        "something was stored"
    );

    // Termination: the upload is gone.
    let response = alice
        .http
        .delete(format!("{}{url}", alice.base))
        .headers(tus_headers(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        head(&alice, tus_headers(&alice), &url).await.status(),
        StatusCode::NOT_FOUND
    );
    env.stop().await;
}

/// tuspy (the Python tus client, `pip install tuspy`; .ci/test-deps installs it) uploads
/// part of a file, stops, and a second uploader resumes it from the page's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_and_resumes() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import tusclient"])
        .status()
        .expect("python3 runs");
    assert!(
        check.success(),
        "tuspy is missing: pip install tuspy (.ci/test-deps installs it)"
    );
    let env = Env::start().await;
    let browser = Browser::open(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from tuspy.bin");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 9);
    std::fs::write(&path, &data).unwrap();
    let script = r#"
import sys
from tusclient import client
base, cookie, csrf, path = sys.argv[1:5]
headers = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": base}
tus = client.TusClient(base + "/api/tus/", headers=headers)
first = tus.uploader(path, chunk_size=1024 * 1024, metadata={"filename": "from tuspy.bin"})
first.upload_chunk()
first.upload_chunk()
print("stopped at", first.offset, flush=True)
second = tus.uploader(path, chunk_size=1024 * 1024, url=first.url)
print("resumed at", second.offset, flush=True)
second.upload()
print("done at", second.offset, flush=True)
"#;
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&browser.base)
        .arg(&browser.cookie)
        .arg(&browser.csrf)
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tuspy failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    let resumed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("resumed at "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(resumed > 0, "tuspy started over:\n{stdout}");
    let stored = std::fs::read(env.stored(&browser.identity, "from tuspy.bin")).unwrap();
    assert!(stored == data, "the server holds other bytes");
    env.stop().await;
}
