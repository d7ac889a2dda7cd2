//! Tree commands: `upload -r`, `download -r`, `list [PREFIX] [-r]`, `delete -r`, `sync`,
//! each on one connection, with one progress bar for the whole tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_client::{exit, Client, ClientError, ClientOptions, ErrorCode};

use crate::cli::{Cli, Command};
use crate::fetch::{download_files, Connections, Fetch};
use crate::output::{list_rows, Output};
use crate::progress::TreeBar;
use crate::remote::{self, Entry, Event};
use crate::sync::{self, Action};
use crate::tree::{self, LocalFile};
use crate::tree_report::TreeReport;

/// Whether `command` is one of the tree commands this module runs.
pub(crate) fn is_tree_command(command: &Command) -> bool {
    matches!(
        command,
        Command::Upload {
            recursive: true,
            ..
        } | Command::Download {
            recursive: true,
            ..
        } | Command::List { .. }
            | Command::Delete {
                recursive: true,
                ..
            }
            | Command::Sync { .. }
    )
}

/// A usage error, as clap reports it (exit 2).
fn usage(message: String) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Runs a tree command; returns the exit code.
pub(crate) async fn run(cli: &Cli, out: &Output, options: ClientOptions) -> i32 {
    let parallel = cli.parallel as usize;
    match &cli.command {
        Command::Upload {
            files, dereference, ..
        } => upload_trees(out, options, files, *dereference).await,
        Command::Download { names, output, .. } => {
            let root = output.clone().unwrap_or_else(|| PathBuf::from("."));
            // Made if missing, as `scp -r` and `rsync` make their destination.
            if let Err(e) = std::fs::create_dir_all(&root) {
                usage(format!(
                    "-o {}: cannot make the directory: {e}",
                    root.display()
                ));
            }
            download_trees(out, options, parallel, names, &root).await
        }
        Command::List { prefix, recursive } => {
            let mut report = TreeReport::new(out, "list", TreeBar::new(false, 0, 0));
            let Some(mut connections) = connect(&mut report, options, parallel).await else {
                return report.finish();
            };
            let folder = tree::folder(prefix.as_deref().unwrap_or(""));
            let as_array = prefix.is_none() && !recursive;
            let code = list(connections.first(), out, &folder, *recursive, as_array).await;
            connections.close().await;
            code
        }
        Command::Delete { names, dry_run, .. } => {
            let mut report = TreeReport::new(out, "delete", TreeBar::new(false, 0, 0));
            report.dry_run = *dry_run;
            let Some(mut connections) = connect(&mut report, options, parallel).await else {
                return report.finish();
            };
            for prefix in names {
                let folder = tree::folder(prefix);
                match collect(connections.first(), &folder).await {
                    Ok(entries) if entries.is_empty() => {
                        report.failed("delete", prefix, nothing_below())
                    }
                    Ok(entries) => {
                        for entry in entries {
                            delete(connections.first(), &mut report, &entry.name, entry.size).await;
                        }
                    }
                    Err(e) => report.fatal("list", e.into()),
                }
            }
            connections.close().await;
            report.finish()
        }
        Command::Sync {
            first,
            second,
            down,
            delete,
            dry_run,
            dereference,
        } => {
            let (local, folder) = match (*down, second) {
                (false, Some(prefix)) => (PathBuf::from(first), tree::folder(prefix)),
                (false, None) => match tree::base_name(Path::new(first)) {
                    Ok(base) => (PathBuf::from(first), base),
                    Err(e) => return out.error("sync", Some(first), &e.into()),
                },
                (true, Some(dir)) => (PathBuf::from(dir), tree::folder(first)),
                (true, None) => usage("sync --down PREFIX LOCAL_DIR: LOCAL_DIR is missing".into()),
            };
            let mut report = TreeReport::new(out, "sync", TreeBar::new(false, 0, 0));
            report.dry_run = *dry_run;
            let job = SyncJob {
                local: &local,
                folder: &folder,
                delete: *delete,
                follow: *dereference,
            };
            let Some(mut connections) = connect(&mut report, options, parallel).await else {
                return report.finish();
            };
            match down {
                false => sync_up(connections.first(), out, &mut report, &job).await,
                true => sync_down(&mut connections, out, &mut report, &job).await,
            }
            connections.close().await;
            report.finish()
        }
        _ => exit::OTHER,
    }
}

/// `ferry upload -r DIR...`: every file below each DIR, named from DIR's own name.
async fn upload_trees(
    out: &Output,
    options: ClientOptions,
    files: &[PathBuf],
    follow: bool,
) -> i32 {
    let mut report = TreeReport::new(out, "upload", TreeBar::new(false, 0, 0));
    let mut items = Vec::new();
    for dir in files {
        let walked = tree::base_name(dir).and_then(|base| {
            let walk = tree::walk(dir, follow)?;
            Ok((base, walk))
        });
        match walked {
            Ok((base, walk)) => {
                for warning in &walk.skipped {
                    report.skip(warning);
                }
                let is_dir = dir.is_dir();
                for file in walk.files {
                    let name = match is_dir {
                        true => tree::join_name(&base, &file.relative),
                        false => file.relative.clone(),
                    };
                    items.push((file, name));
                }
            }
            Err(e) => report.failed("upload", &dir.display().to_string(), e.into()),
        }
    }
    refuse_twins(&items);
    let Some(mut connections) = connect(&mut report, options, 1).await else {
        return report.finish();
    };
    upload_files(connections.first(), out, &mut report, items).await;
    connections.close().await;
    report.finish()
}

/// `ferry download -r PREFIX... -o ROOT`: every file below each PREFIX, below ROOT.
async fn download_trees(
    out: &Output,
    options: ClientOptions,
    parallel: usize,
    names: &[String],
    root: &Path,
) -> i32 {
    let mut report = TreeReport::new(out, "download", TreeBar::new(false, 0, 0));
    let Some(mut connections) = connect(&mut report, options, parallel).await else {
        return report.finish();
    };
    for prefix in names {
        let folder = tree::folder(prefix);
        let base = tree::parent_of(&folder).to_string();
        match collect(connections.first(), &folder).await {
            Ok(entries) if entries.is_empty() => report.failed("download", prefix, nothing_below()),
            Ok(entries) => {
                let fetches = entries
                    .into_iter()
                    .map(|entry| Fetch {
                        relative: below(&entry.name, &base).to_string(),
                        size: entry.size,
                        modified: entry.modified,
                        mode: entry.mode,
                        name: entry.name,
                    })
                    .collect();
                download_files(&mut connections, out, &mut report, root, fetches).await
            }
            Err(e) => report.fatal("list", e.into()),
        }
    }
    connections.close().await;
    report.finish()
}

/// Two local files that would be stored under one name (`ferry upload -r a/x b/x`): a
/// usage error before anything is sent, as for single files.
fn refuse_twins(items: &[(LocalFile, String)]) {
    let mut seen = std::collections::HashMap::new();
    for (file, name) in items {
        if let Some(first) = seen.insert(name, &file.path) {
            usage(format!(
                "{} and {} would both be stored as {name:?}",
                first.display(),
                file.path.display()
            ));
        }
    }
}

/// Connects (one connection; downloads open more, up to `parallel`), or reports why not.
async fn connect(
    report: &mut TreeReport<'_>,
    options: ClientOptions,
    parallel: usize,
) -> Option<Connections> {
    match Client::connect(options.clone()).await {
        Ok(client) => Some(Connections {
            open: vec![client],
            options,
            parallel,
        }),
        Err(e) => {
            report.fatal("connect", e.into());
            None
        }
    }
}

/// Every file below `folder` on the server (names only kept in memory, page by page).
async fn collect(client: &mut Client, folder: &str) -> Result<Vec<Entry>, ClientError> {
    let mut files = Vec::new();
    remote::files_below(client, folder, &mut |page| {
        files.extend(page.into_iter().filter(|entry| !entry.folder))
    })
    .await?;
    Ok(files)
}

/// Uploads `items` (a local file and its server name) on one connection, a line per file.
async fn upload_files(
    client: &mut Client,
    out: &Output,
    report: &mut TreeReport<'_>,
    items: Vec<(LocalFile, String)>,
) {
    if items.is_empty() {
        return;
    }
    let total = items.iter().map(|(file, _)| file.size).sum();
    report.bar = TreeBar::new(out.bars, items.len(), total);
    let uploads: Vec<_> = items
        .iter()
        .map(|(file, name)| remote::upload_item(file, name.clone()))
        .collect();
    let results = remote::upload_many(client, &uploads, &mut |event| match event {
        Event::Started(index) => report.bar.start(index, &items[index].1),
        Event::Progress(index, done) => report.bar.progress(index, done),
        Event::Done(index, result) => {
            let (file, name) = &items[index];
            report.bar.done(index, file.size);
            if let Ok(transfer) = result {
                report.ok("upload", name, file.size, Some((transfer, &file.path)));
            }
        }
    })
    .await;
    match results {
        Ok(results) => {
            for ((_, name), result) in items.iter().zip(results) {
                if let Err(e) = result {
                    report.failed("upload", name, e.into());
                }
            }
        }
        Err(e) => report.fatal("upload", e.into()),
    }
}

/// Deletes `name` on the server (with --dry-run, says it would).
async fn delete(client: &mut Client, report: &mut TreeReport<'_>, name: &str, size: u64) {
    if report.dry_run {
        return report.ok("delete", name, size, None);
    }
    match client.delete(name).await {
        Ok(()) => report.ok("delete", name, size, None),
        Err(e) => report.failed("delete", name, e.into()),
    }
}

/// `ferry list`: pages printed as they arrive. `as_array`: --json prints one array (the
/// format of a plain `ferry list` before trees); otherwise one JSON object per line.
async fn list(
    client: &mut Client,
    out: &Output,
    folder: &str,
    recursive: bool,
    as_array: bool,
) -> i32 {
    use std::io::Write;
    let (mut files, mut folders, mut bytes, mut first) = (0u64, 0u64, 0u64, true);
    if out.json && as_array {
        print!("[");
    }
    let listed = remote::list(client, folder, recursive, &mut |page| {
        let mut stdout = std::io::stdout().lock();
        for entry in &page {
            match entry.folder {
                true => folders += 1,
                false => files += 1,
            }
            bytes += entry.size;
        }
        let _ = match (out.json, as_array) {
            (true, true) => page.iter().try_for_each(|entry| {
                let comma = if std::mem::take(&mut first) { "" } else { "," };
                let json = serde_json::to_string(entry).unwrap_or_default();
                write!(stdout, "{comma}{json}")
            }),
            (true, false) => page.iter().try_for_each(|entry| {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string(entry).unwrap_or_default()
                )
            }),
            (false, _) if out.quiet => Ok(()),
            (false, _) => write!(stdout, "{}", list_rows(&page, std::mem::take(&mut first))),
        };
        let _ = stdout.flush();
    })
    .await;
    if out.json && as_array {
        println!("]");
    }
    match listed {
        Ok(()) => {
            if !out.json && !out.quiet {
                let folders = match folders {
                    0 => String::new(),
                    n => format!("{n} folder(s), "),
                };
                println!("{folders}{files} file(s), {bytes} bytes");
            }
            exit::SUCCESS
        }
        Err(e) => out.error("list", None, &e.into()),
    }
}

/// What `ferry sync` works on.
struct SyncJob<'a> {
    local: &'a Path,
    /// The server folder, without its trailing `/`.
    folder: &'a str,
    delete: bool,
    follow: bool,
}

/// The server's files below `job.folder`, or reported why not.
async fn remote_files(
    client: &mut Client,
    report: &mut TreeReport<'_>,
    folder: &str,
) -> Option<BTreeMap<String, sync::RemoteFile>> {
    match remote::remote_tree(client, folder).await {
        Ok(files) => Some(files),
        Err(e) => {
            report.fatal("list", e.into());
            None
        }
    }
}

/// The sync plan, or reported why not.
fn plan_sync(
    report: &mut TreeReport<'_>,
    local: &BTreeMap<String, LocalFile>,
    remote: &BTreeMap<String, sync::RemoteFile>,
    job: &SyncJob<'_>,
    down: bool,
) -> Option<sync::Plan> {
    match sync::plan(local, remote, down, job.delete) {
        Ok(plan) => {
            report.unchanged = plan.unchanged;
            Some(plan)
        }
        Err((path, e)) => {
            let error = ClientError::Io {
                path: path.into(),
                source: e,
            };
            report.fatal("sync", error.into());
            None
        }
    }
}

/// `ferry sync LOCAL_DIR [PREFIX]`: the server's tree made equal to the local one.
async fn sync_up(
    client: &mut Client,
    out: &Output,
    report: &mut TreeReport<'_>,
    job: &SyncJob<'_>,
) {
    if !job.local.is_dir() {
        let error = ClientError::Io {
            path: job.local.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        };
        return report.fatal("sync", error.into());
    }
    let walk = match tree::walk(job.local, job.follow) {
        Ok(walk) => walk,
        Err(e) => return report.fatal("sync", e.into()),
    };
    for warning in &walk.skipped {
        report.skip(warning);
    }
    let local: BTreeMap<String, LocalFile> = walk
        .files
        .into_iter()
        .map(|file| (file.relative.clone(), file))
        .collect();
    let Some(remote) = remote_files(client, report, job.folder).await else {
        return;
    };
    let Some(plan) = plan_sync(report, &local, &remote, job, false) else {
        return;
    };
    let size_of = |relative: &str| match local.get(relative) {
        Some(file) => file.size,
        None => remote.get(relative).map_or(0, |file| file.size),
    };
    let mut copies = Vec::new();
    let mut rest = Vec::new();
    for (action, relative) in plan.steps {
        let name = tree::join_name(job.folder, &relative);
        if report.dry_run {
            report.ok(action.word(false), &name, size_of(&relative), None);
        } else if let (Action::Copy, Some(file)) = (action, local.get(&relative)) {
            copies.push((file.clone(), name));
        } else {
            rest.push((action, relative, name));
        }
    }
    upload_files(client, out, report, copies).await;
    for (action, relative, name) in rest {
        match (action, local.get(&relative)) {
            (Action::Touch, Some(file)) => {
                match remote::upload_with(client, &file.path, &name, file.attrs).await {
                    Ok(_) => report.ok("touch", &name, file.size, None),
                    Err(e) => report.failed("touch", &name, e.into()),
                }
            }
            _ => delete(client, report, &name, size_of(&relative)).await,
        }
    }
}

/// `ferry sync --down PREFIX LOCAL_DIR`: the local tree made equal to the server's. Only
/// regular files below LOCAL_DIR are ever replaced or removed (links are not followed).
async fn sync_down(
    connections: &mut Connections,
    out: &Output,
    report: &mut TreeReport<'_>,
    job: &SyncJob<'_>,
) {
    if !job.local.exists() && !report.dry_run {
        if let Err(e) = std::fs::create_dir_all(job.local) {
            let error = ClientError::Io {
                path: job.local.to_path_buf(),
                source: e,
            };
            return report.fatal("sync", error.into());
        }
    }
    let walk = match job.local.exists() {
        true => match tree::walk(job.local, false) {
            Ok(walk) => walk,
            Err(e) => return report.fatal("sync", e.into()),
        },
        false => tree::Walk::default(),
    };
    let local: BTreeMap<String, LocalFile> = walk
        .files
        .into_iter()
        .map(|file| (file.relative.clone(), file))
        .collect();
    let Some(remote) = remote_files(connections.first(), report, job.folder).await else {
        return;
    };
    if remote.is_empty() && job.delete && !local.is_empty() {
        // A mistyped PREFIX must not empty LOCAL_DIR.
        return report.failed("sync", job.folder, nothing_below());
    }
    let Some(plan) = plan_sync(report, &local, &remote, job, true) else {
        return;
    };
    let mut fetches = Vec::new();
    for (action, relative) in plan.steps {
        let name = tree::join_name(job.folder, &relative);
        let (here, there) = (local.get(&relative), remote.get(&relative));
        match (action, here, there) {
            (_, _, _) if report.dry_run => {
                let size = there.map_or(here.map_or(0, |f| f.size), |f| f.size);
                report.ok(action.word(true), &name, size, None)
            }
            (Action::Copy, _, Some(file)) => fetches.push(Fetch {
                name,
                relative,
                size: file.size,
                modified: file.modified,
                mode: file.mode,
            }),
            (Action::Touch, Some(mine), Some(file)) => {
                match tree::restore_attrs(&mine.path, file.modified, file.mode) {
                    Ok(()) => report.ok("touch", &name, file.size, None),
                    Err(e) => report.failed("touch", &name, io_error(&mine.path, e)),
                }
            }
            (Action::Delete, Some(mine), _) => match std::fs::remove_file(&mine.path) {
                Ok(()) => report.ok("delete", &mine.path.display().to_string(), mine.size, None),
                Err(e) => report.failed("delete", &name, io_error(&mine.path, e)),
            },
            _ => {}
        }
    }
    download_files(connections, out, report, job.local, fetches).await;
}

/// A folder with no file below it: refused as the server refuses a missing name (exit 4).
fn nothing_below() -> anyhow::Error {
    ClientError::Refused {
        code: ErrorCode::NOT_FOUND,
        text: "no file below it".into(),
    }
    .into()
}

/// `name` without `base/` (empty if `name` is not below `base`: refused later).
fn below<'a>(name: &'a str, base: &str) -> &'a str {
    match base {
        "" => name,
        base => name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(""),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> anyhow::Error {
    ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}
