//! The calls tree commands make to the server, over one connection: listing a folder page
//! by page, uploading many files, re-recording attributes. The one place that knows the
//! client library's tree API.

use std::path::{Path, PathBuf};

use ferry_client::{Client, ClientError, FileEntry, TransferReport};
use ferry_core::FileAttrs;
use serde::Serialize;

use crate::sync::RemoteFile;
use crate::tree::{list_prefix, LocalFile};

/// A listed file or folder (`ferry list --json` prints these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) modified: u64,
    pub(crate) digest: String,
    pub(crate) chunk_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<u32>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) folder: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl From<FileEntry> for Entry {
    fn from(entry: FileEntry) -> Self {
        Entry {
            name: entry.name,
            size: entry.size,
            modified: entry.modified,
            digest: entry.digest,
            chunk_size: entry.chunk_size,
            mode: None,
            folder: false,
        }
    }
}

/// One level below `prefix` (folders included), or with `recursive` every file, page by
/// page.
pub(crate) async fn list(
    client: &mut Client,
    folder: &str,
    recursive: bool,
    page: &mut (dyn FnMut(Vec<Entry>) + Send),
) -> Result<(), ClientError> {
    let prefix = list_prefix(folder);
    let mut entries = Vec::new();
    let mut last_folder = String::new();
    for entry in client.list().await? {
        let Some(rest) = entry.name.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((sub, _)) if !recursive => {
                let name = format!("{prefix}{sub}/");
                if name != last_folder {
                    last_folder = name.clone();
                    entries.push(Entry {
                        name,
                        size: 0,
                        modified: 0,
                        digest: String::new(),
                        chunk_size: 0,
                        mode: None,
                        folder: true,
                    });
                }
            }
            _ => entries.push(entry.into()),
        }
    }
    page(entries);
    Ok(())
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

/// A file to upload: its path, its server name, its attributes.
pub(crate) struct Item {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) attrs: FileAttrs,
}

/// A local file's upload under `name`.
pub(crate) fn upload_item(file: &LocalFile, name: String) -> Item {
    Item {
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

/// Uploads `items` on this connection. Outer error: the connection could not be kept up.
pub(crate) async fn upload_many(
    client: &mut Client,
    items: &[Item],
    events: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<Result<TransferReport, ClientError>>, ClientError> {
    let mut results = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        events(Event::Started(index));
        let result = client
            .upload_file(&item.path, &item.name, &mut |p| {
                events(Event::Progress(index, p.done_bytes))
            })
            .await;
        events(Event::Done(index, &result));
        if let Err(ClientError::Connect { .. }) = &result {
            return result.map(|_| Vec::new());
        }
        results.push(result);
    }
    Ok(results)
}

/// Uploads `path` as `name` with its attributes (an unchanged file sends no data).
pub(crate) async fn upload_with(
    client: &mut Client,
    path: &Path,
    name: &str,
    _attrs: FileAttrs,
) -> Result<TransferReport, ClientError> {
    client.upload_file(path, name, &mut |_| {}).await
}
