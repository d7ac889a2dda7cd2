//! Downloads of many files into a local tree, spread over up to `-j` connections (one
//! file at a time on each: a small file's download is mostly round trips and the local
//! fsync, which connections at once overlap).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_client::{exit, Client, ClientError, ClientOptions, TransferReport};
use tokio::sync::mpsc;

use crate::output::Output;
use crate::progress::TreeBar;
use crate::tree;
use crate::tree_report::TreeReport;

/// A server file to download to `relative` below a local directory.
pub(crate) struct Fetch {
    pub(crate) name: String,
    pub(crate) relative: String,
    pub(crate) size: u64,
    pub(crate) modified: u64,
    pub(crate) mode: Option<u32>,
}

/// The connections tree commands use: the first is open; more are opened from `options`
/// for downloads of many files, up to `parallel` in all.
pub(crate) struct Connections {
    pub(crate) open: Vec<Client>,
    pub(crate) options: ClientOptions,
    pub(crate) parallel: usize,
}

impl Connections {
    /// The connection listings and single operations go over.
    pub(crate) fn first(&mut self) -> &mut Client {
        &mut self.open[0]
    }

    /// Opens connections up to `wanted` (and `parallel`); one that fails is done without.
    async fn widen(&mut self, wanted: usize) {
        let mut connecting = tokio::task::JoinSet::new();
        for _ in self.open.len()..wanted.min(self.parallel) {
            connecting.spawn(Client::connect(self.options.clone()));
        }
        while let Some(joined) = connecting.join_next().await {
            match joined {
                Ok(Ok(client)) => self.open.push(client),
                Ok(Err(e)) => tracing::warn!("an extra connection for downloads failed: {e}"),
                Err(e) => tracing::warn!("an extra connection for downloads failed: {e}"),
            }
        }
    }

    pub(crate) async fn close(&mut self) {
        for client in &mut self.open {
            client.close().await;
        }
    }
}

/// What a download task reports.
enum Message {
    Started(usize),
    Progress(usize, u64),
    Done(usize, Fetch, Box<Result<Fetched, ClientError>>),
}

/// A verified download in place, and whether its time and mode could be restored.
struct Fetched {
    transfer: TransferReport,
    dest: PathBuf,
    attrs: std::io::Result<()>,
}

/// Downloads `fetches` into `root`, restoring times and modes, a line per file as each
/// completes. A relative path that is not plain names (`..`, empty parts) or that passes
/// through anything but a real directory is refused: nothing is written outside `root`.
pub(crate) async fn download_files(
    connections: &mut Connections,
    out: &Output,
    report: &mut TreeReport<'_>,
    root: &Path,
    fetches: Vec<Fetch>,
) {
    if fetches.is_empty() {
        return;
    }
    let total = fetches.iter().map(|f| f.size).sum();
    report.bar = TreeBar::new(out.bars, fetches.len(), total);
    let names: Vec<String> = fetches.iter().map(|f| f.name.clone()).collect();
    connections.widen(fetches.len()).await;
    let queue = Arc::new(Mutex::new(
        fetches.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let (sender, mut messages) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for client in connections.open.drain(..) {
        let (queue, sender, root) = (queue.clone(), sender.clone(), root.to_path_buf());
        tasks.spawn(download_queue(client, queue, sender, root));
    }
    drop(sender);
    while let Some(message) = messages.recv().await {
        match message {
            Message::Started(index) => report.bar.start(index, &names[index]),
            Message::Progress(index, done) => report.bar.progress(index, done),
            Message::Done(index, fetch, result) => {
                report.bar.done(index, fetch.size);
                match *result {
                    Ok(fetched) => {
                        if let Err(e) = fetched.attrs {
                            let shown = fetched.dest.display();
                            report.bar.suspend(|| {
                                eprintln!(
                                    "ferry: warning: {shown}: time and mode not restored: {e}"
                                )
                            });
                        }
                        let moved = Some((&fetched.transfer, fetched.dest.as_path()));
                        report.ok("download", &fetch.name, fetch.size, moved);
                    }
                    Err(e) => report.failed("download", &fetch.name, e.into()),
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(client) => connections.open.push(client),
            Err(e) => report.fatal("download", anyhow::anyhow!("a download task failed: {e}")),
        }
    }
    let left = queue
        .lock()
        .map(|mut queue| queue.drain(..).collect::<Vec<_>>());
    for (_, fetch) in left.unwrap_or_default() {
        let error = anyhow::anyhow!("not downloaded: every connection was lost");
        report.failed("download", &fetch.name, error);
    }
}

/// Takes files off `queue` and downloads them on `client` until none is left (or the
/// connection is lost for good); returns the connection.
async fn download_queue(
    mut client: Client,
    queue: Arc<Mutex<VecDeque<(usize, Fetch)>>>,
    sender: mpsc::UnboundedSender<Message>,
    root: PathBuf,
) -> Client {
    loop {
        let next = queue.lock().ok().and_then(|mut queue| queue.pop_front());
        let Some((index, fetch)) = next else {
            return client;
        };
        let _ = sender.send(Message::Started(index));
        let mut progress = |p: ferry_client::Progress| {
            let _ = sender.send(Message::Progress(index, p.done_bytes));
        };
        let result = download_one(&mut client, &root, &fetch, &mut progress).await;
        let lost = matches!(&result, Err(e) if e.exit_code() == exit::CONNECT);
        let _ = sender.send(Message::Done(index, fetch, Box::new(result)));
        if lost {
            return client;
        }
    }
}

async fn download_one(
    client: &mut Client,
    root: &Path,
    fetch: &Fetch,
    progress: ferry_client::ProgressFn<'_>,
) -> Result<Fetched, ClientError> {
    let relative =
        tree::local_relative(&fetch.relative, "").ok_or_else(|| ClientError::InvalidName {
            name: fetch.name.clone(),
            reason: format!(
                "would be written outside {}; not downloaded",
                root.display()
            ),
        })?;
    let dest = tree::prepare_dest(root, &relative)?;
    let transfer = client.download_file(&fetch.name, &dest, progress).await?;
    let attrs = tree::restore_attrs(&dest, fetch.modified, fetch.mode);
    Ok(Fetched {
        transfer,
        dest,
        attrs,
    })
}
