//! HTTP-level tests of the page against a real Ferry server, both in process: uploads
//! (multipart, streamed), listing, downloads, deletes, isolation between sessions, CSRF,
//! limits, the access token, the certificate bundle and HTTPS.

mod support;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use support::{http_client, new_session, pseudo_random, set_cookie_value, Browser, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_download_delete() {
    let env = Env::start().await;
    let browser = Browser::open(&env).await;
    assert!(browser.identity.starts_with("web-"), "{}", browser.identity);
    assert_eq!(browser.fingerprint.len(), 64);

    // Larger than warp's default 2 MiB form limit, and not a multiple of the chunk size.
    let big = pseudo_random(3 * 1024 * 1024 + 12_345, 1);
    let (status, report) = browser.upload("big file.bin", &big).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["name"], "big file.bin");
    assert_eq!(report["size"], big.len() as u64);
    assert_eq!(report["verified"], true);
    let digest = report["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);
    let stored = std::fs::read(env.stored(&browser.identity, "big file.bin")).unwrap();
    assert!(stored == big, "the server holds other bytes");

    let odd = "naïve & 'quoted' (1).txt";
    let (status, report) = browser.upload(odd, b"hello").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (status, report) = browser.upload("empty", b"").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["size"], 0);

    let files = browser.list().await;
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["big file.bin", "empty", odd]);
    assert_eq!(files[0]["size"], big.len() as u64);
    assert_eq!(files[0]["digest"], digest.as_str());
    assert!(files[0]["modified"].as_u64().unwrap() > 1_600_000_000);

    let response = browser.download("big file.bin").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    assert_eq!(headers["x-ferry-digest"], digest.as_str());
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("filename*=UTF-8''big%20file.bin"));
    let body = response.bytes().await.unwrap();
    assert!(body[..] == big[..], "downloaded bytes differ");
    let response = browser.download(odd).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], b"hello");
    let response = browser.download("empty").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    // Nothing of the downloads stays in the staging directory.
    let staged = std::fs::read_dir(env.dir.path().join("scratch"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "download staging left files behind");

    let response = browser.delete("big file.bin").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!env.stored(&browser.identity, "big file.bin").exists());
    let names: Vec<String> = browser
        .list()
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["empty", odd]);
    let response = browser.download("big file.bin").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = browser.delete("big file.bin").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_isolated_identities() {
    let env = Env::start().await;
    let alice = Browser::open(&env).await;
    let bob = Browser::open(&env).await;
    assert_ne!(alice.fingerprint, bob.fingerprint);
    assert_ne!(alice.csrf, bob.csrf);
    let (status, _) = alice.upload("secret.txt", b"alice's").await;
    assert_eq!(status, StatusCode::OK);
    assert!(bob.list().await.is_empty());
    assert_eq!(
        bob.download("secret.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.delete("secret.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    // Bob's own file of the same name is another file.
    let (status, _) = bob.upload("secret.txt", b"bob's").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::fs::read(env.stored(&alice.identity, "secret.txt")).unwrap(),
        b"alice's"
    );
    assert_eq!(
        std::fs::read(env.stored(&bob.identity, "secret.txt")).unwrap(),
        b"bob's"
    );
    // Bob's CSRF token does not work with Alice's cookie.
    let mut headers = alice.headers(true);
    headers.insert("x-csrf-token", HeaderValue::from_str(&bob.csrf).unwrap());
    assert_eq!(
        alice.delete_with("secret.txt", headers).await.status(),
        StatusCode::FORBIDDEN
    );
    // No cookie, or an unknown one: no session.
    let mut stranger = alice.headers(false);
    stranger.insert(
        "cookie",
        HeaderValue::from_static(
            "ferry_session=0000000000000000000000000000000000000000000000000000000000000000",
        ),
    );
    let response = http_client()
        .get(format!("{}/api/files", env.base()))
        .headers(stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = http_client()
        .get(alice.file_url("secret.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_requests_need_the_csrf_token_and_the_same_origin() {
    let env = Env::start().await;
    let browser = Browser::open(&env).await;
    let (status, _) = browser.upload("keep.txt", b"keep").await;
    assert_eq!(status, StatusCode::OK);

    let mut cases: Vec<(&str, HeaderMap)> = Vec::new();
    let mut no_token = browser.headers(true);
    no_token.remove("x-csrf-token");
    cases.push(("no token", no_token));
    let mut wrong = browser.headers(true);
    wrong.insert("x-csrf-token", HeaderValue::from_static("0123"));
    cases.push(("wrong token", wrong));
    let mut cross_origin = browser.headers(true);
    cross_origin.insert("origin", HeaderValue::from_static("http://evil.example"));
    cases.push(("cross-site Origin", cross_origin));
    let mut null_origin = browser.headers(true);
    null_origin.insert("origin", HeaderValue::from_static("null"));
    cases.push(("null Origin", null_origin));
    let mut cross_site = browser.headers(true);
    cross_site.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    cases.push(("Sec-Fetch-Site: cross-site", cross_site));
    let mut same_site = browser.headers(true);
    same_site.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
    cases.push(("Sec-Fetch-Site: same-site", same_site));

    for (what, headers) in cases {
        let response = browser
            .post_form(
                headers.clone(),
                Browser::form(4, "evil.txt", b"evil".to_vec()),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "upload, {what}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("refused"),
            "{body}"
        );
        let response = browser.delete_with("keep.txt", headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "delete, {what}");
    }
    assert_eq!(env.stored_names(&browser.identity), ["keep.txt"]);
    // A plain form POST without the header (what a cross-site form can send) is refused too.
    let response = http_client()
        .post(format!("{}/api/upload", env.base()))
        .header("cookie", &browser.cookie)
        .multipart(Browser::form(4, "evil.txt", b"evil".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(env.stored_names(&browser.identity), ["keep.txt"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limits_and_sizes_are_enforced() {
    let env = Env::start_with(|options| options.max_upload_bytes = 1024 * 1024).await;
    let browser = Browser::open(&env).await;
    let limit = 1024 * 1024;

    // Exactly the limit is fine.
    let data = pseudo_random(limit, 2);
    let (status, report) = browser.upload("at-limit.bin", &data).await;
    assert_eq!(status, StatusCode::OK, "{report}");

    // A declared size over the limit: refused before any data moves.
    let form = Browser::form(limit as u64 + 1, "over.bin", vec![0; 10]);
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A body over the limit (whatever it declares): refused by its Content-Length before it
    // is read, so the client may see the connection close before it reads the answer.
    // A client of its own: the connection it may see reset never returns to the shared pool,
    // where the next request would pick it up and fail with an incomplete message.
    let form = Browser::form(10, "huge.bin", vec![0; limit + 100 * 1024]);
    let sent = support::http_client()
        .post(format!("{}/api/upload", browser.base))
        .headers(browser.headers(true))
        .multipart(form)
        .send()
        .await;
    if let Ok(response) = sent {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    // More bytes than declared, and fewer: refused, nothing committed.
    let form = Browser::form(100, "longer.bin", vec![7; 5000]);
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("size"), "{body}");
    let form = Browser::form(200_000, "shorter.bin", vec![7; 100_000]);
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The size must come first, be a number, and the form must hold a file.
    let form = Form::new()
        .part("file", Part::bytes(vec![1, 2, 3]).file_name("a"))
        .text("size", "3");
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let form = Form::new()
        .text("size", "three")
        .part("file", Part::bytes(vec![1, 2, 3]).file_name("a"));
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let form = Form::new().text("size", "3");
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Names the server refuses come back as 400 with its reason.
    let (status, body) = browser.upload("..", b"x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = browser.upload("a<b>.txt", b"x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A separate name field wins over the part's file name.
    let form = Form::new()
        .text("size", "2")
        .text("name", "renamed.txt")
        .part(
            "file",
            Part::bytes(b"hi".to_vec()).file_name("original.txt"),
        );
    let response = browser.post_form(browser.headers(true), form).await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        env.stored_names(&browser.identity),
        ["at-limit.bin", "renamed.txt"]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_locked_down() {
    let env = Env::start().await;
    let client = http_client();
    let response = client.get(format!("{}/", env.base())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(set_cookie_value(&response, "ferry_session").is_none());
    let page = response.text().await.unwrap();
    let made = new_session(&client, &env.base(), &HeaderMap::new()).await;
    assert_eq!(made.status(), StatusCode::OK);
    let (_, cookie) = set_cookie_value(&made, "ferry_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(page.contains("id=\"file-input\""));
    assert!(page.contains("aria-live=\"polite\""));
    assert!(!page.contains("{{"), "unfilled placeholder");

    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let response = client
            .get(format!("{}{path}", env.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let response = client
        .get(format!("{}/nope", env.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A cross-site navigation arrives without the SameSite=Strict cookie: the page reloads
    // itself from its own origin rather than starting a new identity.
    let response = client
        .get(format!("{}/", env.base()))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie_value(&response, "ferry_session").is_none());
    assert_eq!(response.headers()["refresh"], "0; url=/");
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("http-equiv=\"refresh\""));

    // DNS rebinding: another host name is refused without an access token.
    let response = client
        .get(format!("{}/", env.base()))
        .header("host", "evil.example:5000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let response = client
        .get(format!("{}/", env.base()))
        .header("host", format!("localhost:{}", env.web_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_an_access_token() {
    let dir = support::fresh_ca();
    let options = ferry_web::WebOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        certs_dir: dir.path().to_path_buf(),
        ..ferry_web::WebOptions::default()
    };
    let error = ferry_web::WebServer::bind(options.clone())
        .await
        .expect_err("started without a token");
    assert!(matches!(error, ferry_web::WebError::TokenRequired { .. }));
    assert!(error.to_string().contains("access token"), "{error}");
    let error = ferry_web::WebServer::bind(ferry_web::WebOptions {
        access_token: Some("  ".into()),
        ..options.clone()
    })
    .await
    .expect_err("started with an empty token");
    assert!(
        matches!(error, ferry_web::WebError::TokenTooShort { len: 0, .. }),
        "{error}"
    );
    let web = ferry_web::WebServer::bind(ferry_web::WebOptions {
        access_token: Some("a-long-enough-token-1234".into()),
        ..options
    })
    .await
    .expect("starts with a token");
    assert!(!web.local_addr().ip().is_loopback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_admits_browsers_and_scripts() {
    let token = "correct-horse-battery-staple";
    let env = Env::start_with(|options| options.access_token = Some(token.into())).await;
    let client = http_client();
    let base = env.base();

    // Nothing without the token (but the style sheet of the token form).
    let response = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("Access token"));
    let response = client
        .get(format!("{base}/api/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(format!("{base}/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .get(format!("{base}/?token=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie_value(&response, "ferry_access").is_none());

    // A cross-site navigation without the (SameSite=Strict) access cookie is bounced through
    // a same-origin reload instead of being asked for the token.
    let response = client
        .get(format!("{base}/"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["refresh"], "0; url=/");

    // A browser opens /?token= once: a cookie, and a redirect that drops the token.
    let response = client
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let (access, attributes) = set_cookie_value(&response, "ferry_access").unwrap();
    assert!(!access.contains(token), "the cookie holds the token itself");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"));
    let mut extra = HeaderMap::new();
    extra.insert(
        "cookie",
        HeaderValue::from_str(&format!("ferry_access={access}")).unwrap(),
    );
    let browser = Browser::open_with(base.clone(), client.clone(), extra).await;
    // Browser::headers replaces the Cookie header: carry both cookies.
    let browser = Browser {
        cookie: format!("{}; ferry_access={access}", browser.cookie),
        ..browser
    };
    let (status, body) = browser.upload("via-cookie.txt", b"1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A script sends the token as a bearer token.
    let mut bearer = HeaderMap::new();
    bearer.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let script = Browser::open_with(base.clone(), client.clone(), bearer).await;
    let (status, body) = script.upload("via-bearer.txt", b"2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = client
        .get(format!("{base}/api/files"))
        .header("authorization", "Bearer nope")
        .header("cookie", &script.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // With a token, host names are allowed (the token is the guard).
    let response = client
        .get(format!("{base}/style.css"))
        .header("host", "files.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_bundle_is_the_same_identity_for_the_command_line() {
    let env = Env::start().await;
    let browser = Browser::open(&env).await;
    let (status, _) = browser.upload("from-the-web.txt", b"web").await;
    assert_eq!(status, StatusCode::OK);

    let response = browser.get("/identity/bundle.pem").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("{}.bundle.pem", browser.identity)));
    let bundle = response.text().await.unwrap();
    assert!(bundle.contains("PRIVATE KEY"));
    let path = env.dir.path().join("me.bundle.pem");
    std::fs::write(&path, &bundle).unwrap();
    let options =
        ferry_tokio::client::ClientOptions::from_bundle(&env.server_addr.to_string(), &path)
            .unwrap();
    let mut client = ferry_tokio::client::Client::connect(options).await.unwrap();
    let names: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["from-the-web.txt"]);
    client.close().await;

    // The separate files work as the `ferry` command line's --ca, --cert, --key.
    for (file, name) in [("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem")] {
        let response = browser.get(&format!("/identity/{name}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        std::fs::write(env.dir.path().join(file), response.bytes().await.unwrap()).unwrap();
    }
    let options = ferry_tokio::client::ClientOptions::from_files(
        &env.server_addr.to_string(),
        &env.dir.path().join("ca"),
        &env.dir.path().join("cert"),
        &env.dir.path().join("key"),
    )
    .unwrap();
    let mut client = ferry_tokio::client::Client::connect(options).await.unwrap();
    assert_eq!(client.list().await.unwrap().len(), 1);
    client.close().await;
    // The certificate is recorded in the CA's index (listable, revocable).
    let listed = ferry_certs::CertDir::new(&env.certs).list().unwrap();
    assert!(listed.iter().any(|e| e.name == browser.identity));
    // Another session cannot fetch it.
    let response = http_client()
        .get(format!("{}/identity/key.pem", env.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_over_https_when_given_a_certificate() {
    // The Ferry server's own certificate (SANs localhost, 127.0.0.1) serves the page too.
    let env = Env::start_with(|options| {
        options.tls_cert = Some(options.certs_dir.join("server.crt"));
        options.tls_key = Some(options.certs_dir.join("server.key"));
    })
    .await;
    assert!(env.base().starts_with("https://"));
    let ca = std::fs::read(env.certs.join("ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = new_session(&client, &env.base(), &HeaderMap::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, cookie) = set_cookie_value(&response, "ferry_session").unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    let browser = Browser::open_with(env.base(), client, HeaderMap::new()).await;
    let (status, body) = browser.upload("over-https.txt", b"tls").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.stop().await;
}
