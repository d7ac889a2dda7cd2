//! What a command line asks for, checked before anything is sent: one step per file.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use ferry_client::{exit, ClientError};

use crate::cli::{Cli, Command};

/// The file name that means standard input (upload) or standard output (download `-o`).
pub(crate) const STDIO: &str = "-";

/// One operation of the command line, with its local paths resolved.
pub(crate) enum Step {
    Upload {
        source: Source,
        name: String,
    },
    Download {
        name: String,
        dest: Dest,
    },
    Delete {
        name: String,
    },
    RoundTrip {
        path: PathBuf,
        name: String,
    },
    /// Refused here, before anything is sent.
    Refused(&'static str, String, anyhow::Error),
}

/// What an upload reads.
pub(crate) enum Source {
    File(PathBuf),
    /// Standard input, copied to an unnamed temporary file first (the protocol declares a
    /// file's size before its data).
    Spooled(std::fs::File),
}

impl Source {
    /// The path to show for it (`-` for standard input).
    pub(crate) fn shown(&self) -> PathBuf {
        match self {
            Source::File(path) => path.clone(),
            Source::Spooled(_) => PathBuf::from(STDIO),
        }
    }
}

/// Where a download goes.
pub(crate) enum Dest {
    File(PathBuf),
    /// Standard output, once verified.
    Stdout,
}

impl Dest {
    /// The path to show for it (`-` for standard output).
    pub(crate) fn shown(&self) -> PathBuf {
        match self {
            Dest::File(path) => path.clone(),
            Dest::Stdout => PathBuf::from(STDIO),
        }
    }
}

/// A `--no-clobber` refusal: the name is taken (on the server: exit 4; locally: exit 6).
#[derive(Debug)]
pub(crate) struct NoClobber {
    pub(crate) what: String,
    pub(crate) exit_code: i32,
}

impl std::fmt::Display for NoClobber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} already exists; not replaced (--no-clobber)",
            self.what
        )
    }
}

impl std::error::Error for NoClobber {}

impl NoClobber {
    pub(crate) fn on_server(name: &str) -> anyhow::Error {
        NoClobber {
            what: format!("{name:?} on the server"),
            exit_code: exit::REFUSED,
        }
        .into()
    }

    fn local(path: &Path) -> anyhow::Error {
        NoClobber {
            what: path.display().to_string(),
            exit_code: exit::LOCAL_FILE,
        }
        .into()
    }
}

pub(crate) enum Failure {
    Usage(String),
    Op(&'static str, Option<String>, anyhow::Error),
}

/// The server name of a local file: its file name.
pub(crate) fn name_of(path: &Path) -> Result<String, Failure> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{}: cannot name it on the server (not a UTF-8 file name); use --name",
                path.display()
            ))
        })
}

/// A local file name for a server name: its last `/`-separated part, if usable.
pub(crate) fn local_name(name: &str) -> Option<&str> {
    let last = name.rsplit(['/', '\\']).next()?;
    (!last.is_empty() && last != "." && last != "..").then_some(last)
}

fn io_error(path: impl Into<PathBuf>, source: io::Error) -> ClientError {
    ClientError::Io {
        path: path.into(),
        source,
    }
}

/// Standard input copied to an unnamed temporary file, rewound.
fn spool_stdin() -> Result<std::fs::File, ClientError> {
    use std::io::Seek;
    let stdin = || PathBuf::from("<standard input>");
    let spool_error = |e| io_error(std::env::temp_dir(), e);
    let mut file = tempfile::tempfile().map_err(spool_error)?;
    io::copy(&mut io::stdin().lock(), &mut file).map_err(|e| io_error(stdin(), e))?;
    file.rewind().map_err(spool_error)?;
    Ok(file)
}

/// `-o PATH` can be written: a directory that exists, or a file in one. Errors name PATH
/// as typed.
fn check_output(output: &Path) -> Result<(), ClientError> {
    let missing = |what: &str| {
        io_error(
            output,
            io::Error::new(io::ErrorKind::NotFound, what.to_string()),
        )
    };
    let typed = output.as_os_str().as_encoded_bytes();
    if typed.ends_with(b"/") {
        return match output.is_dir() {
            true => Ok(()),
            false => Err(missing("no such directory")),
        };
    }
    match output.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.is_dir() => {
            Err(missing(&format!("no such directory {}", parent.display())))
        }
        _ => Ok(()),
    }
}

pub(crate) fn plan(cli: &Cli) -> Result<Vec<Step>, Failure> {
    Ok(match &cli.command {
        Command::Upload { files, name, .. } => {
            if name.is_some() && files.len() > 1 {
                return Err(Failure::Usage("--name needs exactly one FILE".into()));
            }
            let mut steps = Vec::new();
            let mut taken: HashMap<String, &Path> = HashMap::new();
            for path in files {
                let stdin = path.as_os_str() == STDIO;
                let name = match name {
                    Some(name) => name.clone(),
                    None if stdin => {
                        return Err(Failure::Usage(
                            "uploading standard input (-) needs --name".into(),
                        ))
                    }
                    None => name_of(path)?,
                };
                if let Some(first) = taken.insert(name.clone(), path) {
                    return Err(Failure::Usage(format!(
                        "{} and {} would both be stored as {name:?}; upload one of them with --name",
                        first.display(),
                        path.display()
                    )));
                }
                let source = if stdin {
                    Source::Spooled(
                        spool_stdin()
                            .map_err(|e| Failure::Op("upload", Some(name.clone()), e.into()))?,
                    )
                } else {
                    Source::File(path.clone())
                };
                steps.push(Step::Upload { source, name });
            }
            steps
        }
        Command::Download {
            names,
            output,
            no_clobber,
            ..
        } => {
            if output.as_deref() == Some(Path::new(STDIO)) {
                return match &names[..] {
                    [name] if !cli.json => Ok(vec![Step::Download {
                        name: name.clone(),
                        dest: Dest::Stdout,
                    }]),
                    [_] => Err(Failure::Usage(
                        "-o - writes the file to standard output: it cannot go with --json".into(),
                    )),
                    _ => Err(Failure::Usage("-o - takes exactly one NAME".into())),
                };
            }
            let dir_given = output.as_deref().filter(|p| p.is_dir());
            if names.len() > 1 && output.is_some() && dir_given.is_none() {
                return Err(Failure::Usage(format!(
                    "-o {}: with several names, -o must be an existing directory",
                    output.as_deref().unwrap_or(Path::new("")).display()
                )));
            }
            if let Some(output) = output {
                check_output(output)
                    .map_err(|e| Failure::Op("download", names.first().cloned(), e.into()))?;
            }
            let mut steps = Vec::new();
            let mut taken: HashMap<PathBuf, &String> = HashMap::new();
            for name in names {
                let dest = match (output, dir_given) {
                    (Some(file), None) => file.clone(),
                    (_, dir) => {
                        let local = local_name(name).ok_or_else(|| {
                            Failure::Op(
                                "download",
                                Some(name.clone()),
                                ClientError::InvalidName {
                                    name: name.clone(),
                                    reason: "no usable local file name; give one with -o".into(),
                                }
                                .into(),
                            )
                        })?;
                        dir.unwrap_or(Path::new(".")).join(local)
                    }
                };
                if let Some(first) = taken.insert(dest.clone(), name) {
                    return Err(Failure::Usage(format!(
                        "{first:?} and {name:?} would both be written to {}",
                        dest.display()
                    )));
                }
                if *no_clobber && std::fs::symlink_metadata(&dest).is_ok() {
                    steps.push(Step::Refused(
                        "download",
                        name.clone(),
                        NoClobber::local(&dest),
                    ));
                    continue;
                }
                steps.push(Step::Download {
                    name: name.clone(),
                    dest: Dest::File(dest),
                });
            }
            steps
        }
        // Handled before any plan: nothing to send.
        Command::Login { .. } | Command::Config => Vec::new(),
        // Tree commands: run by `trees`, without a plan.
        Command::List { .. } | Command::Sync { .. } => Vec::new(),
        Command::Delete { names, .. } => names
            .iter()
            .map(|name| Step::Delete { name: name.clone() })
            .collect(),
        // Answered by `main` before any plan or connection.
        Command::Completions { .. } | Command::Man => Vec::new(),
        Command::Roundtrip { file, name } => vec![Step::RoundTrip {
            path: file.clone(),
            name: match name {
                Some(name) => name.clone(),
                None => name_of(file)?,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse;
    use crate::output::exit_code_of;

    #[test]
    fn plans_resolve_names_and_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let cli = parse(&["upload", "/x/a.txt", "b.bin"]).unwrap();
        let names: Vec<String> = plan(&cli)
            .ok()
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Step::Upload { name, .. } => name,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a.txt", "b.bin"]);
        assert!(matches!(
            plan(&parse(&["upload", "a", "b", "--name", "c"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        // One name: -o is a file, or an existing directory.
        let dest = |args: &[&str]| -> Vec<PathBuf> {
            match plan(&parse(args).unwrap()) {
                Ok(steps) => steps
                    .into_iter()
                    .map(|s| match s {
                        Step::Download {
                            dest: Dest::File(dest),
                            ..
                        } => dest,
                        _ => unreachable!(),
                    })
                    .collect(),
                Err(_) => panic!("{args:?} refused"),
            }
        };
        let file = format!("{d}/f");
        assert_eq!(
            dest(&["download", "n", "-o", &file]),
            [PathBuf::from(&file)]
        );
        // A file in a directory that does not exist: refused, named as typed.
        match plan(&parse(&["download", "n", "-o", "/t/f"]).unwrap()) {
            Err(Failure::Op(_, _, error)) => {
                assert_eq!(exit_code_of(&error), 6);
                assert!(format!("{error:#}").starts_with("/t/f: "), "{error:#}");
            }
            _ => panic!("-o /t/f accepted"),
        }
        // Two names that would land on one path.
        assert!(matches!(
            plan(&parse(&["download", "x/n", "y/n"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            plan(&parse(&["upload", "a/n", "b/n"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            plan(&parse(&["download", "n", "-o", "-", "--json"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        assert_eq!(dest(&["download", "n", "-o", d]), [dir.path().join("n")]);
        assert_eq!(dest(&["download", "dir/n"]), [PathBuf::from("./n")]);
        assert_eq!(
            dest(&["download", "a", "b", "-o", d]),
            [dir.path().join("a"), dir.path().join("b")]
        );
        assert!(matches!(
            plan(&parse(&["download", "a", "b", "-o", "/no/such/dir"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        match plan(&parse(&["download", ".."]).unwrap()) {
            Err(Failure::Op(_, _, error)) => assert_eq!(exit_code_of(&error), 4),
            _ => panic!("'..' accepted as a local name"),
        }
    }

    #[test]
    fn local_names_are_the_last_part() {
        assert_eq!(local_name("a"), Some("a"));
        assert_eq!(local_name("x/y/z.txt"), Some("z.txt"));
        assert_eq!(local_name("x\\y"), Some("y"));
        for bad in ["", ".", "..", "a/", "a/.."] {
            assert_eq!(local_name(bad), None, "{bad:?}");
        }
    }
}
