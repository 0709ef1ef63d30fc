//! Host key checks: a key pinned for the host, else OpenSSH's known_hosts file
//! (plain, hashed and `[host]:port` entries, read by libssh2).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, Session};

use super::{HostKeyPolicy, SshError, SshSettings, Target};

/// Serializes appends to known_hosts files within this process.
static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// An SSH public key: its algorithm name and its raw (wire format) blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    pub blob: Vec<u8>,
}

impl PublicKey {
    /// Parses an OpenSSH public key line, `ssh-ed25519 AAAA... [comment]`
    /// (the content of `/etc/ssh/ssh_host_ed25519_key.pub`).
    pub fn parse_openssh(line: &str) -> Result<PublicKey, String> {
        let mut parts = line.split_whitespace();
        let (Some(key_type), Some(b64)) = (parts.next(), parts.next()) else {
            return Err("expected `TYPE BASE64 [COMMENT]`".to_string());
        };
        let blob = STANDARD.decode(b64).map_err(|e| format!("the key is not valid base64: {e}"))?;
        // The blob starts with its own type name as an SSH string; it must agree.
        let inner = blob
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n));
        if inner != Some(key_type.as_bytes()) {
            return Err(format!("the key data is not a `{key_type}` key"));
        }
        Ok(PublicKey { key_type: key_type.to_string(), blob })
    }

    /// `SHA256:...` as OpenSSH prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }

    /// The key as one OpenSSH line without comment.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.key_type, STANDARD.encode(&self.blob))
    }
}

/// The SHA-256 fingerprint of a raw key blob, as OpenSSH prints it (`SHA256:` + unpadded base64).
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

pub(crate) fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The host field OpenSSH writes for a target: `addr` on port 22, else `[addr]:port`.
fn host_entry(target: &Target) -> String {
    if target.port == 22 { target.addr.clone() } else { format!("[{}]:{}", target.addr, target.port) }
}

/// The key types known_hosts holds for `target`, in file order. The session
/// asks the server for these types first, as OpenSSH does: libssh2 would call
/// a key of another type than the recorded one "changed".
pub(crate) fn known_key_types(path: &Path, target: &Target) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let entry = host_entry(target);
    let mut types: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue; // markers (@cert-authority, @revoked) are not host keys
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(key_type)) = (fields.next(), fields.next()) else {
            continue;
        };
        if hosts_match(hosts, &entry) && !types.iter().any(|t| t == key_type) {
            types.push(key_type.to_string());
        }
    }
    types
}

/// Whether a known_hosts host field (`|1|salt|hash`, or comma-separated
/// patterns with `*`, `?` and `!`) names `entry` (`addr` or `[addr]:port`).
fn hosts_match(field: &str, entry: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        use hmac::{Hmac, Mac};
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(entry.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut matched = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(negated, entry) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(pattern, entry),
        }
    }
    matched
}

/// OpenSSH's pattern match: `*` any run of characters, `?` one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The line (1-based) of a `@revoked` entry that names `target` and holds the key `blob`,
/// as OpenSSH reads them: `@revoked HOSTS TYPE BASE64 [COMMENT]`, HOSTS as in any entry.
fn revoked_line(text: &str, target: &Target, blob: &[u8]) -> Option<usize> {
    let entry = host_entry(target);
    text.lines().enumerate().find_map(|(i, line)| {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("@revoked") {
            return None;
        }
        let (Some(hosts), Some(_key_type), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
            return None;
        };
        let revoked = STANDARD.decode(b64).is_ok_and(|key| key == blob);
        (revoked && hosts_match(hosts, &entry)).then_some(i + 1)
    })
}

/// Checks the key the server presented. A key known_hosts marks `@revoked` for the host
/// is refused, always. Then, with a pinned key only that key is accepted; otherwise
/// known_hosts decides, under the settings' policy.
pub(crate) fn verify(
    session: &Session,
    target: &Target,
    settings: &SshSettings,
    pinned: Option<&PublicKey>,
) -> Result<(), SshError> {
    let host = target.display();
    let (blob, ktype) = session
        .host_key()
        .ok_or_else(|| SshError::Session { host: host.clone(), reason: "the server sent no host key".into() })?;
    let key_type = key_type_name(ktype).to_string();
    let fp = fingerprint(blob);

    let path = &settings.known_hosts;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(SshError::Local { path: path.clone(), source: e }),
    };
    // A revoked key is refused before anything could accept it: a pin, an entry, a policy.
    if let Some(line) = revoked_line(&text, target, blob) {
        return Err(SshError::HostKeyRevoked {
            host,
            key: format!("{key_type} {fp}"),
            known_hosts: path.clone(),
            line,
        });
    }

    if let Some(pin) = pinned {
        return if pin.blob == blob {
            Ok(())
        } else {
            Err(SshError::HostKeyMismatch {
                host,
                key: format!("{key_type} {fp}"),
                pinned: format!("{} {}", pin.key_type, pin.fingerprint()),
            })
        };
    }

    let mut kh = session.known_hosts().map_err(|e| SshError::Session { host: host.clone(), reason: e.to_string() })?;
    // Line by line, so one entry libssh2 cannot parse (a security-key type) does not hide
    // all the others. Marker lines are not host keys and libssh2 knows no markers: a
    // `@cert-authority` key signs host certificates (which k3sx does not use), and
    // `@revoked` was handled above.
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@')) {
        if let Err(e) = kh.read_str(line, KnownHostFileKind::OpenSSH) {
            tracing::debug!(file = %path.display(), "skipping known_hosts line libssh2 cannot read: {e}");
        }
    }

    match kh.check_port(&target.addr, target.port, blob) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SshError::HostKeyChanged {
            host,
            entry: host_entry(target),
            key: format!("{key_type} {fp}"),
            known_hosts: path.clone(),
        }),
        CheckResult::NotFound if settings.policy == HostKeyPolicy::AcceptNew => {
            let line = format!("{} {} {}", host_entry(target), key_type, STANDARD.encode(blob));
            append_line(path, &line)?;
            tracing::info!(host = %host, "recorded new host key {key_type} {fp} in {}", path.display());
            Ok(())
        }
        CheckResult::NotFound => Err(SshError::HostKeyUnknown {
            keyscan: match target.port {
                22 => format!("ssh-keyscan -t {key_type} {}", target.addr),
                p => format!("ssh-keyscan -p {p} -t {key_type} {}", target.addr),
            },
            host,
            key: format!("{key_type} {fp}"),
            known_hosts: path.clone(),
        }),
        CheckResult::Failure => {
            Err(SshError::Session { host, reason: "libssh2 could not check the host key against known_hosts".into() })
        }
    }
}

/// Appends one line to a known_hosts file atomically: the old content plus the
/// line is written to a temporary file in the same directory, which then
/// replaces the file (a reader never sees half a file). Keeps the file's mode.
pub(crate) fn append_line(path: &Path, line: &str) -> Result<(), SshError> {
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let local = |source| SshError::Local { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(local)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let (mut content, perms) = match std::fs::read(path) {
        Ok(c) => (c, std::fs::metadata(path).map_err(local)?.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            #[cfg(unix)]
            let perms = {
                use std::os::unix::fs::PermissionsExt;
                std::fs::Permissions::from_mode(0o600)
            };
            #[cfg(not(unix))]
            let perms = std::fs::metadata(dir).map_err(local)?.permissions();
            (Vec::new(), perms)
        }
        Err(e) => return Err(local(e)),
    };
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    content.extend_from_slice(line.as_bytes());
    content.push(b'\n');
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(local)?;
    tmp.write_all(&content).map_err(local)?;
    tmp.as_file().sync_all().map_err(local)?;
    std::fs::set_permissions(tmp.path(), perms).map_err(local)?;
    tmp.persist(path).map_err(|e| local(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILsLeRX73tl399tXG3hOzl/hUzF91RdZLq85AgFAUPsI root@example";

    #[test]
    fn parses_an_openssh_public_key_line() {
        let k = PublicKey::parse_openssh(ED25519).unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.blob.len(), 51);
        assert!(k.fingerprint().starts_with("SHA256:"));
        assert!(!k.fingerprint().ends_with('='));
        assert_eq!(PublicKey::parse_openssh(&k.to_openssh()).unwrap(), k);
    }

    #[test]
    fn rejects_a_key_whose_type_does_not_match_its_data() {
        let line = ED25519.replace("ssh-ed25519", "ssh-rsa");
        assert!(PublicKey::parse_openssh(&line).unwrap_err().contains("not a `ssh-rsa` key"));
        assert!(PublicKey::parse_openssh("ssh-ed25519").is_err());
        assert!(PublicKey::parse_openssh("ssh-ed25519 !!!").is_err());
    }

    #[test]
    fn hashed_entries_match_their_host_and_port_only() {
        // made with `ssh-keygen -H` from `[127.0.1.5]:2222 ...` and `example.org ...`
        let port = "|1|oOdA9/P5q4rNQyEraZfx31TALoE=|JQi1c3nq2kCtIKd9VF7zoAbl8+w=";
        let plain = "|1|19Ilbl5E0u1ZllOMj3zkLTVKyfE=|sB1WRCRWbY5JOfTDuxIzChNyXiA=";
        assert!(hosts_match(port, "[127.0.1.5]:2222"));
        assert!(!hosts_match(port, "127.0.1.5"));
        assert!(!hosts_match(port, "[127.0.1.5]:2223"));
        assert!(hosts_match(plain, "example.org"));
        assert!(!hosts_match("|1|garbage", "example.org"));
    }

    #[test]
    fn plain_patterns_match_like_openssh() {
        assert!(hosts_match("a.lan,10.0.0.5", "10.0.0.5"));
        assert!(hosts_match("10.0.0.*", "10.0.0.5"));
        assert!(hosts_match("10.0.0.?", "10.0.0.5"));
        assert!(!hosts_match("10.0.0.?", "10.0.0.50"));
        assert!(!hosts_match("10.0.0.*,!10.0.0.5", "10.0.0.5"));
        assert!(hosts_match("[10.0.0.5]:2222", "[10.0.0.5]:2222"));
        assert!(!hosts_match("10.0.0.5", "[10.0.0.5]:2222"));
        assert!(hosts_match("Host.LAN", "host.lan"));
    }

    #[test]
    fn known_key_types_are_listed_in_file_order_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(
            &path,
            "# comment\n\
             @cert-authority *.lan ssh-ed25519 AAAA\n\
             [10.0.0.5]:2222 ecdsa-sha2-nistp256 AAAA\n\
             10.0.0.5 ssh-rsa AAAA\n\
             [10.0.0.5]:2222 ssh-ed25519 AAAA\n\
             [10.0.0.5]:2222 ecdsa-sha2-nistp256 BBBB\n",
        )
        .unwrap();
        let target = Target { addr: "10.0.0.5".into(), port: 2222 };
        assert_eq!(known_key_types(&path, &target), ["ecdsa-sha2-nistp256", "ssh-ed25519"]);
        let target = Target { addr: "10.0.0.5".into(), port: 22 };
        assert_eq!(known_key_types(&path, &target), ["ssh-rsa"]);
        assert!(known_key_types(&dir.path().join("missing"), &target).is_empty());
    }

    #[test]
    fn a_revoked_entry_is_found_by_host_pattern_and_key_with_its_line() {
        let key = PublicKey::parse_openssh(ED25519).unwrap();
        let b64 = STANDARD.encode(&key.blob);
        let target = Target { addr: "10.0.0.5".into(), port: 2222 };
        let at = |text: String| revoked_line(&text, &target, &key.blob);
        assert_eq!(
            at(format!("# x\n[10.0.0.5]:2222 ssh-ed25519 {b64}\n@revoked * ssh-ed25519 {b64} leaked\n")),
            Some(3)
        );
        assert_eq!(at(format!("@revoked   10.0.0.*,[10.0.0.5]:2222\tssh-ed25519 {b64}\n")), Some(1));
        // made with `ssh-keygen -H` from `[127.0.1.5]:2222`
        let hashed = "|1|oOdA9/P5q4rNQyEraZfx31TALoE=|JQi1c3nq2kCtIKd9VF7zoAbl8+w=";
        let other = Target { addr: "127.0.1.5".into(), port: 2222 };
        assert_eq!(revoked_line(&format!("@revoked {hashed} ssh-ed25519 {b64}"), &other, &key.blob), Some(1));
        assert_eq!(at(format!("@revoked [10.0.0.6]:2222 ssh-ed25519 {b64}\n")), None, "another host");
        assert_eq!(at(format!("@revoked * ssh-ed25519 {}\n", STANDARD.encode(b"other"))), None, "another key");
        assert_eq!(at(format!("@cert-authority * ssh-ed25519 {b64}\n# @revoked * ssh-ed25519 {b64}\n")), None);
    }

    #[test]
    fn appending_keeps_existing_content_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        append_line(&path, "a ssh-ed25519 AAAA").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "a ssh-ed25519 AAAA").unwrap(); // no trailing newline
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_line(&path, "[b]:2222 ssh-ed25519 BBBB").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a ssh-ed25519 AAAA\n[b]:2222 ssh-ed25519 BBBB\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left");
    }
}
