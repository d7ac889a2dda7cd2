//! Input validation: client names, CA names and subject alternative names.

use crate::error::{CertError, Result};
use std::net::IpAddr;

/// Longest client name accepted (it becomes a file name and the certificate's common name).
pub const MAX_NAME_LEN: usize = 64;

/// Checks that `name` is a safe client identifier: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`,
/// with no `..` anywhere, so it can be used as a file name under `clients/` and as a
/// certificate common name.
pub fn validate_client_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(CertError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return refuse("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return refuse("it is longer than 64 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return refuse("it must start with an ASCII letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return refuse("it contains a character other than ASCII letters, digits, '.', '_' or '-'");
    }
    if name.contains("..") {
        return refuse("it contains \"..\"");
    }
    Ok(())
}

/// Checks a CA common name: not empty, at most 64 characters, no control characters.
pub(crate) fn validate_ca_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(CertError::InvalidCaName {
            name: name.to_string(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return refuse("it is empty");
    }
    if name.chars().count() > 64 {
        return refuse("it is longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    Ok(())
}

/// A validated subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

/// Parses a subject alternative name: an IP address or a DNS name (RFC 1035 syntax,
/// wildcard first label allowed).
pub(crate) fn parse_san(san: &str) -> Result<San> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    let refuse = || {
        Err(CertError::InvalidSan {
            san: san.to_string(),
        })
    };
    let host = san.strip_suffix('.').unwrap_or(san);
    if host.is_empty() || host.len() > 253 {
        return refuse();
    }
    for (i, label) in host.split('.').enumerate() {
        if i == 0 && label == "*" {
            continue;
        }
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return refuse();
        }
    }
    // A DNS name that parses as digits and dots only would be confused with an IP address.
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return refuse();
    }
    Ok(San::Dns(host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_names() {
        for n in [
            "local",
            "a",
            "phone-1",
            "Laptop_2.home",
            "0",
            &"x".repeat(64),
        ] {
            validate_client_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for n in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "_x",
            "a/b",
            "a\\b",
            "a..b",
            "a b",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            let err = validate_client_name(n).expect_err(n);
            assert!(err.to_string().contains("invalid client name"), "{err}");
        }
    }

    #[test]
    fn sans() {
        assert_eq!(parse_san("::1").unwrap(), San::Ip("::1".parse().unwrap()));
        assert_eq!(
            parse_san("127.0.0.1").unwrap(),
            San::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_san("Ferry.Local").unwrap(),
            San::Dns("ferry.local".into())
        );
        assert_eq!(parse_san("*.lan").unwrap(), San::Dns("*.lan".into()));
        for bad in ["", "a b", "-a.b", "a..b", "1.2.3", "a/b", "x*.y"] {
            assert!(parse_san(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_names() {
        validate_ca_name("Ferry CA").unwrap();
        assert!(validate_ca_name(" ").is_err());
        assert!(validate_ca_name(&"c".repeat(65)).is_err());
        assert!(validate_ca_name("a\nb").is_err());
    }
}
