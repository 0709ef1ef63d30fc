//! `k3sx::ssh` against the sshd lab: real OpenSSH servers on 127.0.1.x.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k3sx::ssh::{HostKeyPolicy, PublicKey, SshPool, SshSettings};

use crate::lab::sshd::{KnownHosts, SshLab, USER_NOPASSWD, USER_SUDO_PASSWORD};

fn root_pool(lab: &SshLab, kh: KnownHosts) -> SshPool {
    SshPool::new(lab.settings("root", &lab.known_hosts(kh)))
}

fn fingerprint_of(lab: &SshLab, i: usize) -> String {
    PublicKey::parse_openssh(&lab.host(i).public_key()).unwrap().fingerprint()
}

/// The fingerprint as `ssh-keygen -l` prints it, to prove ours is OpenSSH's.
fn openssh_fingerprint(public_key_line: &str, dir: &Path) -> String {
    let file = dir.join("fp.pub");
    std::fs::write(&file, public_key_line).unwrap();
    let out = Command::new("ssh-keygen").arg("-lf").arg(&file).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn strict_policy_refuses_an_unknown_host_key_showing_its_fingerprint() {
    let Some(lab) = SshLab::start(1) else { return };
    let pool = root_pool(&lab, KnownHosts::Empty);
    let target = lab.host(0).target();
    let e = pool.run(&target, "true", false).unwrap_err();
    assert_eq!(e.kind(), "host_key_unknown", "{e}");
    let fp = fingerprint_of(&lab, 0);
    assert_eq!(fp, openssh_fingerprint(&lab.host(0).public_key(), lab.dir()));
    let text = e.to_string();
    assert!(text.contains(&fp) && text.contains(&target), "{text}");
    assert!(text.contains("ssh-keyscan -p") && text.contains("accept-new"), "says what to do: {text}");
}

#[test]
fn accept_new_records_an_unknown_key_then_strict_accepts_it() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Empty);
    let h = lab.host(0);
    let accept = SshPool::new(SshSettings { policy: HostKeyPolicy::AcceptNew, ..lab.settings("root", &kh) });
    accept.run(&h.target(), "true", false).unwrap();
    // OpenSSH itself finds the recorded entry.
    let entry = format!("[{}]:{}", h.addr, h.port);
    let found = Command::new("ssh-keygen").args(["-F", &entry, "-f"]).arg(&kh).output().unwrap();
    assert!(found.status.success(), "ssh-keygen -F finds {entry} in:\n{}", std::fs::read_to_string(&kh).unwrap());

    let strict = SshPool::new(lab.settings("root", &kh));
    strict.run(&h.target(), "true", false).unwrap();
    assert_eq!(std::fs::read_to_string(&kh).unwrap().lines().count(), 1, "recorded once");
}

#[test]
fn hashed_and_plain_port_entries_are_understood() {
    let Some(lab) = SshLab::start(1) else { return };
    for kind in [KnownHosts::Plain, KnownHosts::Hashed] {
        let kh = lab.known_hosts(kind);
        if kind == KnownHosts::Hashed {
            assert!(std::fs::read_to_string(&kh).unwrap().starts_with("|1|"));
        }
        let pool = SshPool::new(lab.settings("root", &kh));
        assert_eq!(pool.hostname(&lab.host(0).target()).unwrap(), "k3sx-lab-1", "{kind:?}");
    }
}

#[test]
fn a_host_known_by_another_key_type_is_asked_for_that_type() {
    let Some(lab) = SshLab::start(1) else {
        return;
    };
    // Only the ECDSA key is recorded; the server would offer Ed25519 first.
    let h = lab.host(0);
    let kh = lab.dir().join("known_hosts.ecdsa");
    let line = format!("[{}]:{} {}\n", h.addr, h.port, h.public_key_of("ecdsa"));
    std::fs::write(&kh, line).unwrap();
    let pool = SshPool::new(lab.settings("root", &kh));
    assert_eq!(pool.hostname(&h.target()).unwrap(), "k3sx-lab-1");
}

#[test]
fn a_regenerated_host_key_is_refused_under_both_policies() {
    let Some(mut lab) = SshLab::start(1) else {
        return;
    };
    let kh = lab.known_hosts(KnownHosts::Hashed);
    let before = std::fs::read_to_string(&kh).unwrap();
    lab.regenerate_host_key(0);
    let target = lab.host(0).target();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let pool = SshPool::new(SshSettings { policy, ..lab.settings("root", &kh) });
        let e = pool.run(&target, "true", false).unwrap_err();
        assert_eq!(e.kind(), "host_key_changed", "{policy:?}: {e}");
        let text = e.to_string();
        assert!(text.contains(&fingerprint_of(&lab, 0)) && text.contains("ssh-keygen -R"), "{text}");
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), before, "known_hosts untouched");
}

#[test]
fn a_pinned_key_connects_with_empty_known_hosts_and_a_wrong_pin_is_refused() {
    let Some(lab) = SshLab::start(2) else { return };
    let kh = lab.known_hosts(KnownHosts::Empty);
    let pool = SshPool::new(SshSettings { policy: HostKeyPolicy::AcceptNew, ..lab.settings("root", &kh) });
    let a = lab.host(0).target();
    pool.pin_host_key(&a, &lab.host(0).public_key()).unwrap();
    assert_eq!(pool.hostname(&a).unwrap(), "k3sx-lab-1");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "", "a pinned host is not recorded");

    pool.pin_host_key(&a, &lab.host(1).public_key()).unwrap();
    let e = pool.run(&a, "true", false).unwrap_err();
    assert_eq!(e.kind(), "host_key_mismatch", "{e}");
    assert!(e.to_string().contains(&fingerprint_of(&lab, 0)), "{e}");
}

#[test]
fn a_failing_command_reports_host_command_code_and_stderr_tail_with_secrets_masked() {
    let Some(lab) = SshLab::start(1) else { return };
    let pool = root_pool(&lab, KnownHosts::Plain);
    let target = lab.host(0).target();
    let out = pool.run(&target, "echo hello; echo warn >&2", false).unwrap();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "hello\n", "warn\n"));

    pool.add_secret("s3cr3t-token");
    let cmd = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i >&2; done; echo s3cr3t-token >&2; exit 3";
    let e = pool.run(&target, cmd, false).unwrap_err();
    let k3sx::ssh::SshError::Command { host, command, code, stderr_tail } = &e else { panic!("{e}") };
    assert_eq!((host.as_str(), *code), (target.as_str(), 3));
    assert!(command.contains("exit 3") && command.contains("***") && !command.contains("s3cr3t"), "{command}");
    assert!(stderr_tail.ends_with("line12\n***") && !stderr_tail.contains("line2\n"), "{stderr_tail}");
    assert!(!e.to_string().contains("s3cr3t"));

    let unchecked = pool.run_unchecked(&target, "exit 4", false).unwrap();
    assert_eq!(unchecked.code, 4);

    let piped = pool.run_with_input(&target, "read -r line; echo got:$line", b"token\n", false);
    assert_eq!(piped.unwrap().stdout, "got:token\n");
}

#[test]
fn a_command_over_its_timeout_fails_and_the_pool_recovers() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool = SshPool::new(SshSettings { command_timeout: Duration::from_secs(1), ..lab.settings("root", &kh) });
    let target = lab.host(0).target();
    let start = Instant::now();
    let e = pool.run(&target, "sleep 30", false).unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(pool.run(&target, "echo ok", false).unwrap().stdout, "ok\n");
}

#[test]
fn write_and_upload_set_the_mode_leave_no_temp_file_and_skip_identical_content() {
    let Some(lab) = SshLab::start(1) else { return };
    let pool = root_pool(&lab, KnownHosts::Plain);
    let h = lab.host(0);
    let target = h.target();
    let bin = h.root().join("usr/local/bin");

    assert!(pool.write(&target, "/usr/local/bin/tool", b"#!/bin/sh\necho v1\n", 0o755).unwrap());
    let meta = std::fs::metadata(bin.join("tool")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(pool.run(&target, "/usr/local/bin/tool", false).unwrap().stdout, "v1\n");
    assert!(!pool.write(&target, "/usr/local/bin/tool", b"#!/bin/sh\necho v1\n", 0o755).unwrap(), "identical: skipped");
    assert_eq!(std::fs::metadata(bin.join("tool")).unwrap().ino(), meta.ino(), "not rewritten");
    assert!(pool.write(&target, "/usr/local/bin/tool", b"#!/bin/sh\necho v1\n", 0o700).unwrap(), "mode differs");
    assert_eq!(std::fs::metadata(bin.join("tool")).unwrap().permissions().mode() & 0o7777, 0o700);

    let local = lab.dir().join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    assert!(pool.upload(&target, &local, "/var/lib/rancher/k3s/agent/images/payload.bin", 0o644).unwrap());
    assert!(!pool.upload(&target, &local, "/var/lib/rancher/k3s/agent/images/payload.bin", 0o644).unwrap());
    let images = h.root().join("var/lib/rancher/k3s/agent/images");
    assert_eq!(std::fs::read(images.join("payload.bin")).unwrap(), payload);
    assert_eq!(pool.read(&target, "/var/lib/rancher/k3s/agent/images/payload.bin").unwrap(), payload);

    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names(&bin), ["tool"], "no temp file left");
    assert_eq!(names(&images), ["payload.bin"], "no temp file left");
}

#[test]
fn a_sudo_user_writes_root_owned_files_through_sudo_install() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool = SshPool::new(lab.settings(USER_NOPASSWD, &kh));
    let h = lab.host(0);
    let target = h.target();
    assert_eq!(pool.run(&target, "id -un", false).unwrap().stdout.trim(), USER_NOPASSWD);
    assert_eq!(pool.run(&target, "id -u", true).unwrap().stdout.trim(), "0");
    let piped = pool.run_with_input(&target, "cat; id -u", b"in:", true).unwrap();
    assert_eq!(piped.stdout, "in:0\n", "stdin reaches the command under sudo");

    let remote = "/etc/rancher/k3s/config.yaml";
    assert!(pool.write(&target, remote, b"token-file: /x\n", 0o600).unwrap());
    let file = h.root().join("etc/rancher/k3s/config.yaml");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o7777), (0, 0o600));
    assert!(!pool.write(&target, remote, b"token-file: /x\n", 0o600).unwrap());
    // Root-only file: read falls back to `sudo -n cat`.
    assert_eq!(pool.read(&target, remote).unwrap(), b"token-file: /x\n");
    let left = pool
        .run(&target, "ls -a /tmp /etc/rancher/k3s | grep -e '^\\.k3sx-upload-' -e '\\.k3sx-' || true", false)
        .unwrap()
        .stdout;
    assert_eq!(left, "", "no temp file left");
}

#[test]
fn sudo_that_wants_a_password_fails_fast_with_a_clear_error() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool = SshPool::new(lab.settings(USER_SUDO_PASSWORD, &kh));
    let target = lab.host(0).target();
    pool.run(&target, "true", false).unwrap();
    let start = Instant::now();
    let e = pool.run(&target, "id -u", true).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(e.kind(), "sudo_password", "{e}");
    let text = e.to_string();
    assert!(text.contains("NOPASSWD") && text.contains(USER_SUDO_PASSWORD) && text.contains(&target), "{text}");
}

#[test]
fn login_uses_identity_files_when_there_is_no_agent_and_lists_what_was_tried() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let target = lab.host(0).target();
    let missing = lab.dir().join("no-such-key");
    let with_file = SshSettings {
        agent_socket: None,
        identity_files: vec![missing.clone(), lab.client_key().to_path_buf()],
        ..lab.settings("root", &kh)
    };
    assert_eq!(SshPool::new(with_file).hostname(&target).unwrap(), "k3sx-lab-1");

    let nothing = SshSettings {
        agent_socket: Some(lab.dir().join("no-agent.sock")),
        identity_files: vec![missing],
        ..lab.settings("root", &kh)
    };
    let e = SshPool::new(nothing).run(&target, "true", false).unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    let text = e.to_string();
    assert!(text.contains("ssh-agent at") && text.contains("no-such-key: no such file"), "{text}");
}

#[test]
fn wait_returns_once_the_host_answers_and_times_out_naming_it() {
    let Some(mut lab) = SshLab::start(1) else {
        return;
    };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool = SshPool::new(lab.settings("root", &kh));
    let target = lab.host(0).target();
    pool.wait(&target, Duration::from_secs(5)).unwrap();

    lab.stop_host(0);
    pool.disconnect(&target);
    let mut attempts = 0;
    let e = pool.wait_with(&target, Duration::from_secs(1), |_, _| attempts += 1).unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(attempts >= 2 && e.to_string().contains(&target), "{attempts} {e}");

    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.wait(&target, Duration::from_secs(15)));
        std::thread::sleep(Duration::from_millis(800));
        lab.start_host(0);
        waiter.join().unwrap().unwrap();
    });
}

#[test]
fn queries_on_eight_hosts_in_parallel_take_at_most_twice_one_host_and_a_down_host_is_named() {
    let Some(mut lab) = SshLab::start(8) else {
        return;
    };
    let kh = lab.known_hosts(KnownHosts::Plain);
    // The query sleeps so that it, not connection setup on a loaded 2-core
    // machine, dominates; each side is measured with fresh sessions.
    let query = "sleep 2; uname -n";
    let targets: Vec<String> = lab.hosts().iter().map(|h| h.target()).collect();
    let expected: Vec<String> = (1..=8).map(|i| format!("k3sx-lab-{i}")).collect();
    let measure = || {
        let one = SshPool::new(lab.settings("root", &kh));
        let start = Instant::now();
        one.run(&targets[0], query, false).unwrap();
        let t1 = start.elapsed();

        let pool = SshPool::new(lab.settings("root", &kh));
        let start = Instant::now();
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = targets.iter().map(|t| s.spawn(|| pool.run(t, query, false))).collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap().stdout.trim().to_string()).collect()
        });
        assert_eq!(names, expected, "each host answers with its own name");
        (t1, start.elapsed())
    };
    // Other tests run at the same time; one unlucky measurement is retried.
    let (mut t1, mut t8) = measure();
    if t8 > t1 * 2 {
        (t1, t8) = measure();
    }
    assert!(t8 <= t1 * 2, "8 hosts took {t8:?}, one took {t1:?}");

    lab.stop_host(3);
    let pool = SshPool::new(lab.settings("root", &kh));
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = targets.iter().map(|t| s.spawn(|| pool.hostname(t))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(name) => assert_eq!(name, &expected[i]),
            Err(e) => {
                assert_eq!(i, 3, "only host 3 fails: {e}");
                assert_eq!((e.kind(), e.host()), ("connect", Some(targets[3].as_str())));
            }
        }
    }
    assert!(results[3].is_err());
}

#[test]
fn files_in_private_dirs_stay_on_their_host() {
    let Some(lab) = SshLab::start(2) else { return };
    let pool = root_pool(&lab, KnownHosts::Plain);
    let (a, b) = (lab.host(0).target(), lab.host(1).target());
    let name = format!("k3sx-lab-marker-{}", std::process::id());
    let remote = format!("/usr/local/bin/{name}");
    pool.write(&a, &remote, b"#!/bin/sh\n", 0o755).unwrap();
    pool.run(&a, &format!("test -x {remote}"), false).unwrap();
    assert_eq!(pool.run_unchecked(&b, &format!("test -e {remote}"), false).unwrap().code, 1, "not on host B");
    assert!(!Path::new(&remote).exists(), "not on the machine");
    assert!(lab.host(0).root().join("usr/local/bin").join(&name).exists());
    for dir in ["/etc/rancher", "/var/lib/rancher", "/etc/systemd/system", "/var/lib/kubelet"] {
        pool.run(&a, &format!("touch {dir}/{name}"), false).unwrap();
        assert!(!Path::new(dir).join(&name).exists(), "{dir} is private");
        assert_eq!(pool.run_unchecked(&b, &format!("test -e {dir}/{name}"), false).unwrap().code, 1);
    }
    assert_eq!(pool.hostname(&a).unwrap(), "k3sx-lab-1");
    assert_eq!(pool.hostname(&b).unwrap(), "k3sx-lab-2");
}

fn machine_processes() -> String {
    String::from_utf8(Command::new("ps").args(["-eo", "pid,args"]).output().unwrap().stdout).unwrap()
}

fn machine_mounts() -> String {
    String::from_utf8(Command::new("findmnt").args(["-rn", "-o", "TARGET,SOURCE,FSTYPE"]).output().unwrap().stdout)
        .unwrap()
}

#[test]
fn stopping_the_lab_ends_every_process_and_mount_it_started() {
    let Some(lab) = SshLab::start(2) else { return };
    let pool = root_pool(&lab, KnownHosts::Plain);
    let marker = format!("{}", 900_000 + std::process::id() % 99_999);
    pool.run(&lab.host(0).target(), &format!("nohup sleep {marker} >/dev/null 2>&1 &"), false).unwrap();
    // Inside, the host sees only its own processes (sshd is PID 1).
    let inside = pool.run(&lab.host(0).target(), "ps -eo pid,args", false).unwrap().stdout;
    assert!(inside.lines().any(|l| l.trim().starts_with("1 ") && l.contains("sshd")), "{inside}");
    assert!(machine_processes().contains(&format!("sleep {marker}")));
    let dir = lab.dir().display().to_string();
    assert!(!machine_mounts().contains(&dir), "the hosts' bind mounts are not visible on the machine");
    assert!(!machine_mounts().contains("k3sx-lab-run"), "nor their /run");
    let pids: Vec<u32> = lab.hosts().iter().filter_map(|h| h.init_pid()).collect();
    assert_eq!(pids.len(), 2);
    drop(pool);
    drop(lab);

    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "sshd {pid} ended");
    }
    let ps = machine_processes();
    assert!(!ps.contains(&format!("sleep {marker}")), "background process ended:\n{ps}");
    assert!(!ps.contains(&dir), "no lab process left:\n{ps}");
    assert!(!machine_mounts().contains(&dir) && !Path::new(&dir).exists());
}

/// Whether a process runs exactly `args` on the machine (the lab hosts' PID namespaces are
/// inside the machine's, so their processes show here too).
fn running(args: &str) -> bool {
    machine_processes().lines().any(|l| l.trim_start().split_once(' ').is_some_and(|(_, a)| a.trim() == args))
}

/// Waits up to `within` for no process to run `args`.
fn ended_within(args: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while running(args) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// `sleep N` lines no other test (nor another run of this one) uses.
fn sleeps(base: u32, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("sleep {}", base + (std::process::id() % 9_999) * 10 + i)).collect()
}

#[test]
fn a_command_that_times_out_is_ended_with_its_whole_process_group() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool = SshPool::new(SshSettings { command_timeout: Duration::from_secs(1), ..lab.settings("root", &kh) });
    let target = lab.host(0).target();
    let s = sleeps(600_000, 3);
    let e = pool.run(&target, &format!("{} & {}", s[0], s[1]), false).unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(ended_within(&s[1], Duration::from_secs(3)), "the command ended: {}", machine_processes());
    assert!(ended_within(&s[0], Duration::from_secs(1)), "its background child too: {}", machine_processes());

    // One that ignores SIGTERM is killed after a grace period.
    let start = Instant::now();
    let e = pool.run(&target, &format!("trap '' TERM; {}", s[2]), false).unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(ended_within(&s[2], Duration::from_secs(6)), "killed: {}", machine_processes());
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());

    // Output and exit codes of commands that end in time are as before.
    let out = pool.run_unchecked(&target, "echo $$ >/dev/null; printf 'a\\nb'; exit 7", false).unwrap();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (7, "a\nb", ""));
}

#[test]
fn a_sudo_command_that_times_out_is_ended_as_root() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let pool =
        SshPool::new(SshSettings { command_timeout: Duration::from_secs(1), ..lab.settings(USER_NOPASSWD, &kh) });
    let target = lab.host(0).target();
    let s = sleeps(610_000, 1);
    let e = pool.run(&target, &format!("trap '' TERM; {}", s[0]), true).unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(ended_within(&s[0], Duration::from_secs(6)), "root's process ended: {}", machine_processes());
    let piped = pool.run_with_input(&target, "cat; id -u", b"in:", true).unwrap();
    assert_eq!(piped.stdout, "in:0\n", "stdin and stdout unchanged");
}

#[test]
fn a_cancelled_command_is_ended_on_the_host() {
    let Some(lab) = SshLab::start(1) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pool = SshPool::new(lab.settings("root", &kh)).with_cancel(cancel.clone());
    let target = lab.host(0).target();
    let s = sleeps(620_000, 1);
    let start = Instant::now();
    let e = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        pool.run(&target, &s[0], false).unwrap_err()
    });
    assert_eq!(e.kind(), "cancelled", "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert!(ended_within(&s[0], Duration::from_secs(3)), "ended: {}", machine_processes());
}

#[test]
fn a_revoked_host_key_is_refused_under_every_policy_and_when_pinned_naming_the_file_line() {
    let Some(lab) = SshLab::start(1) else { return };
    let h = lab.host(0);
    let target = h.target();
    // Revoked by a wildcard entry, and also listed as the host's key: revocation wins, as in OpenSSH.
    for (name, text) in [
        ("alone", format!("# revoked after the leak\n@revoked [{}]:{} {}\n", h.addr, h.port, h.public_key())),
        ("also-known", format!("[{}]:{} {}\n@revoked * {}\n", h.addr, h.port, h.public_key(), h.public_key())),
    ] {
        let kh = lab.dir().join(format!("known_hosts.revoked-{name}"));
        std::fs::write(&kh, &text).unwrap();
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
            let pool = SshPool::new(SshSettings { policy, ..lab.settings("root", &kh) });
            let e = pool.run(&target, "true", false).unwrap_err();
            assert_eq!(e.kind(), "host_key_revoked", "{name} {policy:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(&target) && msg.contains(&fingerprint_of(&lab, 0)), "{msg}");
            assert!(msg.contains(&format!("{}:2", kh.display())), "names the file and line: {msg}");
        }
        let pinned = SshPool::new(SshSettings { policy: HostKeyPolicy::AcceptNew, ..lab.settings("root", &kh) });
        pinned.pin_host_key(&target, &h.public_key()).unwrap();
        assert_eq!(pinned.run(&target, "true", false).unwrap_err().kind(), "host_key_revoked", "{name} pinned");
        assert_eq!(std::fs::read_to_string(&kh).unwrap(), text, "{name}: nothing recorded");
    }
}

#[test]
fn a_cert_authority_line_with_the_hosts_key_is_not_a_host_key_entry() {
    let Some(lab) = SshLab::start(1) else { return };
    let h = lab.host(0);
    let kh = lab.dir().join("known_hosts.ca");
    for hosts in ["*".to_string(), format!("[{}]:{}", h.addr, h.port)] {
        std::fs::write(&kh, format!("@cert-authority {hosts} {}\n", h.public_key())).unwrap();
        let e = root_pool_at(&lab, &kh).run(&h.target(), "true", false).unwrap_err();
        assert_eq!(e.kind(), "host_key_unknown", "{hosts}: {e}");
    }
    // A CA line does not hide the host's own entry after it.
    std::fs::write(&kh, format!("@cert-authority * {}\n[{}]:{} {}\n", h.public_key(), h.addr, h.port, h.public_key()))
        .unwrap();
    assert_eq!(root_pool_at(&lab, &kh).hostname(&h.target()).unwrap(), "k3sx-lab-1");
}

fn root_pool_at(lab: &SshLab, kh: &Path) -> SshPool {
    SshPool::new(lab.settings("root", kh))
}
