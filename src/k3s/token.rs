//! The cluster token: generated from the OS CSPRNG, kept in `k3s.token_file` (0600), read back
//! with checks that refuse a file others can read or a token K3s would reject later.
//!
//! The token text never appears in an error, a `Debug` or a `Display`: errors name the file
//! and what is wrong with it, never its content.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// 256 bits, as K3s's own generated server tokens.
const TOKEN_BYTES: usize = 32;

/// A token file longer than this is not a token file (a kubeconfig, a key, a log picked by mistake).
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Why a token file cannot be used. Every variant names the file; none holds any of its content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file `{}`: {message}", path.display())]
    Io { path: PathBuf, message: String },

    #[error("token file `{}` is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error(
        "token file `{}` is accessible by group or others (mode {mode:04o}); \
         the token is the key to the cluster: run `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    #[error("token file `{}` is empty; delete it to let k3sx generate a token, or write the token into it", path.display())]
    Empty { path: PathBuf },

    #[error("token file `{}` does not hold a usable K3s token: it {reason}", path.display())]
    Malformed { path: PathBuf, reason: &'static str },
}

impl TokenError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Io { .. } => "io",
            TokenError::NotAFile { .. } => "not_a_file",
            TokenError::InsecurePermissions { .. } => "insecure_permissions",
            TokenError::Empty { .. } => "empty",
            TokenError::Malformed { .. } => "malformed",
        }
    }
}

/// A new cluster token: 256 bits from the operating system's CSPRNG, hex-encoded (64 characters).
///
/// Hex keeps the token free of characters that mean something to a shell, an env file or
/// K3s's `K10<hash>::server:<secret>` parser (no `:`).
///
/// # Panics
///
/// When the operating system has no random source to give (`getrandom` fails): on Linux that
/// means no `getrandom(2)` and no `/dev/urandom`, where no secret could be made safely anyway.
pub fn generate_token() -> Secret {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    let mut hex = String::with_capacity(TOKEN_BYTES * 2);
    for b in bytes {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
    Secret::new(hex)
}

/// What to write into the token file for `token`: the token and one newline (so `cat` and
/// editors behave), which [`read_token`] trims again. Writing it (0600, atomically) is the
/// caller's job, e.g. [`crate::fsutil::write_atomic`].
pub fn token_file_content(token: &Secret) -> Secret {
    Secret::new(format!("{}\n", token.expose()))
}

/// Reads the cluster token from `path`.
///
/// Returns `Ok(None)` when the file does not exist (the caller generates a token and writes
/// it). Accepts a plain secret or K3s's secure format `K10<64 hex>::server:<secret>` (or
/// `::node:<secret>`), with at most one trailing newline.
///
/// # Errors
///
/// [`TokenError`] when the file cannot be read or is not a regular file; when group or
/// others have any access to it (`mode & 0o077 != 0`); when it is empty; when the token holds
/// whitespace, a line break or a character that is not printable ASCII; or when it starts
/// with `K10` but is not the secure format.
pub fn read_token(path: &Path) -> Result<Option<Secret>, TokenError> {
    let io = |e: std::io::Error| TokenError::Io { path: path.to_path_buf(), message: e.to_string() };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(TokenError::NotAFile { path: path.to_path_buf() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenError::InsecurePermissions { path: path.to_path_buf(), mode });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenError::Malformed { path: path.to_path_buf(), reason: "is larger than 4 KiB" });
    }
    let token = parse_token(&bytes).map_err(|reason| match reason {
        TokenProblem::Empty => TokenError::Empty { path: path.to_path_buf() },
        TokenProblem::Malformed(reason) => TokenError::Malformed { path: path.to_path_buf(), reason },
    })?;
    Ok(Some(token))
}

enum TokenProblem {
    Empty,
    Malformed(&'static str),
}

/// Checks the file content; the reasons are fixed texts so no part of the token can leak.
fn parse_token(bytes: &[u8]) -> Result<Secret, TokenProblem> {
    let text = std::str::from_utf8(bytes).map_err(|_| TokenProblem::Malformed("is not valid UTF-8"))?;
    let text = text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text);
    if text.is_empty() {
        return Err(TokenProblem::Empty);
    }
    if text.chars().any(|c| c == '\n' || c == '\r') {
        return Err(TokenProblem::Malformed("has a line break inside the token (or more than one trailing newline)"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(TokenProblem::Malformed("contains whitespace"));
    }
    // The token goes into an env file and an HTTP basic-auth header: printable ASCII only.
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenProblem::Malformed("contains a character that is not printable ASCII"));
    }
    if text.starts_with("K10") && !is_secure_format(text) {
        return Err(TokenProblem::Malformed(
            "starts with `K10` but is not K3s's secure format `K10<64 hex digits>::server:<secret>` (or `::node:`)",
        ));
    }
    Ok(Secret::new(text))
}

/// `K10<sha256 of the cluster CA, hex>::server:<secret>` or `...::node:<secret>`. K3s parses
/// any token starting with `K10` this way, so a plain secret that merely starts so would fail
/// at join time, far from its cause.
fn is_secure_format(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("K10") else { return false };
    let Some((hash, credentials)) = rest.split_once("::") else { return false };
    let hash_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let secret = credentials.strip_prefix("server:").or_else(|| credentials.strip_prefix("node:"));
    hash_ok && secret.is_some_and(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "a3f1c0ffee00112233445566778899aabbccddeeff00112233445566778899aa";

    fn token_file(content: &[u8], mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn generated_tokens_are_64_lowercase_hex_chars_and_differ() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn generated_token_is_redacted_in_debug_and_display() {
        let t = generate_token();
        assert!(!format!("{t:?} {t}").contains(t.expose()));
    }

    #[test]
    fn a_missing_file_is_none_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_token(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn the_written_content_reads_back_as_the_same_token() {
        let t = generate_token();
        let (_d, path) = token_file(token_file_content(&t).expose().as_bytes(), 0o600);
        assert_eq!(read_token(&path).unwrap().unwrap(), t);
    }

    #[test]
    fn one_trailing_newline_is_trimmed_and_a_bare_token_is_accepted() {
        for content in ["s3cret\n", "s3cret", "s3cret\r\n"] {
            let (_d, path) = token_file(content.as_bytes(), 0o600);
            assert_eq!(read_token(&path).unwrap().unwrap().expose(), "s3cret", "{content:?}");
        }
    }

    #[test]
    fn the_k3s_secure_formats_are_accepted() {
        for t in [format!("K10{HASH}::server:abc123"), format!("K10{HASH}::node:xyz")] {
            let (_d, path) = token_file(format!("{t}\n").as_bytes(), 0o400);
            assert_eq!(read_token(&path).unwrap().unwrap().expose(), t);
        }
    }

    #[test]
    fn a_file_group_or_others_can_access_is_refused_with_its_mode() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
            let (_d, path) = token_file(b"s3cret\n", mode);
            let err = read_token(&path).unwrap_err();
            assert_eq!(err.kind(), "insecure_permissions", "{mode:o}");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()) && text.contains(&format!("{mode:04o}")), "{text}");
        }
    }

    #[test]
    fn an_empty_file_is_refused() {
        for content in ["", "\n"] {
            let (_d, path) = token_file(content.as_bytes(), 0o600);
            assert_eq!(read_token(&path).unwrap_err().kind(), "empty");
        }
    }

    #[test]
    fn inner_whitespace_line_breaks_and_unprintable_chars_are_refused_without_showing_the_token() {
        let secret = "Sup3rSecretValue";
        for content in [
            format!("{secret} x\n"),
            format!("{secret}\nsecond\n"),
            format!("{secret}\n\n"),
            format!("{secret}\tx"),
            format!("{secret}\u{7}"),
            format!("{secret}é"),
        ] {
            let (_d, path) = token_file(content.as_bytes(), 0o600);
            let err = read_token(&path).unwrap_err();
            assert_eq!(err.kind(), "malformed", "{content:?}");
            assert!(!format!("{err} {err:?}").contains(secret), "{err}");
        }
    }

    #[test]
    fn a_k10_token_that_is_not_the_secure_format_is_refused() {
        for t in ["K10abc::server:x", &format!("K10{HASH}::admin:x"), &format!("K10{HASH}::server:"), "K10plain"] {
            let (_d, path) = token_file(t.as_bytes(), 0o600);
            assert_eq!(read_token(&path).unwrap_err().kind(), "malformed", "{t}");
        }
    }

    #[test]
    fn invalid_utf8_and_oversized_files_are_refused() {
        let (_d, path) = token_file(&[0xff, 0xfe, b'a'], 0o600);
        assert_eq!(read_token(&path).unwrap_err().kind(), "malformed");
        let (_d, path) = token_file(&vec![b'a'; 5000], 0o600);
        assert_eq!(read_token(&path).unwrap_err().kind(), "malformed");
    }

    #[test]
    fn a_directory_is_not_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_token(dir.path()).unwrap_err().kind(), "not_a_file");
    }
}
