//! The page's files, compiled into the binary, and the rendering of the page for a session.

use crate::http::escape_html;

/// The page template (`{{key}}` placeholders, filled with HTML-escaped values).
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The page's script.
pub(crate) const APP_JS: &str = include_str!("../assets/app.js");
/// The page's style sheet.
pub(crate) const STYLE_CSS: &str = include_str!("../assets/style.css");
/// tus-js-client 4.3.1 (MIT), the browser build from npm, unmodified: the page's tus client.
pub(crate) const TUS_JS: &str = include_str!("../assets/vendor/tus.min.js");
/// tus-js-client's licence, served beside it.
pub(crate) const TUS_LICENSE: &str = include_str!("../assets/vendor/tus-js-client.LICENSE");
/// The icon.
pub(crate) const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// The page that reloads itself (see `routes::bounce`).
pub(crate) const BOUNCE_HTML: &str = "<!doctype html>\n<html lang=\"en\"><head>\
    <meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url=/\">\
    <title>Ferry</title></head><body><p><a href=\"/\">Continue to Ferry</a></p></body></html>\n";

/// Fills the template: every value is HTML-escaped; unknown placeholders stay as they are.
// Kept by hand: a template crate (minijinja, tinytemplate) brings a template language, its
// own escaper and value model for six fixed substitutions into one compiled-in page.
pub(crate) fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                match values.iter().find(|(k, _)| *k == key) {
                    Some((_, value)) => out.push_str(&escape_html(value)),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A page asking for the access token.
pub(crate) fn token_page(wrong: bool) -> String {
    let message = if wrong {
        "<p role=\"alert\">That access token is not valid.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Ferry: access token</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
         <body><main><h1>Ferry</h1>{message}<p>This page needs the access token its operator \
         gave you (or the link that contains it).</p>\
         <form method=\"get\" action=\"/\"><p><label for=\"token\">Access token</label> \
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required> \
         <button type=\"submit\">Open</button></p></form></main></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_escaped_values() {
        assert_eq!(
            render("a{{x}}b{{y}}c{{z}}", &[("x", "<1>"), ("y", "\"")]),
            "a&lt;1&gt;b&quot;c{{z}}"
        );
        assert_eq!(render("{{open", &[]), "{{open");
    }

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_event_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            letters > 0 && rest[letters..].starts_with('=')
        })
    }

    #[test]
    fn the_page_has_no_inline_script_or_external_resources() {
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert!(!lower.contains("<script>"), "inline script");
        assert!(!has_event_attribute(&lower), "inline event handler");
        assert!(!lower.contains("style="), "inline style");
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        assert!(!APP_JS.contains("innerHTML"), "markup built from strings");
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"));
        assert!(!STYLE_CSS.contains("url("), "external resource in CSS");
    }
}
