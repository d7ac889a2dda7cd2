//! Many files on one connection: uploads of a list of files, and listings below a prefix
//! that stream page by page.

use std::path::{Path, PathBuf};

pub use ferry_core::FileAttrs;

use crate::client::error::ClientError;
use ferry_core::wire::fits_put;

use crate::client::op::{
    begin_request, check_name, check_prefix, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn,
};
use crate::client::put_many::PutManyOp;
use crate::client::report::{FileEntry, Progress, TransferReport};
use crate::client::session::{Client, LIST_PAGE};
use crate::client::upload::{Source, UploadOp};

/// One file of [`Client::upload_many`]: read from `path`, stored as `name` with `attrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadItem {
    /// The local file.
    pub path: PathBuf,
    /// The name (path) on the server.
    pub name: String,
    /// Modification time and mode for the server to record.
    pub attrs: FileAttrs,
}

/// What [`Client::upload_many`] reports about each file (`index` into its items).
#[derive(Debug)]
pub enum ItemEvent<'a> {
    /// The file is being sent.
    Started {
        /// Index of the item.
        index: usize,
        /// Its size.
        size: u64,
    },
    /// Bytes of the file done so far.
    Progress {
        /// Index of the item.
        index: usize,
        /// Its progress.
        progress: Progress,
    },
    /// The file's outcome.
    Done {
        /// Index of the item.
        index: usize,
        /// Verified, or why not.
        result: &'a Result<TransferReport, ClientError>,
    },
}

/// Whether an error means the connection could not be kept up (the outer error of
/// [`Client::upload_many`]) rather than one file's own failure.
pub(crate) fn is_connection_error(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Interrupted { .. }
            | ClientError::Address { .. }
            | ClientError::Credentials(_)
            | ClientError::Protocol(_)
    )
}

impl Client {
    /// `upload_file` with attributes (modification time, mode) recorded by the server.
    pub async fn upload_file_with(
        &mut self,
        path: &Path,
        name: &str,
        attrs: FileAttrs,
        progress: ProgressFn<'_>,
    ) -> Result<TransferReport, ClientError> {
        let name = &check_name(name)?;
        let source = Source::<tokio::io::Empty>::open_file(path)?;
        let mut op = UploadOp::new(name, source, progress).with_attrs(attrs);
        self.run(&mut op).await
    }

    /// Uploads many files on this one connection: files that fit one chunk go as pipelined
    /// `Put`s (up to the window in flight), larger ones one at a time through the chunked
    /// transfer (with `OpenUploadWith`). Reconnects and resumes like every operation.
    /// Outer error: the connection could not be kept up; inner: each file's own outcome.
    pub async fn upload_many(
        &mut self,
        items: &[UploadItem],
        events: &mut (dyn FnMut(ItemEvent<'_>) + Send),
    ) -> Result<Vec<Result<TransferReport, ClientError>>, ClientError> {
        let mut results: Vec<Option<Result<TransferReport, ClientError>>> =
            (0..items.len()).map(|_| None).collect();
        let mut names = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let checked = check_name(&item.name).and_then(|name| {
                let meta =
                    std::fs::metadata(&item.path).map_err(|e| ClientError::io(&item.path, e))?;
                if !meta.is_file() {
                    let error =
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
                    return Err(ClientError::io(&item.path, error));
                }
                Ok((name, meta.len()))
            });
            match checked {
                Ok((name, size)) => {
                    names.push(name);
                    sizes.push(size);
                }
                Err(error) => {
                    let result = Err(error);
                    events(ItemEvent::Done {
                        index,
                        result: &result,
                    });
                    results[index] = Some(result);
                    names.push(String::new());
                    sizes.push(0);
                }
            }
        }
        if self.live.is_none() {
            self.live = Some(self.open_patiently().await?);
        }
        let chunk_size = self.negotiated().map_or(0, |(chunk, _)| chunk);
        let pending = (0..items.len()).filter(|&i| results[i].is_none());
        let (small, mut big): (Vec<usize>, Vec<usize>) =
            pending.partition(|&i| fits_put(names[i].len(), sizes[i], chunk_size));
        if !small.is_empty() {
            let mut op = PutManyOp::new(items, names.clone(), small, events);
            self.run(&mut op).await?;
            for (index, result) in op.results.into_iter().enumerate() {
                if result.is_some() {
                    results[index] = result;
                }
            }
            big.extend(op.too_big);
            big.sort_unstable();
        }
        for index in big {
            let item = &items[index];
            events(ItemEvent::Started {
                index,
                size: sizes[index],
            });
            let mut progress = |progress| events(ItemEvent::Progress { index, progress });
            let result = self
                .upload_file_with(&item.path, &names[index], item.attrs, &mut progress)
                .await;
            if let Err(error) = &result {
                if is_connection_error(error) {
                    return Err(result.unwrap_err());
                }
            }
            events(ItemEvent::Done {
                index,
                result: &result,
            });
            results[index] = Some(result);
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(ClientError::Protocol("no outcome".into()))))
            .collect())
    }

    /// Streams a listing page by page (bounded memory): `recursive` = every file below
    /// `prefix`; otherwise one level, folders included (`FileEntry.folder`). `prefix` is ""
    /// or a folder path (a missing trailing `/` is added).
    pub async fn list_tree(
        &mut self,
        prefix: &str,
        recursive: bool,
        page: &mut (dyn FnMut(Vec<FileEntry>) + Send),
    ) -> Result<(), ClientError> {
        let prefix = check_prefix(prefix)?;
        let mut op = ListTreeOp {
            prefix,
            recursive,
            cursor: String::new(),
            pages: 0,
            page,
        };
        self.run(&mut op).await
    }
}

/// Lists below a prefix, one page per request, handing each page on as it arrives.
struct ListTreeOp<'p> {
    prefix: String,
    recursive: bool,
    /// The last name handed on: the next page starts after it (also after a reconnect).
    cursor: String,
    pages: u64,
    page: &'p mut (dyn FnMut(Vec<FileEntry>) + Send),
}

impl ListTreeOp<'_> {
    fn request(&self, conn: &mut Conn) -> Result<(), Interrupt> {
        let request = conn.list_tree(&self.prefix, &self.cursor, LIST_PAGE, self.recursive);
        begin_request(request, &self.prefix)
    }
}

impl Operation for ListTreeOp<'_> {
    type Output = ();

    fn kind(&self) -> OpKind {
        OpKind::List
    }

    fn name(&self) -> &str {
        &self.prefix
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        self.request(conn)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        _now: u64,
    ) -> Result<Option<()>, Interrupt> {
        let Ev::TreePage { entries, more } = event else {
            return Ok(None);
        };
        if let Some(last) = entries.last() {
            if last.name <= self.cursor && !self.cursor.is_empty() {
                return Err(ClientError::Protocol("the listing went backwards".into()).into());
            }
            if !last.name.starts_with(&self.prefix) {
                return Err(ClientError::Protocol(format!(
                    "the listing of {:?} holds {:?}",
                    self.prefix, last.name
                ))
                .into());
            }
            self.cursor = last.name.clone();
        } else if more {
            return Err(
                ClientError::Protocol("an empty list page with more to come".into()).into(),
            );
        }
        self.pages += 1;
        if !entries.is_empty() {
            (self.page)(entries);
        }
        if more {
            self.request(conn)?;
            return Ok(None);
        }
        Ok(Some(()))
    }

    fn progress_marker(&self) -> u64 {
        self.pages
    }
}
