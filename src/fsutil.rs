//! Local file writes that never leave a half-written file behind and cannot be bent into
//! writing something other than a regular file.
//!
//! The rules, checked by [`plan_write`] and [`write_atomic`] alike:
//! - only regular files are written: a device (`/dev/null`), FIFO, socket or directory at
//!   the path is refused, never replaced;
//! - a symbolic link is **followed** when it ends at a regular file: the target is rewritten
//!   atomically in the target's own directory and the link is kept (dotfile managers link
//!   `~/.kube/config` and the like; replacing the link would silently fork the file). A link
//!   to nothing is refused, so a planted link cannot make k3sx create a file elsewhere;
//! - the mode is permission bits only (`0o000`–`0o777`): setuid, setgid and sticky are refused;
//! - the parent directory must exist: a missing one is named, not created.
//!
//! A file replaced by rename belongs to whoever writes it; the previous owner and group are
//! kept when the writer may set them (root), as editors do.

use std::fmt;
use std::fs::{self, Metadata};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a local file was not (or would not be) written.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Something other than a regular file is at the path (or at the end of its symlink).
    NotRegular { path: PathBuf, what: String },
    /// The path is a symbolic link whose target does not exist.
    DanglingSymlink { path: PathBuf, target: PathBuf },
    /// The directory that would hold the file does not exist.
    MissingParent { path: PathBuf, dir: PathBuf },
    /// What should be the file's directory is not a directory.
    ParentNotDirectory { path: PathBuf, dir: PathBuf },
    /// The mode has bits other than the permission bits (setuid, setgid, sticky, file type).
    BadMode { path: PathBuf, mode: u32 },
    /// The operating system refused (permissions, disk full, ...).
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// A stable name for scripts and exit-code mapping.
    pub fn kind(&self) -> &'static str {
        match self {
            FsError::NotRegular { .. } => "not_regular",
            FsError::DanglingSymlink { .. } => "dangling_symlink",
            FsError::MissingParent { .. } => "missing_parent",
            FsError::ParentNotDirectory { .. } => "parent_not_directory",
            FsError::BadMode { .. } => "bad_mode",
            FsError::Io { .. } => "io",
        }
    }

    /// The path that was to be written, as the caller gave it.
    pub fn path(&self) -> &Path {
        match self {
            FsError::NotRegular { path, .. }
            | FsError::DanglingSymlink { path, .. }
            | FsError::MissingParent { path, .. }
            | FsError::ParentNotDirectory { path, .. }
            | FsError::BadMode { path, .. }
            | FsError::Io { path, .. } => path,
        }
    }

    /// What went wrong and what to do, without the path.
    pub fn reason(&self) -> String {
        match self {
            FsError::NotRegular { what, .. } => format!("is {what}; only regular files are written"),
            FsError::DanglingSymlink { target, .. } => format!(
                "is a symbolic link to {}, which does not exist; create the target or remove the link",
                target.display()
            ),
            FsError::MissingParent { dir, .. } => {
                format!("directory {} does not exist; create it first", dir.display())
            }
            FsError::ParentNotDirectory { dir, .. } => format!("{} is not a directory", dir.display()),
            FsError::BadMode { mode, .. } => format!(
                "mode {mode:#o} is not a permission mode (0o000 to 0o777; setuid, setgid and sticky bits are refused)"
            ),
            FsError::Io { source, .. } => source.to_string(),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.reason())
    }
}

impl From<FsError> for crate::error::Error {
    fn from(e: FsError) -> Self {
        crate::error::Error::Io { path: e.path().to_path_buf(), message: e.reason() }
    }
}

/// What a write did, or (from [`plan_write`]) would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// There was no file.
    pub created: bool,
    /// The file existed with other content.
    pub content_changed: bool,
    /// The file existed with another mode.
    pub mode_changed: bool,
}

impl WriteOutcome {
    /// False when the file already had this content and mode: nothing was (or would be) done.
    pub fn changed(&self) -> bool {
        self.created || self.content_changed || self.mode_changed
    }
}

/// Checks everything [`write_atomic`] would check and says what it would do, writing nothing
/// (for dry runs).
///
/// # Errors
/// As [`write_atomic`], except failures of the write itself.
pub fn plan_write(path: &Path, bytes: &[u8], mode: u32) -> Result<WriteOutcome, FsError> {
    Ok(check(path, mode)?.outcome(bytes, mode))
}

/// Writes `bytes` to the regular file at `path` with exactly `mode` (e.g. `0o600` for a
/// secret), atomically: a temp file in the same directory, the mode set before any content
/// lands (so a secret is never readable by others), fsync, rename. An existing file with the
/// same content and mode is left alone; with only another mode it is `chmod`ed.
/// See the module docs for what is refused.
///
/// # Errors
/// [`FsError::NotRegular`], [`FsError::DanglingSymlink`], [`FsError::MissingParent`],
/// [`FsError::ParentNotDirectory`], [`FsError::BadMode`], or [`FsError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<WriteOutcome, FsError> {
    let target = check(path, mode)?;
    let outcome = target.outcome(bytes, mode);
    let io = |source| FsError::Io { path: path.to_path_buf(), source };
    if !outcome.changed() {
        return Ok(outcome);
    }
    if !outcome.created && !outcome.content_changed {
        fs::set_permissions(&target.path, fs::Permissions::from_mode(mode)).map_err(io)?;
        return Ok(outcome);
    }
    let dir = parent_dir(&target.path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".k3sx-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io)?;
    // The umask may have narrowed the mode at creation; set it exactly.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(io)?;
    if let Some(old) = &target.existing {
        // Only root may give a file away; anyone else's rewrite is theirs, as with any editor.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
    }
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&target.path).map_err(|e| io(e.error))?;
    // The rename is durable once the directory is; a failure here loses nothing already written.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(outcome)
}

/// The file that would really be written, checked.
struct Target {
    /// `path`, or where its symlink leads.
    path: PathBuf,
    /// The regular file there now.
    existing: Option<Metadata>,
}

impl Target {
    fn outcome(&self, bytes: &[u8], mode: u32) -> WriteOutcome {
        match &self.existing {
            None => WriteOutcome { created: true, content_changed: false, mode_changed: false },
            Some(meta) => WriteOutcome {
                created: false,
                // Unreadable counts as different: the write then says why it cannot.
                content_changed: meta.len() != bytes.len() as u64
                    || !fs::read(&self.path).is_ok_and(|old| old == bytes),
                mode_changed: meta.permissions().mode() & 0o7777 != mode,
            },
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn check(path: &Path, mode: u32) -> Result<Target, FsError> {
    let io = |source| FsError::Io { path: path.to_path_buf(), source };
    if mode & !0o777 != 0 {
        return Err(FsError::BadMode { path: path.to_path_buf(), mode });
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let real = match fs::canonicalize(path) {
                Ok(real) => real,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let target = fs::read_link(path).map_err(io)?;
                    return Err(FsError::DanglingSymlink { path: path.to_path_buf(), target });
                }
                Err(e) => return Err(io(e)),
            };
            let meta = fs::metadata(&real).map_err(io)?;
            if let Some(what) = not_regular(&meta) {
                let what = format!("a symbolic link to {}, {what}", real.display());
                return Err(FsError::NotRegular { path: path.to_path_buf(), what });
            }
            Ok(Target { path: real, existing: Some(meta) })
        }
        Ok(meta) => match not_regular(&meta) {
            Some(what) => Err(FsError::NotRegular { path: path.to_path_buf(), what: what.to_string() }),
            None => Ok(Target { path: path.to_path_buf(), existing: Some(meta) }),
        },
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            let dir = parent_dir(path).to_path_buf();
            match fs::metadata(&dir) {
                Ok(d) if d.is_dir() => Ok(Target { path: path.to_path_buf(), existing: None }),
                Ok(_) => Err(FsError::ParentNotDirectory { path: path.to_path_buf(), dir }),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    Err(FsError::MissingParent { path: path.to_path_buf(), dir })
                }
                Err(e) if e.kind() == ErrorKind::NotADirectory => {
                    Err(FsError::ParentNotDirectory { path: path.to_path_buf(), dir })
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// What kind of thing a non-regular file is, for the error.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_with_the_exact_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"s3cret", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"s3cret");
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"again", 0o644).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        assert_eq!(names(dir.path()), ["secret"]);
    }

    #[test]
    fn the_outcome_says_what_changed_and_an_identical_file_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let created = write_atomic(&path, b"one", 0o600).unwrap();
        assert!(created.created && created.changed());
        let inode = fs::metadata(&path).unwrap().ino();

        let same = write_atomic(&path, b"one", 0o600).unwrap();
        assert!(!same.changed(), "{same:?}");
        let chmod = write_atomic(&path, b"one", 0o640).unwrap();
        assert_eq!(chmod, WriteOutcome { created: false, content_changed: false, mode_changed: true });
        assert_eq!((fs::metadata(&path).unwrap().ino(), mode_of(&path)), (inode, 0o640), "chmod in place");

        let content = write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(content, WriteOutcome { created: false, content_changed: true, mode_changed: false });
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }

    #[test]
    fn plan_write_checks_and_predicts_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(plan_write(&path, b"x", 0o600).unwrap().created);
        assert!(!path.exists(), "nothing written");
        write_atomic(&path, b"x", 0o600).unwrap();
        assert!(!plan_write(&path, b"x", 0o600).unwrap().changed());
        assert!(plan_write(&path, b"y", 0o600).unwrap().content_changed);
        assert_eq!(fs::read(&path).unwrap(), b"x");
        assert_eq!(plan_write(&dir.path().join("no/f"), b"x", 0o600).unwrap_err().kind(), "missing_parent");
        assert_eq!(plan_write(&path, b"x", 0o4755).unwrap_err().kind(), "bad_mode");
    }

    #[test]
    fn devices_fifos_sockets_and_directories_are_refused_and_left_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let mut cases = vec![(sock.clone(), "a socket"), (fifo.clone(), "a FIFO"), (sub.clone(), "a directory")];
        // A device node of our own, like /dev/null, where we may make one (root).
        let dev = dir.path().join("null");
        let made = std::process::Command::new("mknod").arg(&dev).args(["c", "1", "3"]).output();
        if made.is_ok_and(|o| o.status.success()) {
            cases.push((dev.clone(), "a character device"));
        }
        for (path, what) in &cases {
            let e = write_atomic(path, b"hi", 0o600).unwrap_err();
            assert_eq!(e.kind(), "not_regular", "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&path.display().to_string()) && text.contains(what), "{text}");
            assert!(!fs::symlink_metadata(path).unwrap().file_type().is_file(), "{} kept", path.display());
        }
        // Through a symlink too: the link's target is what counts.
        symlink(&fifo, dir.path().join("to-fifo")).unwrap();
        let e = write_atomic(&dir.path().join("to-fifo"), b"hi", 0o600).unwrap_err();
        assert!(e.kind() == "not_regular" && e.to_string().contains("a FIFO"), "{e}");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_written_through_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let target = real_dir.join("config");
        fs::write(&target, "old").unwrap();
        let link = dir.path().join("link");
        symlink("real/config", &link).unwrap();

        let outcome = write_atomic(&link, b"new", 0o600).unwrap();
        assert!(outcome.content_changed && outcome.mode_changed, "{outcome:?}");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("real/config"));
        assert_eq!((fs::read(&target).unwrap(), mode_of(&target)), (b"new".to_vec(), 0o600));
        assert_eq!(names(&real_dir), ["config"], "no temp file left beside the target");
        assert_eq!(names(dir.path()), ["link", "real"], "none beside the link");
    }

    #[test]
    fn a_symlink_to_nothing_is_refused_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        symlink("elsewhere", &link).unwrap();
        let e = write_atomic(&link, b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), "dangling_symlink", "{e}");
        assert!(e.to_string().contains("elsewhere"), "{e}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn setuid_setgid_sticky_and_file_type_bits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        for mode in [0o4755, 0o2755, 0o1777, 0o7777, 0o100644] {
            let e = write_atomic(&path, b"x", mode).unwrap_err();
            assert_eq!(e.kind(), "bad_mode", "{mode:o}: {e}");
            assert!(e.to_string().contains(&format!("{mode:#o}")), "{e}");
        }
        assert!(!path.exists(), "nothing written");
        write_atomic(&path, b"x", 0o755).unwrap();
    }

    #[test]
    fn a_missing_parent_directory_is_named_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such");
        let e = write_atomic(&missing.join("file"), b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), "missing_parent", "{e}");
        assert!(e.to_string().contains(&format!("directory {} does not exist", missing.display())), "{e}");
        assert!(!dir.path().join("no").exists(), "not created");

        let file = dir.path().join("plain");
        fs::write(&file, "x").unwrap();
        let e = write_atomic(&file.join("below"), b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), "parent_not_directory", "{e}");
    }

    #[test]
    fn an_fs_error_becomes_an_io_error_naming_the_path_once() {
        let e: crate::error::Error = write_atomic(Path::new("/nonexistent-k3sx/x"), b"x", 0o600).unwrap_err().into();
        let text = e.to_string();
        assert_eq!(text.matches("/nonexistent-k3sx").count(), 2, "the file and its directory: {text}");
        assert!(text.starts_with("/nonexistent-k3sx/x: directory /nonexistent-k3sx does not exist"), "{text}");
    }
}
