//! One daemon per store: the daemon locks a `daemon.lock` file in each store folder it uses
//! until it exits, so a second daemon on the same store stops at start with an error.
//!
//! The store itself is opened only while a job runs (so `leadscore status` and the reports can
//! read it between runs), which means the store's own lock cannot tell two daemons apart from a
//! daemon and a one-off command. This lock is taken only by `leadscore run`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::store::{Store, DAEMON_LOCK_FILE};

/// The locked `daemon.lock` files, by store folder.
#[derive(Default)]
pub(super) struct DaemonLocks {
    locked_files: BTreeMap<PathBuf, File>,
}

impl DaemonLocks {
    /// Locks the store of every connector of `config` that is not locked yet. On an error the
    /// locks taken before stay held and the message names the store and the fix.
    pub(super) fn take_all(&mut self, config: &Config) -> Result<(), String> {
        for connector in config.per_connector() {
            self.take(&connector.store_path)?;
        }
        Ok(())
    }

    /// Releases every lock.
    pub(super) fn release_all(&mut self) {
        self.locked_files.clear();
    }

    fn take(&mut self, store: &Path) -> Result<(), String> {
        if self.locked_files.contains_key(store) {
            return Ok(());
        }
        if !Store::exists(store) {
            // The lock file lives in the store folder, so a new store is created first.
            Store::open(store).map_err(|err| err.to_string())?;
        }
        Store::check_folder(store).map_err(|err| err.to_string())?;
        let path = store.join(DAEMON_LOCK_FILE);
        let file = open_lock_file(&path).map_err(|err| {
            format!(
                "cannot open the daemon lock {}: {err}; check that the daemon's user owns the store folder",
                path.display()
            )
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "another leadscore daemon is running on the store {} (it holds {}); stop it, or give this daemon its own [store] path",
                    store.display(),
                    path.display()
                ))
            }
            Err(TryLockError::Error(err)) => {
                return Err(format!("cannot lock {}: {err}", path.display()))
            }
        }
        self.locked_files.insert(store.to_path_buf(), file);
        Ok(())
    }
}

#[cfg(unix)]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}
