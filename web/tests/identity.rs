//! Identities of the page: nothing issued before an action needs it, `/healthz` without side
//! effects, sessions that outlive restarts of the page and of the Ferry server, a kept bundle
//! brought back on another browser, and unused identities pruned.

mod support;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use support::{http_client, new_session, set_cookie_value, Browser, Env};

fn index_len(env: &Env) -> usize {
    ferry_certs::CertDir::new(&env.certs).list().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_and_health_checks_issue_nothing() {
    let env = Env::start_with(|o| o.access_token = Some("a-long-enough-access-token".into())).await;
    let http = http_client();
    let before = index_len(&env);
    for _ in 0..5 {
        // Health checks need no token and change nothing.
        let response = http
            .get(format!("{}/healthz", env.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("set-cookie").is_none());
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        let response = http
            .get(format!("{}/", env.base()))
            .bearer_auth("a-long-enough-access-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(set_cookie_value(&response, "ferry_session").is_none());
    }
    assert_eq!(index_len(&env), before, "a visit issued a certificate");

    // Making a session needs the same origin and X-CSRF-Token: new.
    let mut auth = HeaderMap::new();
    auth.insert(
        "authorization",
        HeaderValue::from_static("Bearer a-long-enough-access-token"),
    );
    let response = http
        .post(format!("{}/api/session", env.base()))
        .headers(auth.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http
        .post(format!("{}/api/session", env.base()))
        .headers(auth.clone())
        .header("x-csrf-token", "new")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(index_len(&env), before);

    let browser = Browser::open_with(env.base(), http_client(), auth.clone()).await;
    assert_eq!(index_len(&env), before + 1);
    // Asking again with the cookie returns the same session, and issues nothing.
    let mut again = auth.clone();
    again.insert("cookie", HeaderValue::from_str(&browser.cookie).unwrap());
    let response = new_session(&http, &env.base(), &again).await;
    assert_eq!(response.status(), StatusCode::OK);
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["fingerprint"], browser.fingerprint.as_str());
    assert_eq!(info["csrf"], browser.csrf.as_str());
    assert_eq!(index_len(&env), before + 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_restarts_of_the_page_and_the_server() {
    let mut env = Env::start().await;
    let browser = Browser::open(&env).await;
    let (status, body) = browser.upload("kept.txt", b"still here").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    env.restart_web().await;
    env.restart_server().await;
    let names: Vec<String> = browser
        .list()
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["kept.txt"]);
    // The same CSRF token still works, and the page shows the same identity.
    let (status, body) = browser.upload("after.txt", b"restarts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = browser.get("/").await.text().await.unwrap();
    assert!(page.contains(&browser.fingerprint));
    assert!(page.contains(&browser.csrf));

    // The records are private.
    use std::os::unix::fs::PermissionsExt;
    let sessions = env.options.state_dir().join("sessions");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sessions), 0o700);
    for entry in std::fs::read_dir(&sessions).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(browser.cookie.trim_start_matches("ferry_session=")));
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_bundle_brings_the_identity_to_another_browser() {
    let env = Env::start().await;
    let first = Browser::open(&env).await;
    let (status, _) = first.upload("mine.txt", b"mine").await;
    assert_eq!(status, StatusCode::OK);
    let bundle = first
        .get("/identity/bundle.pem")
        .await
        .text()
        .await
        .unwrap();

    let http = http_client();
    let import = |body: String| {
        let http = http.clone();
        let base = env.base();
        async move {
            http.post(format!("{base}/api/identity"))
                .header("x-csrf-token", "new")
                .header("origin", base.as_str())
                .header("sec-fetch-site", "same-origin")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let response = import(bundle.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (cookie, _) = set_cookie_value(&response, "ferry_session").unwrap();
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["fingerprint"], first.fingerprint.as_str());
    let second = Browser {
        cookie: format!("ferry_session={cookie}"),
        csrf: info["csrf"].as_str().unwrap().to_string(),
        identity: info["identity"].as_str().unwrap().to_string(),
        fingerprint: info["fingerprint"].as_str().unwrap().to_string(),
        http: http_client(),
        base: env.base(),
        extra: HeaderMap::new(),
    };
    assert_eq!(second.list().await.len(), 1);

    // Not PEM, or without the key: refused, no session.
    let response = import("hello".into()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie_value(&response, "ferry_session").is_none());
    let cert_only: String = bundle
        .split_inclusive('\n')
        .take_while(|l| !l.contains("PRIVATE KEY"))
        .collect();
    assert_eq!(import(cert_only).await.status(), StatusCode::BAD_REQUEST);
    // Revoked: refused.
    ferry_certs::CertDir::new(&env.certs)
        .revoke(&first.identity)
        .unwrap();
    assert_eq!(import(bundle).await.status(), StatusCode::BAD_REQUEST);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_that_never_stored_a_file_are_pruned() {
    let env = Env::start_with(|o| o.prune_unused = Duration::from_millis(300)).await;
    let idle = Browser::open(&env).await;
    let busy = Browser::open(&env).await;
    let (status, _) = busy.upload("a.txt", b"a").await;
    assert_eq!(status, StatusCode::OK);
    let revoked = |name: &str| {
        ferry_certs::CertDir::new(&env.certs)
            .list()
            .unwrap()
            .iter()
            .any(|e| e.name == name && e.is_revoked())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !revoked(&idle.identity) {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!revoked(&busy.identity));
    let response = idle.get("/api/files").await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "session forgotten"
    );
    assert_eq!(busy.list().await.len(), 1);
    env.stop().await;
}
