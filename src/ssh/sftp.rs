//! Files on hosts: atomic, idempotent writes over SFTP, and reads.
//!
//! A write compares the remote file's SHA-256 and mode first and does nothing
//! when both match. Otherwise the bytes go to a temporary name and a `mv`
//! replaces the target in one step, so a reader never sees half a file. A
//! non-root user with sudo uploads into `/tmp` and `sudo -n install`s the file.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use ssh2::{ErrorCode, OpenFlags, OpenType};

use super::session::{Fail, millis, ssh_fail};
use super::{SshError, SshPool, shell_quote};

/// `LIBSSH2_FX_PERMISSION_DENIED`.
const FX_PERMISSION_DENIED: i32 = 3;

impl SshPool {
    /// Writes `bytes` to `remote` on `host` with permission bits `mode` (e.g. `0o644`).
    /// Returns false when the file already had exactly this content and mode.
    pub fn write(&self, host: &str, remote: &str, bytes: &[u8], mode: u32) -> Result<bool, SshError> {
        let sha = hex(&Sha256::digest(bytes));
        self.put(host, &mut std::io::Cursor::new(bytes), &sha, remote, mode, None)
    }

    /// Uploads the local file `local` to `remote` on `host` (streamed, not held in
    /// memory). Returns false when the remote file already had this content and mode.
    pub fn upload(&self, host: &str, local: &Path, remote: &str, mode: u32) -> Result<bool, SshError> {
        let (sha, _) = local_sha256(local)?;
        self.upload_as(host, local, &sha, remote, mode, None)
    }

    /// What writing content with SHA-256 `sha` and `mode` to `remote` needs, from one look at
    /// the remote file; changes nothing. A caller that decides first (a dry run, the change
    /// log) hands the answer to [`SshPool::write_as`] / [`SshPool::upload_as`] so the file is
    /// not looked at twice.
    pub fn put_need(&self, host: &str, remote: &str, sha: &str, mode: u32) -> Result<PutNeed, SshError> {
        Ok(match self.remote_state(host, remote)? {
            Some((have_mode, have_sha)) if have_sha == sha => {
                if have_mode == Some(mode & 0o7777) {
                    PutNeed::Nothing
                } else {
                    PutNeed::Chmod
                }
            }
            _ => PutNeed::Content,
        })
    }

    /// [`SshPool::write`] of `bytes` whose SHA-256 is `sha`, with what [`SshPool::put_need`]
    /// found (`None`: look now).
    pub fn write_as(
        &self,
        host: &str,
        remote: &str,
        bytes: &[u8],
        sha: &str,
        mode: u32,
        need: Option<PutNeed>,
    ) -> Result<bool, SshError> {
        self.put(host, &mut std::io::Cursor::new(bytes), sha, remote, mode, need)
    }

    /// [`SshPool::upload`] of `local` whose SHA-256 is `sha`, with what [`SshPool::put_need`]
    /// found (`None`: look now).
    pub fn upload_as(
        &self,
        host: &str,
        local: &Path,
        sha: &str,
        remote: &str,
        mode: u32,
        need: Option<PutNeed>,
    ) -> Result<bool, SshError> {
        let mut file =
            std::fs::File::open(local).map_err(|source| SshError::Local { path: local.to_path_buf(), source })?;
        self.put(host, &mut file, sha, remote, mode, need)
    }

    /// Mode and content SHA-256 of `remote`; `None` when there is no such file (a directory is an error).
    fn remote_state(&self, host: &str, remote: &str) -> Result<Option<(Option<u32>, String)>, SshError> {
        let q = shell_quote(remote);
        let state_cmd = format!(
            "if [ -d {q} ]; then echo {q} is a directory >&2; exit 1; \
             elif [ -f {q} ]; then stat -c %a {q} && sha256sum < {q} | cut -c1-64; else echo absent; fi"
        );
        let state = self.run(host, &state_cmd, true)?.stdout;
        let mut lines = state.lines();
        Ok(match (lines.next(), lines.next()) {
            (Some(mode), Some(sha)) => Some((u32::from_str_radix(mode.trim(), 8).ok(), sha.trim().to_string())),
            _ => None,
        })
    }

    /// Reads a remote file. Files the user may not read are read through
    /// `sudo -n cat` when sudo is enabled.
    pub fn read(&self, host: &str, remote: &str) -> Result<Vec<u8>, SshError> {
        let target = self.target(host)?;
        let shown = target.display();
        let timeout = self.settings().command_timeout;
        let result = self.with_session(&target, |sess| {
            sess.set_timeout(millis(timeout));
            let sftp = sess.sftp().map_err(|e| Fail::stale(ssh_fail(&shown, "starting sftp", &e, timeout)))?;
            let mut file = sftp.open(Path::new(remote)).map_err(|e| {
                Fail::fatal(SshError::Sftp { host: shown.clone(), path: remote.into(), reason: sftp_reason(&e) })
            })?;
            let mut data = Vec::new();
            file.read_to_end(&mut data).map_err(|e| {
                Fail::fatal(SshError::Sftp { host: shown.clone(), path: remote.into(), reason: e.to_string() })
            })?;
            Ok(data)
        });
        match result {
            Err(SshError::Sftp { reason, .. }) if reason.starts_with("permission denied") && self.uses_sudo() => {
                let out = self.exec(host, &format!("cat -- {}", shell_quote(remote)), true, None)?;
                if out.code != 0 {
                    return Err(SshError::Sftp {
                        host: shown,
                        path: remote.into(),
                        reason: self.mask(String::from_utf8_lossy(&out.stderr).trim()),
                    });
                }
                Ok(out.stdout)
            }
            other => other,
        }
    }

    fn put(
        &self,
        host: &str,
        source: &mut dyn Read,
        sha: &str,
        remote: &str,
        mode: u32,
        need: Option<PutNeed>,
    ) -> Result<bool, SshError> {
        let target = self.target(host)?;
        let shown = target.display();
        let sftp_err = |reason: String| SshError::Sftp { host: shown.clone(), path: remote.to_string(), reason };
        let (dir, name) = match remote.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((dir, name)) => (dir, name),
            None => (".", remote),
        };
        if name.is_empty() {
            return Err(sftp_err("the remote path names a directory, not a file".into()));
        }
        let mode = mode & 0o7777;
        let sudo = self.uses_sudo();
        let q = shell_quote(remote);

        // What is there now: the same content needs at most a chmod.
        let need = match need {
            Some(n) => n,
            None => self.put_need(host, remote, sha, mode)?,
        };
        match need {
            PutNeed::Nothing => {
                tracing::debug!(host = %shown, "{remote} is up to date");
                return Ok(false);
            }
            PutNeed::Chmod => {
                self.run(host, &format!("chmod {mode:o} {q}"), true)?;
                return Ok(true);
            }
            PutNeed::Content => {}
        }

        let rand = random_suffix();
        let tmp = if sudo { format!("/tmp/.k3sx-upload-{rand}") } else { format!("{dir}/.{name}.k3sx-{rand}") };
        if !sudo {
            self.run(host, &format!("mkdir -p -- {}", shell_quote(dir)), false)?;
        }

        let timeout = self.settings().command_timeout;
        let sent = self.with_session(&target, |sess| {
            sess.set_timeout(millis(timeout));
            let sftp = sess.sftp().map_err(|e| Fail::stale(ssh_fail(&shown, "starting sftp", &e, timeout)))?;
            let result = (|| {
                let mut file = sftp
                    .open_mode(Path::new(&tmp), OpenFlags::WRITE | OpenFlags::EXCLUSIVE, 0o600, OpenType::File)
                    .map_err(|e| sftp_err(sftp_reason(&e)))?;
                // Large writes let libssh2 pipeline many packets per round trip.
                let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut file);
                std::io::copy(source, &mut writer).map_err(|e| sftp_err(format!("sending data: {e}")))?;
                writer.flush().map_err(|e| sftp_err(format!("sending data: {e}")))?;
                drop(writer);
                // Not every server offers fsync; the rename below is what makes it atomic.
                let _ = file.fsync();
                Ok(())
            })();
            if result.is_err() {
                let _ = sftp.unlink(Path::new(&tmp));
            }
            result.map_err(Fail::fatal)
        });
        sent?;

        let (qt, qd) = (shell_quote(&tmp), shell_quote(dir));
        let finish = if sudo {
            let staged = shell_quote(&format!("{dir}/.{name}.k3sx-{rand}"));
            format!(
                "mkdir -p -- {qd} && install -m {mode:o} {qt} {staged} && mv -f {staged} {q}; rc=$?; rm -f {qt} {staged}; exit $rc"
            )
        } else {
            format!("chmod {mode:o} {qt} && mv -f {qt} {q}; rc=$?; rm -f {qt}; exit $rc")
        };
        self.run(host, &finish, true)?;
        tracing::debug!(host = %shown, "wrote {remote} (mode {mode:o})");
        Ok(true)
    }
}

/// What a file write needs on the host ([`SshPool::put_need`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutNeed {
    /// The file has this content and mode already.
    Nothing,
    /// The content is there, the mode is not.
    Chmod,
    /// The file is missing or holds other content.
    Content,
}

/// The hex SHA-256 and size of a local file, streamed (never held in memory).
///
/// # Errors
/// [`SshError::Local`] when the file cannot be read.
pub fn local_sha256(local: &Path) -> Result<(String, u64), SshError> {
    let size = std::fs::metadata(local).map_err(|source| SshError::Local { path: local.to_path_buf(), source })?.len();
    Ok((file_sha(local)?, size))
}

/// The SHA-256 of a local file, streamed.
fn file_sha(local: &Path) -> Result<String, SshError> {
    let local_err = |source| SshError::Local { path: local.to_path_buf(), source };
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(local).map_err(local_err)?;
    std::io::copy(&mut file, &mut hasher).map_err(local_err)?;
    Ok(hex(&hasher.finalize()))
}

fn sftp_reason(e: &ssh2::Error) -> String {
    match e.code() {
        ErrorCode::SFTP(FX_PERMISSION_DENIED) => "permission denied".to_string(),
        ErrorCode::SFTP(2) | ErrorCode::SFTP(10) => "no such file or directory".to_string(),
        _ => e.message().to_string(),
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_sha256_matches_sha256sum() {
        assert_eq!(hex(&Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
