//! The calls tree commands make to the server, over one connection: listing a folder page
//! by page, uploading many files, re-recording attributes. The one place that knows the
//! client library's tree API.

use std::path::Path;

use ferry_client::{Client, ClientError, FileAttrs, ItemEvent, TransferReport, UploadItem};

use crate::sync::RemoteFile;
use crate::tree::{list_prefix, LocalFile};

/// A listed file or folder (`ferry list --json` prints these).
pub(crate) type Entry = ferry_client::FileEntry;

/// One level below `folder` (folders included), or with `recursive` every file, page by
/// page as the server sends them.
pub(crate) async fn list(
    client: &mut Client,
    folder: &str,
    recursive: bool,
    page: &mut (dyn FnMut(Vec<Entry>) + Send),
) -> Result<(), ClientError> {
    client
        .list_tree(&list_prefix(folder), recursive, page)
        .await
}

/// Every file below `folder` (recursively), page by page.
pub(crate) async fn files_below(
    client: &mut Client,
    folder: &str,
    page: &mut (dyn FnMut(Vec<Entry>) + Send),
) -> Result<(), ClientError> {
    list(client, folder, true, page).await
}

/// The server's files below `folder`, keyed by their names relative to it.
pub(crate) async fn remote_tree(
    client: &mut Client,
    folder: &str,
) -> Result<std::collections::BTreeMap<String, RemoteFile>, ClientError> {
    let prefix = list_prefix(folder);
    let mut files = std::collections::BTreeMap::new();
    files_below(client, folder, &mut |page| {
        for entry in page {
            if entry.folder {
                continue;
            }
            let Some(relative) = entry.name.strip_prefix(&prefix) else {
                continue;
            };
            let file = RemoteFile {
                relative: relative.to_string(),
                size: entry.size,
                modified: entry.modified,
                mode: entry.mode,
                digest: entry.digest,
                chunk_size: entry.chunk_size,
            };
            files.insert(file.relative.clone(), file);
        }
    })
    .await?;
    Ok(files)
}

/// A local file's upload under `name`.
pub(crate) fn upload_item(file: &LocalFile, name: String) -> UploadItem {
    UploadItem {
        path: file.path.clone(),
        name,
        attrs: file.attrs,
    }
}

/// What an upload of many files reports, file by file, as they complete.
pub(crate) enum Event<'a> {
    Started(usize),
    Progress(usize, u64),
    Done(usize, &'a Result<TransferReport, ClientError>),
}

/// Uploads `items` on this connection (small files pipelined). Outer error: the connection
/// could not be kept up.
pub(crate) async fn upload_many(
    client: &mut Client,
    items: &[UploadItem],
    events: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<Result<TransferReport, ClientError>>, ClientError> {
    client
        .upload_many(items, &mut |event| match event {
            ItemEvent::Started { index, .. } => events(Event::Started(index)),
            ItemEvent::Progress { index, progress } => {
                events(Event::Progress(index, progress.done_bytes))
            }
            ItemEvent::Done { index, result } => events(Event::Done(index, result)),
        })
        .await
}

/// Uploads `path` as `name` with its attributes (an unchanged file sends no data).
pub(crate) async fn upload_with(
    client: &mut Client,
    path: &Path,
    name: &str,
    attrs: FileAttrs,
) -> Result<TransferReport, ClientError> {
    client
        .upload_file_with(path, name, attrs, &mut |_| {})
        .await
}
