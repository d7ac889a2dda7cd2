//! Group commit for a directory's fsync: concurrent commits and deletes share one.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use super::lock;
use crate::storage::error::{io_err, StorageError};

/// Group commit for one directory: every caller needs an fsync that started after its
/// change (a rename, a removal); callers that arrive while one runs share the next.
#[derive(Debug, Default)]
pub(super) struct DirSync {
    state: Mutex<DirSyncState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct DirSyncState {
    /// Fsyncs started and finished, counted; one runs at a time.
    started: u64,
    finished: u64,
    running: bool,
    /// The latest failed fsync's number and error.
    failure: Option<(u64, io::ErrorKind, String)>,
}

impl DirSync {
    pub(super) fn sync(&self, dir: &Path) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        let needed = state.started + 1;
        loop {
            if state.finished >= needed {
                return match &state.failure {
                    Some((number, kind, error)) if *number >= needed => {
                        Err(io_err(format!("syncing {}", dir.display()))(
                            io::Error::new(*kind, error.clone()),
                        ))
                    }
                    _ => Ok(()),
                };
            }
            if state.running {
                state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.running = true;
            state.started += 1;
            let number = state.started;
            drop(state);
            let result = File::open(dir).and_then(|d| d.sync_all());
            state = lock(&self.state);
            state.running = false;
            state.finished = number;
            if let Err(e) = result {
                state.failure = Some((number, e.kind(), e.to_string()));
            }
            self.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::wire::ErrorCode;
    use std::sync::Arc;

    #[test]
    fn concurrent_directory_syncs_are_shared_and_failures_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::default());
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (sync, dir) = (sync.clone(), tmp.path().to_path_buf());
                std::thread::spawn(move || (0..25).for_each(|_| sync.sync(&dir).unwrap()))
            })
            .collect();
        callers.into_iter().for_each(|c| c.join().unwrap());
        let state = lock(&sync.state);
        assert!(state.started >= 1 && state.started <= 200, "{state:?}");
        assert_eq!((state.started, state.running), (state.finished, false));
        drop(state);
        let error = sync.sync(&tmp.path().join("gone")).unwrap_err();
        assert_eq!(error.code(), ErrorCode::STORAGE);
        assert!(error.to_string().contains("syncing"), "{error}");
        // A failure is reported to the callers it covered, not to later ones.
        sync.sync(tmp.path()).unwrap();
    }
}
