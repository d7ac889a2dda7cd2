//! Listings, page by page: of every file (`List`) and of a tree below a prefix (`ListTree`).

use ferry_core::wire::{list_page_capacity, ErrorCode, ListEntry, TreeEntry};
use ferry_core::Digest;

use super::{Conn, Session, LIST_PAGE_MAX};
use crate::names::validate_name;
use crate::storage::ListItem;

/// A listing item as the wire carries it.
fn tree_entry(item: &ListItem) -> TreeEntry<'_> {
    match item {
        ListItem::File(meta) => TreeEntry {
            name: &meta.name,
            size: meta.size,
            modified: meta.modified,
            mode: meta.mode.unwrap_or(0),
            chunk_size: meta.chunk_size,
            digest: meta.digest_bytes(),
            folder: false,
        },
        ListItem::Folder(name) => TreeEntry {
            name,
            size: 0,
            modified: 0,
            mode: 0,
            chunk_size: 0,
            digest: Digest::default(),
            folder: true,
        },
    }
}

impl Session {
    pub(super) async fn on_list(&mut self, conn: &mut Conn, start_after: String, limit: u16) {
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let chunk_size = self.chunk_size(conn);
        // A page is what fits one frame, at most LIST_PAGE_MAX: no more metadata is read.
        let page = usize::from(limit)
            .min(LIST_PAGE_MAX)
            .min(list_page_capacity(chunk_size as usize));
        let listed = tokio::task::spawn_blocking(move || {
            // One more than the page: it tells whether more entries follow.
            storage.list(&client, "", &start_after, page + 1, chunk_size)
        })
        .await;
        match listed {
            Ok(Ok(metas)) => {
                let entries = metas.iter().map(|meta| ListEntry {
                    name: &meta.name,
                    size: meta.size,
                    modified: meta.modified,
                    chunk_size: meta.chunk_size,
                    digest: meta.digest_bytes(),
                });
                let page_max = u16::try_from(page).unwrap_or(u16::MAX);
                if let Err(e) = conn.respond_list_capped(entries, page_max) {
                    tracing::warn!("{}: respond_list: {e}", self.peer);
                }
            }
            Ok(Err(e)) => {
                tracing::error!("listing for {}: {e}", self.identity.name);
                self.refuse(conn, "list", "", e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("listing: {e}");
                self.refuse(conn, "list", "", ErrorCode::INTERNAL, "internal error");
            }
        }
    }

    pub(super) async fn on_list_tree(
        &mut self,
        conn: &mut Conn,
        prefix: String,
        start_after: String,
        limit: u16,
        recursive: bool,
    ) {
        // "" or a folder: a valid name followed by '/'.
        let prefix = match prefix.strip_suffix('/') {
            None if prefix.is_empty() => prefix,
            Some(folder) => match validate_name(folder) {
                Ok(folder) => format!("{folder}/"),
                Err(e) => {
                    let text = e.to_string();
                    return self.refuse(conn, "list", &prefix, ErrorCode::INVALID_NAME, &text);
                }
            },
            None => {
                let text = "a listing prefix is empty or ends in '/'";
                return self.refuse(conn, "list", &prefix, ErrorCode::INVALID_NAME, text);
            }
        };
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let chunk_size = self.chunk_size(conn);
        // A page is what fits one frame, at most LIST_PAGE_MAX: no more metadata is read.
        let page = usize::from(limit)
            .min(LIST_PAGE_MAX)
            .min(list_page_capacity(chunk_size as usize));
        let task_prefix = prefix.clone();
        let listed = tokio::task::spawn_blocking(move || {
            // One more than the page: it tells whether more entries follow.
            storage.list_tree(
                &client,
                &task_prefix,
                &start_after,
                page + 1,
                recursive,
                chunk_size,
            )
        })
        .await;
        match listed {
            Ok(Ok(items)) => {
                let page_max = u16::try_from(page).unwrap_or(u16::MAX);
                if let Err(e) = conn.respond_list_tree(items.iter().map(tree_entry), page_max) {
                    tracing::warn!("{}: respond_list_tree: {e}", self.peer);
                }
            }
            Ok(Err(e)) => {
                tracing::error!("listing {prefix:?} for {}: {e}", self.identity.name);
                self.refuse(conn, "list", &prefix, e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("listing {prefix:?}: {e}");
                self.refuse(conn, "list", &prefix, ErrorCode::INTERNAL, "internal error");
            }
        }
    }
}
