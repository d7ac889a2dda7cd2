//! Sorted name indexes for listing: one directory scan per identity builds a `BTreeSet`
//! of its committed names, which commits and deletes keep current, so that a page of a
//! listing costs a range of the set (and the metadata of the page's files), never a read
//! of the whole directory. Indexes idle for [`IDLE`] are dropped, and all of them together
//! hold at most [`BUDGET`] bytes (least recently used dropped first); an identity whose
//! names alone exceed the budget is listed by a scan that keeps one page.
//!
//! Sorted names keep prefixes cheap: the names under a prefix are one range of the set.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;
use crate::names::validate_name;
use crate::storage::error::{io_err, StorageError};

/// Indexes unused for this long are dropped.
pub(super) const IDLE: Duration = Duration::from_secs(300);
/// Bytes all indexes may take together (names plus an estimate of the set's overhead).
pub(super) const BUDGET: usize = 64 << 20;
/// Estimated bytes a `BTreeSet<String>` spends on an entry besides the name.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug)]
struct Index {
    names: BTreeSet<String>,
    bytes: usize,
    used: Instant,
}

impl Index {
    fn insert(&mut self, name: &str) -> isize {
        if self.names.insert(name.to_string()) {
            self.bytes += cost(name);
            cost(name) as isize
        } else {
            0
        }
    }

    fn remove(&mut self, name: &str) -> isize {
        if self.names.remove(name) {
            self.bytes -= cost(name);
            -(cost(name) as isize)
        } else {
            0
        }
    }
}

fn cost(name: &str) -> usize {
    name.len() + ENTRY_OVERHEAD
}

#[derive(Debug, Default)]
struct Indexes {
    by_client: HashMap<String, Index>,
    bytes: usize,
}

/// The name indexes of all identities.
#[derive(Debug, Default)]
pub(super) struct NameIndexes {
    inner: Mutex<Indexes>,
}

/// Names in `set` that start with `prefix` and sort after `start_after`, at most `limit`.
fn page_of<'a>(
    names: impl IntoIterator<Item = &'a String>,
    prefix: &str,
    limit: usize,
) -> Vec<String> {
    names
        .into_iter()
        .take_while(|name| name.starts_with(prefix))
        .take(limit)
        .cloned()
        .collect()
}

fn lower_bound<'a>(prefix: &'a str, start_after: &'a str) -> Bound<&'a str> {
    if start_after >= prefix {
        Bound::Excluded(start_after)
    } else {
        Bound::Included(prefix)
    }
}

impl NameIndexes {
    /// A page of `client`'s names, from its index if it has one; `None` if it has none
    /// (build one with [`NameIndexes::build`]).
    pub(super) fn page(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Option<Vec<String>> {
        let mut indexes = lock(&self.inner);
        indexes.drop_idle();
        let index = indexes.by_client.get_mut(client)?;
        index.used = Instant::now();
        let range = index
            .names
            .range::<str, _>((lower_bound(prefix, start_after), Bound::Unbounded));
        Some(page_of(range, prefix, limit))
    }

    /// Scans `files` for `client`'s names, keeps the index if it fits the budget, and
    /// returns the page. The caller holds the identity's lock, so no commit or delete
    /// runs meanwhile.
    pub(super) fn build(
        &self,
        client: &str,
        files: &Path,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        if let Some(page) = self.page(client, prefix, start_after, limit) {
            return Ok(page);
        }
        let names = scan(files)?;
        let bytes = names.iter().map(|name| cost(name)).sum();
        let range = names.range::<str, _>((lower_bound(prefix, start_after), Bound::Unbounded));
        let page = page_of(range, prefix, limit);
        if bytes <= BUDGET {
            let mut indexes = lock(&self.inner);
            indexes.make_room(bytes);
            indexes.bytes += bytes;
            let index = Index {
                names,
                bytes,
                used: Instant::now(),
            };
            indexes.by_client.insert(client.to_string(), index);
        }
        Ok(page)
    }

    /// `name` was committed (call under the identity's lock).
    pub(super) fn inserted(&self, client: &str, name: &str) {
        lock(&self.inner).update(client, |index| index.insert(name));
    }

    /// `name` was deleted (call under the identity's lock).
    pub(super) fn removed(&self, client: &str, name: &str) {
        lock(&self.inner).update(client, |index| index.remove(name));
    }

    /// Drops `client`'s index, so that the next listing scans again (changes made by hand).
    pub(super) fn forget(&self, client: &str) {
        let mut indexes = lock(&self.inner);
        if let Some(index) = indexes.by_client.remove(client) {
            indexes.bytes -= index.bytes;
        }
    }

    #[cfg(test)]
    pub(super) fn is_indexed(&self, client: &str) -> bool {
        lock(&self.inner).by_client.contains_key(client)
    }
}

impl Indexes {
    fn update(&mut self, client: &str, change: impl FnOnce(&mut Index) -> isize) {
        if let Some(index) = self.by_client.get_mut(client) {
            let delta = change(index);
            self.bytes = self.bytes.saturating_add_signed(delta);
        }
        if self.bytes > BUDGET {
            self.make_room(0);
        }
    }

    fn drop_idle(&mut self) {
        let now = Instant::now();
        let mut freed = 0;
        self.by_client.retain(|_, index| {
            let keep = now.duration_since(index.used) < IDLE;
            if !keep {
                freed += index.bytes;
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Drops the least recently used indexes until `bytes` more fit the budget.
    fn make_room(&mut self, bytes: usize) {
        while self.bytes + bytes > BUDGET {
            let Some(oldest) = self
                .by_client
                .iter()
                .min_by_key(|(_, index)| index.used)
                .map(|(client, _)| client.clone())
            else {
                return;
            };
            if let Some(index) = self.by_client.remove(&oldest) {
                self.bytes -= index.bytes;
            }
        }
    }
}

/// The names in `files` a client could have stored (no stray files, no temporaries).
fn scan(files: &Path) -> Result<BTreeSet<String>, StorageError> {
    let context = || format!("listing {}", files.display());
    let entries = match fs::read_dir(files) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io_err(context())(e)),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(io_err(context()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if validate_name(&name).is_ok_and(|n| n == name) {
            names.insert(name);
        }
    }
    Ok(names)
}
