//! The refresh token file (`[connector] refresh_token_file`): read at start in place of the
//! environment variable, and replaced atomically when the CRM rotates the refresh token.
//!
//! With rotation, the old refresh token stops working as soon as the new one is issued, so the
//! new one must reach the disk before the run uses it: a crash after that point still leaves a
//! working token behind. The file contains the token and a newline, with mode 0600 on Unix.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::config::transport::TransportSettings;

/// Largest refresh token file read; real refresh tokens are a few hundred bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Saves a rotated refresh token; the type both connectors take.
pub type Sink = Arc<dyn Fn(&SecretString) -> Result<(), String> + Send + Sync + 'static>;

/// Reads the refresh token file of `settings`, or returns `None` when none is configured or
/// the file does not exist yet.
pub fn read(settings: &TransportSettings) -> Result<Option<SecretString>, String> {
    let Some(path) = &settings.refresh_token_file else {
        return Ok(None);
    };
    // A rotated token that cannot be saved is lost, and the old one no longer works, so the
    // file's folder is proven writable before any token request.
    check_writable(path)?;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(format!(
                "refresh token file {} cannot be read: {error}; give leadscore read access \
                 to it or remove [connector] refresh_token_file",
                path.display()
            ))
        }
    };
    warn_if_shared(path, &file);
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| {
            format!(
                "refresh token file {} cannot be read as text: {error}; write the refresh \
                 token into it as one line",
                path.display()
            )
        })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "refresh token file {} is larger than {MAX_FILE_BYTES} bytes, so it cannot hold a \
             refresh token; check [connector] refresh_token_file",
            path.display()
        ));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "refresh token file {} is empty; write the refresh token into it, or delete it so \
             that the environment variable is read",
            path.display()
        ));
    }
    tracing::debug!(path = %path.display(), "read the refresh token from its file");
    Ok(Some(SecretString::from(token.to_string())))
}

/// Logs a warning when other users may read the file.
#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = file.metadata() {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the refresh token file is readable by other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _file: &File) {}

/// Returns the folder the token file is replaced in.
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `path` is not a folder and that its folder exists and takes new files, by
/// creating and removing a probe file there.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let fix = "create the folder with write access for leadscore, or change [connector] refresh_token_file";
    if path.is_dir() {
        return Err(format!(
            "[connector] refresh_token_file {} is a folder; name a file inside it, for example {}",
            path.display(),
            path.join("refresh-token").display()
        ));
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(format!(
            "[connector] refresh_token_file {}: the folder {} does not exist; {fix}",
            path.display(),
            folder.display()
        ));
    }
    let probe = folder.join(format!(".leadscore-write-probe-{}", std::process::id()));
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map(drop);
    let _ = fs::remove_file(&probe);
    created.map_err(|error| {
        format!(
            "[connector] refresh_token_file {}: cannot create files in {} ({error}); a rotated \
             refresh token could not be saved; {fix}",
            path.display(),
            folder.display()
        )
    })
}

/// Replaces the file at `path` with `token`. It writes a temporary file with mode 0600 in the
/// same folder, flushes it to disk, renames it over `path` and flushes the folder. After a
/// crash the file therefore contains the old or the new token, never a partial one.
pub fn write(path: &Path, token: &SecretString) -> std::io::Result<()> {
    let folder = folder_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "refresh-token".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temporary = folder.join(format!(".{name}.{}-{nanos}.tmp", std::process::id()));

    let result = write_temporary(&temporary, token).and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result?;
    sync_folder(&folder)
}

fn write_temporary(temporary: &Path, token: &SecretString) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(temporary)?;
    file.write_all(token.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Flushes a folder's entries, so that a rename in it survives a power loss.
#[cfg(unix)]
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Returns the callback that saves a rotated refresh token to `path`, for the connectors.
pub fn sink(path: PathBuf) -> Sink {
    Arc::new(move |token: &SecretString| {
        write(&path, token).map_err(|error| {
            tracing::error!(
                path = %path.display(),
                %error,
                "saving the rotated refresh token failed"
            );
            format!("writing {} failed: {error}", path.display())
        })?;
        tracing::info!(path = %path.display(), "saved the rotated refresh token");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_refused_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nodir").join("token");
        let error = read(&settings(Some(missing))).unwrap_err();
        assert!(error.contains("does not exist"), "{error}");
        assert!(error.contains("refresh_token_file"), "{error}");

        let error = read(&settings(Some(dir.path().to_path_buf()))).unwrap_err();
        assert!(error.contains("is a folder"), "{error}");

        let fine = dir.path().join("token");
        assert!(read(&settings(Some(fine))).unwrap().is_none());
        // The probe file is gone again.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn settings(path: Option<PathBuf>) -> TransportSettings {
        TransportSettings {
            refresh_token_file: path,
            api_budget_share: 0.25,
            daily_api_allowance: None,
            allow_insecure_http: false,
        }
    }

    #[test]
    fn write_then_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write(&path, &SecretString::from("first-token")).unwrap();
        write(&path, &SecretString::from("second-token")).unwrap();
        let read_back = read(&settings(Some(path.clone()))).unwrap().unwrap();
        assert_eq!(read_back.expose_secret(), "second-token");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn written_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write(&path, &SecretString::from("value")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&settings(Some(dir.path().join("absent"))))
            .unwrap()
            .is_none());
        assert!(read(&settings(None)).unwrap().is_none());
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "  \n").unwrap();
        let error = read(&settings(Some(path))).unwrap_err();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn write_into_missing_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("token");
        assert!(write(&path, &SecretString::from("value")).is_err());
    }
}
