//! What a command line asks for, checked before anything is sent: one step per file.

use std::path::{Path, PathBuf};

use ferry_client::ClientError;

use crate::cli::{Cli, Command};

/// One operation of the command line, with its local paths resolved.
pub(crate) enum Step {
    Upload { path: PathBuf, name: String },
    Download { name: String, dest: PathBuf },
    List,
    Delete { name: String },
    RoundTrip { path: PathBuf, name: String },
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

pub(crate) fn plan(cli: &Cli) -> Result<Vec<Step>, Failure> {
    Ok(match &cli.command {
        Command::Upload { files, name } => {
            if name.is_some() && files.len() > 1 {
                return Err(Failure::Usage("--name needs exactly one FILE".into()));
            }
            let mut steps = Vec::new();
            for path in files {
                let name = match name {
                    Some(name) => name.clone(),
                    None => name_of(path)?,
                };
                steps.push(Step::Upload {
                    path: path.clone(),
                    name,
                });
            }
            steps
        }
        Command::Download { names, output } => {
            let dir_given = output.as_deref().filter(|p| p.is_dir());
            if names.len() > 1 && output.is_some() && dir_given.is_none() {
                return Err(Failure::Usage(format!(
                    "-o {}: with several names, -o must be an existing directory",
                    output.as_deref().unwrap_or(Path::new("")).display()
                )));
            }
            let mut steps = Vec::new();
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
                steps.push(Step::Download {
                    name: name.clone(),
                    dest,
                });
            }
            steps
        }
        Command::List => vec![Step::List],
        Command::Delete { names } => names
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
                        Step::Download { dest, .. } => dest,
                        _ => unreachable!(),
                    })
                    .collect(),
                Err(_) => panic!("{args:?} refused"),
            }
        };
        assert_eq!(
            dest(&["download", "n", "-o", "/t/f"]),
            [PathBuf::from("/t/f")]
        );
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
