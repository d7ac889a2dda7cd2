//! File name validation: every name a client sends passes [`validate_name`] before it
//! touches a path.
//!
//! A file name is a path of one or more components separated by `/` (`photos/2024/a.jpg`),
//! stored as `STORAGE/<identity>/files/<name>`; folders are implied by the files below them,
//! as object-store keys are. The whole path:
//!
//! | rule | why |
//! |---|---|
//! | Unicode NFC; the normalised form is the stored name | `é` typed as one code point or as `e` + accent names one file |
//! | at most 1024 bytes of UTF-8 (after normalisation) and at most 64 components | the wire limit; bounds the depth of directories a client can make |
//! | no empty component: no leading `/` (absolute), no trailing `/`, no `//` | one spelling per name, never a path outside the client's directory |
//!
//! Each component keeps it one name on every file system a client might copy it to, and
//! keeps it unambiguous to a person reading it:
//!
//! | rule | why |
//! |---|---|
//! | 1 to 255 bytes of UTF-8 (after normalisation) | a Linux file name is at most 255 bytes |
//! | not `.` or `..` | they name directories (`a/../../x` would climb out) |
//! | no `\` | the Windows separator (`/` separates components) |
//! | no look-alike separators: U+2044, U+2215, U+2216, U+29F8, U+29F9, U+FE68, U+FF0F, U+FF3C, U+2571, U+2572, U+29F5 | Windows' "best fit" code page mapping turns some into `/` or `\`, and a person reads them as a path |
//! | no look-alike dots: U+2024, U+2025, U+FE52, U+FF0E | `‥` or `．．` reads as `..` |
//! | none of `< > : " \| ? *` | not allowed by Windows; `:` also opens NTFS alternate data streams |
//! | no control characters (C0 including NUL, U+007F, C1), no U+2028/U+2029, no U+FEFF, no bidirectional controls (U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069), no invisible characters (U+00AD, U+200B–U+200D, U+2060–U+2064, U+180E, Hangul fillers U+115F, U+1160, U+3164, U+FFA0) | they break terminals and logs, or make a name display as another one (`exe.txt` shown for `txt.exe`) |
//! | no leading or trailing white space | invisible, and trimmed by some tools |
//! | does not start with `-` | read as an option by command-line tools (`rm -rf`) |
//! | does not end with `.` | Windows drops it, so `a.` and `a` would collide |
//! | not a Windows device name (`CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, `CONIN$`, `CONOUT$`, case-insensitive, with or without an extension) | such files cannot be created or opened on Windows |
//!
//! A refused name is answered with `ErrorCode::INVALID_NAME` and the error's text, which
//! says which rule it broke.

use unicode_normalization::UnicodeNormalization;

/// The longest component of a name, in bytes of UTF-8 (the usual file system limit).
pub const MAX_NAME_BYTES: usize = 255;
/// The longest whole name (path), in bytes of UTF-8 (the wire limit).
pub const MAX_PATH_BYTES: usize = 1024;
/// The most components a name may have.
pub const MAX_COMPONENTS: usize = 64;

/// Why a file name was refused. The `Display` text is sent to the client (at most 128 bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("invalid name: empty")]
    Empty,
    /// A component is longer than [`MAX_NAME_BYTES`] bytes.
    #[error("invalid name: {len} bytes, at most 255 allowed")]
    TooLong {
        /// Its length in bytes (after normalisation).
        len: usize,
    },
    /// The whole name is longer than [`MAX_PATH_BYTES`] bytes.
    #[error("invalid name: a path of {len} bytes, at most 1024 allowed")]
    PathTooLong {
        /// Its length in bytes (after normalisation).
        len: usize,
    },
    /// More than [`MAX_COMPONENTS`] components.
    #[error("invalid name: {count} path components, at most 64 allowed")]
    TooDeep {
        /// How many components it has.
        count: usize,
    },
    /// An empty component: a leading `/` (absolute path), a trailing `/` or `//`.
    #[error("invalid name: empty path component (leading, trailing or double '/')")]
    EmptyComponent,
    /// `.` or `..`.
    #[error("invalid name: '.' and '..' are not file names")]
    DotName,
    /// A path separator other than `/` between components.
    #[error("invalid name: contains a path separator {ch:?}")]
    Separator {
        /// The separator.
        ch: char,
    },
    /// A character that looks like or maps to a path separator.
    #[error("invalid name: contains U+{:04X}, which looks like a path separator", *.ch as u32)]
    LookalikeSeparator {
        /// The character.
        ch: char,
    },
    /// A character that looks like `.` or `..`.
    #[error("invalid name: contains U+{:04X}, which looks like a dot", *.ch as u32)]
    LookalikeDot {
        /// The character.
        ch: char,
    },
    /// A character Windows does not allow in file names.
    #[error("invalid name: contains {ch:?}, not allowed in Windows file names")]
    Reserved {
        /// The character.
        ch: char,
    },
    /// A control, format or line-separating character.
    #[error("invalid name: contains control character U+{:04X}", *.ch as u32)]
    Control {
        /// The character.
        ch: char,
    },
    /// White space at the start or the end.
    #[error("invalid name: starts or ends with white space")]
    SurroundingWhitespace,
    /// Starts with `-`.
    #[error("invalid name: starts with '-' (it would read as an option)")]
    LeadingDash,
    /// Ends with `.`.
    #[error("invalid name: ends with '.'")]
    TrailingDot,
    /// A Windows device name.
    #[error("invalid name: {stem:?} is a reserved device name on Windows")]
    DeviceName {
        /// The reserved part.
        stem: String,
    },
}

/// Characters that look like `/` or `\`, or that Windows' best-fit mapping turns into them.
const LOOKALIKE_SEPARATORS: &[char] = &[
    '\u{2044}', // FRACTION SLASH
    '\u{2215}', // DIVISION SLASH
    '\u{2216}', // SET MINUS
    '\u{29F8}', // BIG SOLIDUS
    '\u{29F9}', // BIG REVERSE SOLIDUS
    '\u{FE68}', // SMALL REVERSE SOLIDUS
    '\u{FF0F}', // FULLWIDTH SOLIDUS
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS
    '\u{2571}', // BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
    '\u{2572}', // BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
    '\u{29F5}', // REVERSE SOLIDUS OPERATOR
];

/// Characters that read as `.` or `..` (a name of them reads as a directory reference).
const LOOKALIKE_DOTS: &[char] = &[
    '\u{2024}', // ONE DOT LEADER
    '\u{2025}', // TWO DOT LEADER
    '\u{FE52}', // SMALL FULL STOP
    '\u{FF0E}', // FULLWIDTH FULL STOP
];

/// Characters Windows refuses in file names (besides separators and controls).
const WINDOWS_RESERVED: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Invisible characters that change how text displays or splits.
fn is_invisible_control(ch: char) -> bool {
    ch.is_control()
        || matches!(
            ch,
            '\u{200E}' | '\u{200F}' // LRM, RLM
                | '\u{202A}'..='\u{202E}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
                | '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{FEFF}' // byte order mark
                | '\u{061C}' // Arabic letter mark (bidirectional)
                | '\u{00AD}' // soft hyphen
                | '\u{200B}'..='\u{200D}' // zero width space, non-joiner, joiner
                | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
                | '\u{180E}' // Mongolian vowel separator
                | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
        )
}

/// Windows device names, compared case-insensitively to the part before the first `.`.
fn is_device_name(stem: &str) -> bool {
    let upper = stem.trim_end_matches(' ').to_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let mut chars = upper.chars();
            let prefix: String = chars.by_ref().take(3).collect();
            let rest: String = chars.collect();
            (prefix == "COM" || prefix == "LPT")
                && matches!(
                    rest.as_str(),
                    "0" | "1"
                        | "2"
                        | "3"
                        | "4"
                        | "5"
                        | "6"
                        | "7"
                        | "8"
                        | "9"
                        | "\u{B9}"
                        | "\u{B2}"
                        | "\u{B3}"
                )
        }
    }
}

/// Checks a file name sent by a client and returns its NFC form, the name to store.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    // Characters are checked on the raw name too: normalisation must not be what hides one.
    check_chars(name)?;
    let normalised: String = name.nfc().collect();
    check_chars(&normalised)?;
    if normalised.is_empty() {
        return Err(NameError::Empty);
    }
    if normalised.len() > MAX_PATH_BYTES {
        return Err(NameError::PathTooLong {
            len: normalised.len(),
        });
    }
    let count = normalised.split('/').count();
    if count > MAX_COMPONENTS {
        return Err(NameError::TooDeep { count });
    }
    for component in normalised.split('/') {
        check_component(component)?;
    }
    Ok(normalised)
}

/// One `/`-separated component of a normalised name.
fn check_component(component: &str) -> Result<(), NameError> {
    if component.is_empty() {
        return Err(NameError::EmptyComponent);
    }
    if component.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            len: component.len(),
        });
    }
    if component == "." || component == ".." {
        return Err(NameError::DotName);
    }
    if component.starts_with(char::is_whitespace) || component.ends_with(char::is_whitespace) {
        return Err(NameError::SurroundingWhitespace);
    }
    if component.starts_with('-') {
        return Err(NameError::LeadingDash);
    }
    if component.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    let stem = component.split('.').next().unwrap_or_default();
    if is_device_name(stem) {
        return Err(NameError::DeviceName {
            stem: stem.to_string(),
        });
    }
    Ok(())
}

fn check_chars(name: &str) -> Result<(), NameError> {
    for ch in name.chars() {
        if ch == '\\' {
            return Err(NameError::Separator { ch });
        }
        if is_invisible_control(ch) {
            return Err(NameError::Control { ch });
        }
        if LOOKALIKE_SEPARATORS.contains(&ch) {
            return Err(NameError::LookalikeSeparator { ch });
        }
        if LOOKALIKE_DOTS.contains(&ch) {
            return Err(NameError::LookalikeDot { ch });
        }
        if WINDOWS_RESERVED.contains(&ch) {
            return Err(NameError::Reserved { ch });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> NameError {
        validate_name(name).expect_err(name)
    }

    #[test]
    fn ordinary_names_pass_unchanged() {
        for name in [
            "a",
            "report.pdf",
            "photo 2024-05-01.jpg",
            "archive.tar.gz",
            ".hidden",
            "..double-dot-prefix",
            "a..b",
            "日本語のファイル.txt",
            "emoji 🚀.bin",
            "conx.txt",
            "CONSOLE",
            "COM10",
            "LPT",
            "x-",
            "under_score",
            "100%",
            "semi;colon",
            "a'b",
        ] {
            assert_eq!(validate_name(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn empty_and_dot_names() {
        assert_eq!(refused(""), NameError::Empty);
        assert_eq!(refused("."), NameError::DotName);
        assert_eq!(refused(".."), NameError::DotName);
    }

    #[test]
    fn length_is_bounded_in_bytes() {
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert_eq!(refused(&"a".repeat(256)), NameError::TooLong { len: 256 });
        // 86 three-byte characters = 258 bytes.
        assert_eq!(refused(&"語".repeat(86)), NameError::TooLong { len: 258 });
        assert!(validate_name(&"語".repeat(85)).is_ok());
    }

    #[test]
    fn separators_and_traversal() {
        for name in ["..\\x", "a\\b", "\\", "C:\\x"] {
            assert!(
                matches!(
                    refused(name),
                    NameError::Separator { .. } | NameError::Reserved { .. }
                ),
                "{name}"
            );
        }
        assert_eq!(refused("a\\b"), NameError::Separator { ch: '\\' });
        for ch in LOOKALIKE_SEPARATORS {
            let name = format!("..{ch}etc{ch}passwd");
            assert_eq!(refused(&name), NameError::LookalikeSeparator { ch: *ch });
            // Inside a component of a path too.
            let name = format!("a/b{ch}c/d");
            assert_eq!(refused(&name), NameError::LookalikeSeparator { ch: *ch });
        }
        for name in ["\u{2025}", "\u{FF0E}\u{FF0E}", "a\u{2024}b", "x\u{FE52}y"] {
            let ch = name.chars().find(|c| LOOKALIKE_DOTS.contains(c)).unwrap();
            assert_eq!(refused(name), NameError::LookalikeDot { ch }, "{name:?}");
        }
        assert_eq!(
            refused("\u{2571}etc"),
            NameError::LookalikeSeparator { ch: '\u{2571}' }
        );
        assert_eq!(
            refused("a/\u{2025}/x"),
            NameError::LookalikeDot { ch: '\u{2025}' }
        );
    }

    #[test]
    fn paths_of_components_pass() {
        for name in [
            "a/b",
            "photos/2024/05/img 001.jpg",
            ".config/app/settings.toml",
            "a..b/c..d",
            "日本/語.txt",
        ] {
            assert_eq!(validate_name(name).as_deref(), Ok(name), "{name}");
        }
        let deepest = vec!["d"; MAX_COMPONENTS].join("/");
        assert_eq!(validate_name(&deepest).as_deref(), Ok(deepest.as_str()));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for (name, error) in [
            ("a/../../x", NameError::DotName),
            ("../x", NameError::DotName),
            ("a/..", NameError::DotName),
            ("a/./b", NameError::DotName),
            ("./a", NameError::DotName),
            ("/abs", NameError::EmptyComponent),
            ("/etc/passwd", NameError::EmptyComponent),
            ("/", NameError::EmptyComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a/b/", NameError::EmptyComponent),
            ("a/ b", NameError::SurroundingWhitespace),
            ("a /b", NameError::SurroundingWhitespace),
            ("a/-rf", NameError::LeadingDash),
            ("a./b", NameError::TrailingDot),
        ] {
            assert_eq!(refused(name), error, "{name}");
        }
        assert!(matches!(
            refused("docs/CON/x"),
            NameError::DeviceName { .. }
        ));
        assert!(matches!(refused("x/nul.txt"), NameError::DeviceName { .. }));
        assert_eq!(refused("a/b\u{0}/c"), NameError::Control { ch: '\u{0}' });
    }

    #[test]
    fn paths_are_bounded_in_length_and_depth() {
        let too_deep = vec!["d"; MAX_COMPONENTS + 1].join("/");
        assert_eq!(
            refused(&too_deep),
            NameError::TooDeep {
                count: MAX_COMPONENTS + 1
            }
        );
        // Components of 255 bytes each: four fit in 1024 bytes with their separators.
        let long = "a".repeat(MAX_NAME_BYTES);
        let four = [long.as_str(); 4].join("/");
        assert_eq!(four.len(), 1023);
        assert!(validate_name(&four).is_ok());
        let five = [long.as_str(); 5].join("/");
        assert_eq!(refused(&five), NameError::PathTooLong { len: five.len() });
        assert_eq!(
            refused(&format!("a/{}", "b".repeat(256))),
            NameError::TooLong { len: 256 }
        );
    }

    #[test]
    fn control_characters() {
        for ch in [
            '\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}',
        ] {
            let name = format!("a{ch}b");
            assert_eq!(refused(&name), NameError::Control { ch }, "{ch:?}");
        }
        for ch in [
            '\u{202E}', '\u{200F}', '\u{2066}', '\u{2028}', '\u{FEFF}', '\u{200B}', '\u{200D}',
            '\u{2060}', '\u{00AD}', '\u{3164}', '\u{061C}',
        ] {
            let name = format!("a{ch}b");
            assert_eq!(refused(&name), NameError::Control { ch }, "{ch:?}");
        }
    }

    #[test]
    fn windows_reserved_characters() {
        for ch in WINDOWS_RESERVED {
            assert_eq!(refused(&format!("a{ch}b")), NameError::Reserved { ch: *ch });
        }
    }

    #[test]
    fn whitespace_dash_and_trailing_dot() {
        assert_eq!(refused(" a"), NameError::SurroundingWhitespace);
        assert_eq!(refused("a "), NameError::SurroundingWhitespace);
        assert_eq!(refused("\u{3000}a"), NameError::SurroundingWhitespace);
        assert_eq!(refused("-rf"), NameError::LeadingDash);
        assert_eq!(refused("a."), NameError::TrailingDot);
        assert_eq!(refused("a..."), NameError::TrailingDot);
    }

    #[test]
    fn windows_device_names() {
        for name in [
            "CON",
            "con",
            "Con.txt",
            "nul",
            "NUL.tar.gz",
            "aux.c",
            "PRN",
            "com1",
            "COM9.log",
            "lpt1",
            "LPT0",
            "com\u{B9}",
            "CONIN$",
            "conout$.x",
            "con .txt",
        ] {
            assert!(
                matches!(refused(name), NameError::DeviceName { .. }),
                "{name}"
            );
        }
    }

    #[test]
    fn names_are_normalised_to_nfc() {
        let decomposed = "cafe\u{301}.txt";
        let composed = "caf\u{e9}.txt";
        assert_eq!(validate_name(decomposed).as_deref(), Ok(composed));
        assert_eq!(validate_name(composed).as_deref(), Ok(composed));
        // Hangul jamo compose into one syllable.
        assert_eq!(validate_name("\u{1100}\u{1161}").as_deref(), Ok("\u{AC00}"));
        assert_eq!(
            validate_name("cafe\u{301}/cafe\u{301}.txt").as_deref(),
            Ok("caf\u{e9}/caf\u{e9}.txt")
        );
    }

    #[test]
    fn error_texts_fit_the_wire() {
        let errors = [
            refused(""),
            refused(&"a".repeat(300)),
            refused(".."),
            refused("a\\b"),
            refused("a//b"),
            refused(&"a/".repeat(65)),
            refused(&"a".repeat(1100)),
            refused("a\u{FF0F}b"),
            refused("a|b"),
            refused("a\u{0}b"),
            refused(" a"),
            refused("-a"),
            refused("a."),
            refused("CONOUT$.tar.gz"),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.len() <= 128, "{text}");
            assert!(text.starts_with("invalid name: "), "{text}");
        }
    }
}
