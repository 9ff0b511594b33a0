//! Owner-only permissions (0700 folders, 0600 files) for the store, which contains customer
//! data and the CRM's record ids. On other platforms these functions do nothing.

use std::path::Path;

/// Creates the folder `path` (not its parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Sets `dir` and every folder under it to 0700, and every file that group or others can
/// access to 0600. Returns how many entries changed.
///
/// A folder that other users could reach is logged as a warning, because its files may have
/// been read. A folder inside an owner-only folder is tightened without a warning: sled
/// created its subfolders (now in a migrated store's sled backup) with the process umask,
/// but no other user could open them.
#[cfg(unix)]
pub fn restrict_tree(dir: &Path) -> std::io::Result<usize> {
    let report = restrict_tree_report(dir)?;
    for (folder, mode) in &report.exposed {
        tracing::warn!(
            folder = %folder.display(),
            mode = format!("{mode:o}"),
            "the store folder was readable by other users; setting it to 0700"
        );
    }
    Ok(report.changed)
}

/// The changes made by [`restrict_tree_report`].
#[cfg(unix)]
#[derive(Debug, Default)]
struct TreeReport {
    /// Folders and files whose mode changed.
    changed: usize,
    /// Folders other users could list or enter, with their old mode: each folder above them
    /// in the tree also let group or others in.
    exposed: Vec<(std::path::PathBuf, u32)>,
}

#[cfg(unix)]
fn restrict_tree_report(dir: &Path) -> std::io::Result<TreeReport> {
    use std::os::unix::fs::PermissionsExt;

    let mut report = TreeReport::default();
    // Each pending folder carries whether every folder above it let group or others in.
    let mut pending = vec![(dir.to_path_buf(), true)];
    while let Some((folder, reachable_above)) = pending.pop() {
        let mode = std::fs::metadata(&folder)?.permissions().mode() & 0o777;
        let open = mode & 0o077 != 0;
        if mode != 0o700 {
            if open && reachable_above {
                report.exposed.push((folder.clone(), mode));
            }
            std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))?;
            report.changed += 1;
        }
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((entry.path(), reachable_above && open));
            } else if kind.is_file() {
                let path = entry.path();
                let mode = entry.metadata()?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                    report.changed += 1;
                }
            }
        }
    }
    Ok(report)
}

/// Does nothing where Unix permissions do not exist.
#[cfg(not(unix))]
pub fn restrict_tree(_dir: &Path) -> std::io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::store::Store;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Returns every path under `dir` with a mode other than 0700 (folders) or 0600 (files).
    fn loose_entries(dir: &Path) -> Vec<String> {
        let mut loose = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            if mode(&folder) != 0o700 {
                loose.push(format!("{} {:o}", folder.display(), mode(&folder)));
            }
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if mode(&path) != 0o600 {
                    loose.push(format!("{} {:o}", path.display(), mode(&path)));
                }
            }
        }
        loose
    }

    #[test]
    fn new_store_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = Store::open(&path).expect("store opens");
        store
            .set_pulled_fields("Account", &["Name".to_string()])
            .expect("write");
        drop(store);
        assert_eq!(mode(&path), 0o700);
        let files = std::fs::read_dir(&path).unwrap().count();
        assert!(files > 0, "the store created files");
        assert_eq!(loose_entries(&path), Vec::<String>::new());
    }

    #[test]
    fn loose_subfolder_of_private_folder_not_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let blobs = root.join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o755)).unwrap();

        let report = super::restrict_tree_report(&root).expect("tree restricted");
        assert_eq!(mode(&blobs), 0o700);
        assert_eq!(report.changed, 1);
        assert!(report.exposed.is_empty(), "{:?}", report.exposed);
    }

    #[test]
    fn loose_root_and_subfolder_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let blobs = root.join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o755)).unwrap();

        let report = super::restrict_tree_report(&root).expect("tree restricted");
        let mut exposed: Vec<_> = report
            .exposed
            .iter()
            .map(|(path, _)| path.clone())
            .collect();
        exposed.sort();
        assert_eq!(exposed, vec![root.clone(), blobs.clone()]);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&blobs), 0o700);
    }

    #[test]
    fn loose_store_tightened_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        drop(Store::open(&path).expect("store opens"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = path.join(crate::store::DB_FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(mode(&file), 0o644);

        let store = Store::open(&path).expect("store opens again");
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(loose_entries(&path), Vec::<String>::new());
        drop(store);
    }
}
