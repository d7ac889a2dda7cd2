//! Sorted name indexes for listing: one walk of `files/` per identity (see `tree::walk`)
//! builds a `BTreeSet` of its committed names (full paths), which commits and deletes keep current, so that a page of a
//! listing costs a range of the set (and the metadata of the page's files), never a read
//! of the whole directory. Indexes idle for [`IDLE`] are dropped, and all of them together
//! hold at most [`BUDGET`] bytes (least recently used dropped first); an identity whose
//! names alone exceed the budget is listed by a scan that keeps one page.
//!
//! Sorted names keep prefixes cheap: the names under a prefix are one range of the set, and
//! so are the names in a folder, which one level of a tree listing skips with one lookup.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

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

/// Names in `names` that start with `prefix` and sort after `start_after`, at most `limit`.
pub(super) fn page_of(
    names: &BTreeSet<String>,
    prefix: &str,
    start_after: &str,
    limit: usize,
) -> Vec<String> {
    names
        .range::<str, _>((lower_bound(prefix, start_after), Bound::Unbounded))
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

/// An entry of one level of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TreeName {
    /// A committed file's name.
    File(String),
    /// A folder: the full prefix, ending in `/`.
    Folder(String),
}

/// The first string after every name in `folder` (which ends in `/`): `a/b/` gives `a/b0`,
/// as `0` follows `/`.
fn past_folder(folder: &str) -> String {
    format!("{}0", &folder[..folder.len() - 1])
}

/// [`Store::list_tree`](crate::storage::Store::list_tree) over sorted names: the files
/// directly below `prefix` and each folder once (or, `recursive`, every file below it), after
/// `start_after` (past the whole folder if it ends in `/`), at most `limit`. Costs a range
/// lookup per folder, never a walk through a folder's names.
pub(super) fn tree_page_of(
    names: &BTreeSet<String>,
    prefix: &str,
    start_after: &str,
    limit: usize,
    recursive: bool,
) -> Vec<TreeName> {
    let mut page = Vec::new();
    // (bound, inclusive)
    let mut from = match start_after.strip_suffix('/') {
        Some(_) => (past_folder(start_after), true),
        None => (start_after.to_string(), false),
    };
    if from.0.as_str() < prefix {
        from = (prefix.to_string(), true);
    }
    'pages: while page.len() < limit {
        let lower = match &from {
            (bound, true) => Bound::Included(bound.as_str()),
            (bound, false) => Bound::Excluded(bound.as_str()),
        };
        for name in names.range::<str, _>((lower, Bound::Unbounded)) {
            if !name.starts_with(prefix) {
                break 'pages;
            }
            let rest = &name[prefix.len()..];
            match rest.find('/').filter(|_| !recursive) {
                None => {
                    page.push(TreeName::File(name.clone()));
                    if page.len() >= limit {
                        break 'pages;
                    }
                }
                Some(slash) => {
                    let folder = format!("{prefix}{}", &rest[..=slash]);
                    from = (past_folder(&folder), true);
                    page.push(TreeName::Folder(folder));
                    continue 'pages;
                }
            }
        }
        break;
    }
    page
}

impl NameIndexes {
    /// Reads `client`'s index, if it has one (else build one with [`NameIndexes::install`]).
    pub(super) fn with<T>(
        &self,
        client: &str,
        read: impl FnOnce(&BTreeSet<String>) -> T,
    ) -> Option<T> {
        let mut indexes = lock(&self.inner);
        indexes.drop_idle();
        let index = indexes.by_client.get_mut(client)?;
        index.used = Instant::now();
        Some(read(&index.names))
    }

    /// Keeps `names`, the result of a walk of `client`'s `files/`, as its index if they fit
    /// the budget. The caller holds the identity's lock, so no commit or delete ran since
    /// the walk.
    pub(super) fn install(&self, client: &str, names: BTreeSet<String>) {
        let bytes = names.iter().map(|name| cost(name)).sum();
        let mut indexes = lock(&self.inner);
        if let Some(old) = indexes.by_client.remove(client) {
            indexes.bytes -= old.bytes;
        }
        if bytes <= BUDGET {
            indexes.make_room(bytes);
            indexes.bytes += bytes;
            let index = Index {
                names,
                bytes,
                used: Instant::now(),
            };
            indexes.by_client.insert(client.to_string(), index);
        }
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
