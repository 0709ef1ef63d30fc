//! `ssh::` — commands and files on the cluster's hosts, one SSH session per host for the run.
//!
//! A host is `addr` or `addr:port` (`[v6addr]:port`); without a port, `ssh.port` from the
//! configuration applies. `run`, `upload` and `write` are changes: under `--dry-run` they are
//! printed and not made. `query`, `read`, `hostname`, `wait` and `trust_vm` are reads and
//! always happen. Failures are catchable errors `#{kind, message, item}` with the host as
//! `item` and the kinds of `SshError` (`command`, `connect`, `timeout`, `auth`,
//! `host_key_unknown`, `host_key_changed`, `host_key_mismatch`, `sudo_password`, `sftp`, ...).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{INT, Map, Module};

use super::{RhaiResult, pve_error, register, remote, script_error, ssh_error, vm_ref};
use crate::change::{Applied, Change, RemoteFile, sha256_hex};
use crate::script::Host;
use crate::secret::Secret;
use crate::ssh::{CommandOptions, Output, PublicKey, PutNeed, SshPool, local_sha256};
use crate::ui::Level;

/// Where a VM keeps the host key `trust_vm` pins (every stock image has an Ed25519 key).
const HOST_KEY_FILE: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_commands(&mut m, host);
    register_files(&mut m, host);
    register_hosts(&mut m, host);
    m
}

fn register_commands(m: &mut Module, host: &Arc<Host>) {
    const OPTIONS: &str = "Options: `sudo` (default: `ssh.sudo` from the config; root commands go through `sudo -n`\n\
        when the user is not root), `input` (text sent to stdin; never printed, masked in errors),\n\
        `check` (default true: a non-zero exit is an error of kind `command`; false returns the code),\n\
        `timeout` (seconds, instead of `ssh.command_timeout_secs`).";
    let h = host.clone();
    register(
        m,
        "run",
        &["host: &str", "cmd: &str", "Map"],
        "Runs a shell command on `host` that CHANGES something: under `--dry-run` it is printed\n\
         (host and command, secrets masked), not run, and returns `#{code: 0, stdout: \"\", stderr: \"\", dry_run: true}`.\n\
         Returns `#{code, stdout, stderr, dry_run}`. A non-zero exit is an error of kind `command`\n\
         carrying `host`, `command` (secrets masked), `code` and `stderr` (its last lines).\n\n\
         ```rhai\nssh::run(\"10.10.0.50\", \"systemctl restart k3s\");\n\
         try { ssh::run(h, \"exit 3\"); } catch (e) { if e.kind == \"command\" { print(e.code); } }\n```",
        move |target: &str, cmd: &str| command(&h, target, cmd, &Map::new(), true),
    );
    let h = host.clone();
    register(
        m,
        "run",
        &["host: &str", "cmd: &str", "options: Map", "Map"],
        &format!(
            "`ssh::run(host, cmd)` with options (a change: printed, not run, under `--dry-run`).\n{OPTIONS}\n\n\
             ```rhai\nssh::run(h, \"sh -s - server\", #{{input: script, timeout: 300}});\n\
             let r = ssh::run(h, \"systemctl is-active k3s\", #{{check: false}});\n```"
        ),
        move |target: &str, cmd: &str, options: Map| command(&h, target, cmd, &options, true),
    );
    let h = host.clone();
    register(
        m,
        "query",
        &["host: &str", "cmd: &str", "Map"],
        "Runs a shell command on `host` that only READS: it runs under `--dry-run` too.\n\
         Returns `#{code, stdout, stderr, dry_run: false}`; a non-zero exit is an error of kind `command`\n\
         (see `ssh::run`).\n\n```rhai\nlet kernel = ssh::query(h, \"uname -r\").stdout;\nkernel.trim();\n```",
        move |target: &str, cmd: &str| command(&h, target, cmd, &Map::new(), false),
    );
    let h = host.clone();
    register(
        m,
        "query",
        &["host: &str", "cmd: &str", "options: Map", "Map"],
        &format!(
            "`ssh::query(host, cmd)` with options (a read: runs under `--dry-run` too).\n{OPTIONS}\n\n\
             ```rhai\nlet token = ssh::query(h, \"cat /var/lib/rancher/k3s/server/node-token\", #{{sudo: true}}).stdout;\n```"
        ),
        move |target: &str, cmd: &str, options: Map| command(&h, target, cmd, &options, false),
    );
}

fn register_files(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "upload",
        &["host: &str", "local: &str", "remote: &str", "mode: INT", "bool"],
        "Copies the local file `local` to `remote` on `host` by SFTP, atomically (temporary name, then\n\
         rename), with permission bits `mode` (write it in octal: `0o755`); root-owned paths go through\n\
         `sudo -n install` for a non-root user. Returns true when written, false when the remote file\n\
         already had this content and mode. A change: under `--dry-run` the remote file is compared\n\
         (a read), the upload printed and not made; it returns whether it would write.\n\n```rhai\nssh::upload(h, \"airgap/k3s\", \"/usr/local/bin/k3s\", 0o755);\n```",
        move |target: &str, local: &str, remote: &str, mode: INT| -> RhaiResult<bool> {
            let mode = file_mode(mode, remote)?;
            let local_path = crate::config::expand_home(std::path::Path::new(local));
            // Hashed once, streamed: an image archive is not held in memory.
            let (sha, size) = local_sha256(&local_path)
                .map_err(|e| script_error("local", format!("cannot use local file `{local}`: {e}"), Some(local)))?;
            let pool = h.ssh();
            // One look at the remote file, also under --dry-run: an upload the host already
            // has is no change; the upload itself does not look again.
            let need = pool.put_need(target, remote, &sha, mode).map_err(|e| ssh_error(&e))?;
            if need == PutNeed::Nothing {
                return Ok(false);
            }
            let change = remote_file(pool, target, remote, mode, sha.clone(), size, Some(local_path.clone()))?;
            let applied = h
                .changes
                .apply(None, change, |_| pool.upload_as(target, &local_path, &sha, remote, mode, Some(need)))
                .map_err(|e| ssh_error(&e))?;
            Ok(matches!(applied, Applied::Planned | Applied::Made(true)))
        },
    );
    let h = host.clone();
    register(
        m,
        "write",
        &["host: &str", "remote: &str", "text: &str", "mode: INT", "bool"],
        "Writes `text` to `remote` on `host` by SFTP, atomically, with permission bits `mode` (octal:\n\
         `0o600`). Returns true when written, false when the file already had this content and mode.\n\
         A change: under `--dry-run` the remote file is compared (a read), the write printed (path,\n\
         size and hash, never the content) and not made; it returns whether it would write.\n\n\
         ```rhai\nssh::write(h, \"/etc/rancher/k3s/config.yaml\", yaml, 0o600);\n```",
        move |target: &str, remote: &str, text: &str, mode: INT| {
            write_remote(&h, target, remote, text.as_bytes(), mode)
        },
    );
    let h = host.clone();
    register(
        m,
        "write",
        &["host: &str", "remote: &str", "secret: Secret", "mode: INT", "bool"],
        "`ssh::write` of a `Secret` (e.g. a token file, mode `0o600`): the content is never shown.",
        move |target: &str, remote: &str, secret: Secret, mode: INT| {
            write_remote(&h, target, remote, secret.expose().as_bytes(), mode)
        },
    );
    let h = host.clone();
    register(
        m,
        "read",
        &["host: &str", "remote: &str", "String"],
        "The content of the file `remote` on `host` (a read; files the user may not read are read\n\
         through `sudo -n cat`). Bytes that are not UTF-8 become `\u{FFFD}`.\n\n\
         ```rhai\nlet kubeconfig = ssh::read(h, \"/etc/rancher/k3s/k3s.yaml\");\n```",
        move |target: &str, remote: &str| -> RhaiResult<String> {
            let bytes = h.ssh().read(target, remote).map_err(|e| ssh_error(&e))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        },
    );
}

fn register_hosts(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "wait",
        &["host: &str", "timeout_secs: INT", "()"],
        "Waits until `host` accepts an authenticated SSH session (a VM booting, sshd starting), up to\n\
         `timeout_secs`, printing a progress line per failed attempt. Fails with kind `timeout` naming\n\
         the host and the last error; host key problems fail at once (waiting does not fix them).\n\n\
         ```rhai\nparallel(hosts, |h| ssh::wait(h, 300));\n```",
        move |target: &str, timeout_secs: INT| -> RhaiResult<()> {
            if timeout_secs < 1 {
                return Err(script_error(
                    "argument",
                    format!("ssh::wait: timeout must be at least 1 second, got {timeout_secs}"),
                    Some(target),
                ));
            }
            let start = Instant::now();
            let mut waited = false;
            h.ssh()
                .wait_with(target, Duration::from_secs(timeout_secs as u64), |attempt, e| {
                    waited = true;
                    let name = e.host().unwrap_or(target);
                    let secs = start.elapsed().as_secs();
                    h.log(
                        Level::Info,
                        &format!("waiting for ssh on {name} ({secs}s, attempt {attempt}): {}", e.kind()),
                    );
                })
                .map_err(|e| ssh_error(&e))?;
            if waited {
                h.log(Level::Ok, &format!("{target} answers ssh after {}s", start.elapsed().as_secs()));
            }
            Ok(())
        },
    );
    let h = host.clone();
    register(
        m,
        "hostname",
        &["host: &str", "String"],
        "The host's own name (`uname -n`; K3s names the node after it).\n\n\
         ```rhai\nlet name = ssh::hostname(\"10.10.0.50\");\n```",
        move |target: &str| -> RhaiResult<String> { h.ssh().hostname(target).map_err(|e| ssh_error(&e)) },
    );
    let h = host.clone();
    register(
        m,
        "secret",
        &["text: &str", "Secret"],
        "Makes `text` a `Secret`: a value that `ssh::run`/`query` send on stdin (`#{input: s}`) and\n\
         `ssh::write` writes, but that prints as `<redacted>` everywhere (also when joined into a\n\
         string, so it cannot reach a command line). Anything a host prints that contains it is\n\
         masked as `***` in errors.\n\n\
         ```rhai\nlet token = ssh::secret(ssh::query(first, \"cat /var/lib/rancher/k3s/server/token\").stdout.trim());\nssh::write(h, \"/etc/rancher/k3s/token\", token, 0o600);\n```",
        move |text: &str| -> Secret {
            let text = text.trim_end_matches(['\n', '\r']);
            h.ssh().add_secret(text);
            Secret::new(text)
        },
    );
    let h = host.clone();
    register(
        m,
        "trust_vm",
        &["vm: Map", "host: &str", "String"],
        "Pins the SSH host key of `host` to the key the VM itself holds: reads\n\
         `/etc/ssh/ssh_host_ed25519_key.pub` through the QEMU guest agent (Proxmox API `agent/file-read`)\n\
         and trusts exactly that key for `host` from now on, whatever known_hosts says — no trust on\n\
         first use. A host presenting another key is refused (kind `host_key_mismatch`).\n\
         `vm` is a map with `node` and `vmid`, as `pve::vms()` returns. Returns the key's fingerprint.\n\
         When `CONFIG.ssh.host_keys == \"guest-agent\"`, the workflows call it for every VM before the\n\
         first connection, and a host nobody pinned is checked against known_hosts under the strict\n\
         policy whatever `ssh.host_key_policy` says (never trusted on first use).\n\
         Fails with kind `agent_not_running` while the agent is not up, `invalid_key` when the file\n\
         is not a public key. A read: it runs under `--dry-run` too.\n\n\
         ```rhai\nif CONFIG.ssh.host_keys == \"guest-agent\" { ssh::trust_vm(vm, vm.ip); }\n```",
        move |vm: Map, target: &str| -> RhaiResult<String> { trust_vm(&h, &vm, target) },
    );
}

/// `run` (a change, through the change log) and `query` (a read): options, the result map.
fn command(host: &Host, target: &str, cmd: &str, options: &Map, change: bool) -> RhaiResult<Map> {
    let opts = CommandOpts::parse(options)?;
    if let Some(Input::Secret(secret)) = &opts.input {
        host.ssh().add_secret(secret.expose());
    }
    let run = CommandOptions {
        sudo: opts.sudo,
        input: opts.input.as_ref().map(Input::bytes),
        check: opts.check,
        timeout: opts.timeout,
    };
    let out = remote(host, target, cmd, &run, change)?;
    Ok(result_map(
        out.clone().unwrap_or(Output { code: 0, stdout: String::new(), stderr: String::new() }),
        out.is_none(),
    ))
}

/// A remote file write through the change log; false when the file is already as wanted.
fn write_remote(host: &Host, target: &str, remote: &str, bytes: &[u8], mode: INT) -> RhaiResult<bool> {
    let mode = file_mode(mode, remote)?;
    let pool = host.ssh();
    let sha = sha256_hex(bytes);
    // One look at the remote file, also under --dry-run: a file the host already has is no
    // change; the write itself does not look again.
    let need = pool.put_need(target, remote, &sha, mode).map_err(|e| ssh_error(&e))?;
    if need == PutNeed::Nothing {
        return Ok(false);
    }
    let change = remote_file(pool, target, remote, mode, sha.clone(), bytes.len() as u64, None)?;
    let applied = host
        .changes
        .apply(None, change, |_| pool.write_as(target, remote, bytes, &sha, mode, Some(need)))
        .map_err(|e| ssh_error(&e))?;
    Ok(matches!(applied, Applied::Planned | Applied::Made(true)))
}

/// A command's stdin: text, or a `Secret` (e.g. the K3s token) that is sent and never shown.
enum Input {
    Text(String),
    Secret(Secret),
}

impl Input {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Text(t) => t.as_bytes(),
            Input::Secret(s) => s.expose().as_bytes(),
        }
    }
}

/// The change a remote file write makes (content hashed, never shown).
fn remote_file(
    pool: &SshPool,
    target: &str,
    remote: &str,
    mode: u32,
    sha256: String,
    size: u64,
    source: Option<std::path::PathBuf>,
) -> RhaiResult<Change> {
    let shown = pool.shown(target).map_err(|e| ssh_error(&e))?;
    Ok(Change::RemoteFile(RemoteFile {
        host: shown,
        path: remote.to_string(),
        mode,
        owner: None,
        sha256,
        size,
        source,
    }))
}

/// The options map of `run` and `query`; unknown keys are errors, not silently ignored.
struct CommandOpts {
    sudo: bool,
    input: Option<Input>,
    check: bool,
    timeout: Option<Duration>,
}

impl CommandOpts {
    fn parse(options: &Map) -> RhaiResult<CommandOpts> {
        // `sudo: true` asks the pool for sudo; it applies it when `ssh.sudo` is on and the user is not root.
        let mut opts = CommandOpts { sudo: true, input: None, check: true, timeout: None };
        let bad =
            |key: &str, want: &str| script_error("argument", format!("ssh option `{key}` must be {want}"), Some(key));
        for (key, value) in options {
            match key.as_str() {
                "sudo" => opts.sudo = value.as_bool().map_err(|_| bad(key, "true or false"))?,
                "check" => opts.check = value.as_bool().map_err(|_| bad(key, "true or false"))?,
                "input" => {
                    opts.input = Some(match value.clone().try_cast::<Secret>() {
                        Some(secret) => Input::Secret(secret),
                        None => Input::Text(value.clone().into_string().map_err(|_| bad(key, "a string or a Secret"))?),
                    })
                }
                "timeout" => {
                    let secs = value
                        .as_int()
                        .map(|i| i as f64)
                        .or_else(|_| value.as_float())
                        .ok()
                        .filter(|s| *s > 0.0 && *s <= 86_400.0)
                        .ok_or_else(|| bad(key, "a number of seconds from 0 to 86400"))?;
                    opts.timeout = Some(Duration::from_secs_f64(secs));
                }
                other => {
                    return Err(script_error(
                        "argument",
                        format!("unknown ssh option `{other}` (known: sudo, input, check, timeout)"),
                        Some(other),
                    ));
                }
            }
        }
        Ok(opts)
    }
}

fn result_map(out: Output, dry_run: bool) -> Map {
    let mut m = Map::new();
    m.insert("code".into(), (out.code as INT).into());
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    m.insert("dry_run".into(), dry_run.into());
    m
}

/// Permission bits as given in a script. The sticky bit means nothing on a file, and it is
/// what a decimal `644` (= 0o1204) sets: refused, asking for octal.
fn file_mode(mode: INT, remote: &str) -> RhaiResult<u32> {
    match u32::try_from(mode) {
        Ok(m) if m <= 0o7777 && m & 0o1000 == 0 => Ok(m),
        _ => Err(script_error(
            "argument",
            format!("mode {mode} for `{remote}` is not a file's permission bits: write them in octal, e.g. 0o{mode}"),
            Some(remote),
        )),
    }
}

fn trust_vm(host: &Host, vm: &Map, target: &str) -> RhaiResult<String> {
    let (node, vmid, label) = vm_ref(vm)?;
    let text =
        host.pve().and_then(|c| c.agent_file_read(&node, vmid, HOST_KEY_FILE)).map_err(pve_error(Some(&label)))?;
    let pool = host.ssh();
    let shown = pool.shown(target).map_err(|e| ssh_error(&e))?;
    let key = PublicKey::parse_openssh(text.trim()).map_err(|reason| {
        script_error(
            "invalid_key",
            format!(
                "VM {label}: `{HOST_KEY_FILE}`, read through the guest agent, is not an OpenSSH public key: {reason}"
            ),
            Some(&shown),
        )
    })?;
    pool.pin_host_key(target, text.trim()).map_err(|e| ssh_error(&e))?;
    let fingerprint = key.fingerprint();
    host.log(Level::Info, &format!("{shown}: trusting {} {fingerprint}, read from VM {label}", key.key_type));
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, rhai::Dynamic)]) -> Map {
        pairs.iter().map(|(k, v)| ((*k).into(), v.clone())).collect()
    }

    #[test]
    fn modes_are_octal_permission_bits_and_a_decimal_644_is_refused() {
        assert_eq!(file_mode(0o644, "/f").unwrap(), 0o644);
        assert_eq!(file_mode(0o4755, "/f").unwrap(), 0o4755, "setuid is a file's bit");
        for bad in [644, 755, 600, -1, 0o17777] {
            assert!(file_mode(bad, "/f").is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked_and_unknown_ones_refused() {
        let o = CommandOpts::parse(&Map::new()).unwrap();
        assert!(o.sudo && o.check && o.input.is_none() && o.timeout.is_none());
        let o = CommandOpts::parse(&map(&[
            ("sudo", false.into()),
            ("check", false.into()),
            ("input", "x".into()),
            ("timeout", 1.5_f64.into()),
        ]))
        .unwrap();
        assert!(!o.sudo && !o.check);
        assert_eq!(
            (o.input.as_ref().map(Input::bytes), o.timeout),
            (Some(&b"x"[..]), Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            CommandOpts::parse(&map(&[("timeout", (30 as INT).into())])).unwrap().timeout.unwrap().as_secs(),
            30
        );
        for bad in [
            ("timeout", (0 as INT).into()),
            ("sudo", "yes".into()),
            ("input", (1 as INT).into()),
            ("tiemout", (1 as INT).into()),
        ] {
            assert!(CommandOpts::parse(&map(std::slice::from_ref(&bad))).is_err(), "{bad:?}");
        }
    }
}
