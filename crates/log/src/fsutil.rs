//! Small filesystem helpers with the durability steps spelled out. Public
//! so the server writes its own files (the token store, the callback
//! secret) the same way.

use crate::LogError;
use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file's permission bits (`0o600`, …), as secrets are checked with.
pub fn permission_bits(path: &Path) -> Result<u32, LogError> {
    let meta = std::fs::metadata(path).map_err(|e| LogError::io(path, e))?;
    Ok(meta.permissions().mode() & 0o777)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

pub fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(path, e)),
    }
}

/// Replaces `path` atomically: write a temporary file, fdatasync it, rename
/// it over `path`, then sync the directory. After a crash the file holds
/// either the old or the new contents, never a mix. The file gets the
/// process's default permissions (0o666 less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    write_atomic_inner(path, bytes, None)
}

/// [`write_atomic`] for a file that must have exactly the permission bits
/// `mode` (0o600 for a secret), whatever the umask. The temporary file has
/// `mode` before any byte is written to it, so the contents are never
/// readable with looser permissions, not even for a moment.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LogError> {
    write_atomic_inner(path, bytes, Some(mode))
}

fn write_atomic_inner(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), LogError> {
    // The whole name plus `.tmp` (not the extension swapped), so two files
    // differing only in extension never share a temporary file; the log's
    // recovery removes leftovers by their `.tmp` ending.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if let Some(mode) = mode {
        options.mode(mode);
    }
    let file = options.open(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    if let Some(mode) = mode {
        // `mode` above applies only when the file is created (and is cut by
        // the umask); a temporary file left by a crash keeps its old bits.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| LogError::io(&tmp, e))?;
    }
    file.write_all_at(bytes, 0)
        .map_err(|e| LogError::io(&tmp, e))?;
    file.sync_data().map_err(|e| LogError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        permission_bits(path).unwrap()
    }

    #[test]
    fn with_mode_sets_exact_bits_and_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.txt");
        // A leftover temporary file from a crash, readable by everyone.
        let tmp = dir.path().join("secret.txt.tmp");
        std::fs::write(&tmp, b"stale").unwrap();
        std::fs::set_permissions(&tmp, Permissions::from_mode(0o644)).unwrap();

        write_atomic_with_mode(&path, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
        assert!(!tmp.exists());

        write_atomic_with_mode(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn plain_write_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("start.offset");
        write_atomic(&path, b"a longer first version").unwrap();
        write_atomic(&path, b"short").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
