//! Small HTTP helpers: cookies, escaping, content disposition, JSON errors and the headers
//! every response carries.

use cookie::{Cookie, SameSite};
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// The Content-Security-Policy of every response: only this origin's own files, no inline
/// script or style, no framing.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// The value of cookie `name` in the request's `Cookie` headers (surrounding double quotes
/// removed).
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/ (and Secure over HTTPS).
pub(crate) fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    Cookie::build((name, value))
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .to_string()
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `Content-Disposition: attachment` value for a file name of any characters: an ASCII
/// fallback in `filename` and the exact name, percent-encoded UTF-8, in `filename*`
/// (RFC 6266, RFC 8187).
pub(crate) fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// A JSON error `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// `response` with `Retry-After` set to `wait`, in whole seconds (at least 1).
pub(crate) fn retry_after(mut response: Response, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// A JSON reply with status 200.
pub(crate) fn json_ok(value: &impl serde::Serialize) -> Response {
    warp::reply::json(value).into_response()
}

/// Adds the security headers every response carries (and `no-store` unless the response
/// set its own caching).
pub(crate) fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_session=abc; b=\"2\""),
        );
        assert_eq!(cookie(&headers, "ferry_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let secure = Cookie::parse(set_cookie("n", "v", 5, true)).unwrap();
        assert_eq!((secure.name(), secure.value()), ("n", "v"));
        assert_eq!(secure.path(), Some("/"));
        assert_eq!(secure.max_age(), Some(cookie::time::Duration::seconds(5)));
        assert_eq!(secure.http_only(), Some(true));
        assert_eq!(secure.same_site(), Some(SameSite::Strict));
        assert_eq!(secure.secure(), Some(true));
        let plain = set_cookie("n", "v", 5, false);
        assert!(plain.contains("HttpOnly; SameSite=Strict"), "{plain}");
        assert!(!plain.contains("Secure"), "{plain}");
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            attachment("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            attachment("é\"\\\r.txt"),
            "attachment; filename=\"____.txt\"; filename*=UTF-8''%C3%A9%22%5C%0D.txt"
        );
    }
}
