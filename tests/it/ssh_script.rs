//! `ssh::` from scripts: the real binary against the sshd lab (and fakepve for guest-agent pinning),
//! logging in as the non-root lab user through the lab's ssh-agent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use k3sx::ssh::PublicKey;
use serde_json::{Value, json};

use crate::lab::pve::{FakePve, PASSWORD, USER};
use crate::lab::sshd::{KnownHosts, SshLab, USER_NOPASSWD};
use crate::support::{Run, Test};

/// A test directory whose `k3sx.json` reaches the lab as the NOPASSWD sudo user through the
/// lab's agent, checking host keys against `known_hosts`; `script` is `t.rhai`.
fn lab_test(lab: &SshLab, known_hosts: &Path, script: &str) -> Test {
    lab_test_with(lab, known_hosts, script, json!({}))
}

/// [`lab_test`] with more `ssh` settings.
fn lab_test_with(lab: &SshLab, known_hosts: &Path, script: &str, ssh: Value) -> Test {
    let mut config = json!({
        "user": USER_NOPASSWD,
        "known_hosts": known_hosts,
        "connect_timeout_secs": 5,
        "command_timeout_secs": 20,
    });
    config.as_object_mut().unwrap().extend(ssh.as_object().unwrap().clone());
    Test::new()
        .file("k3sx.json", &json!({ "ssh": config }).to_string())
        .file("t.rhai", script)
        .env("SSH_AUTH_SOCK", lab.agent_socket().to_str().unwrap())
        .args(&["run", "t.rhai"])
}

/// A Rhai array literal of the lab's hosts.
fn hosts_literal(lab: &SshLab) -> String {
    let hosts: Vec<String> = lab.hosts().iter().map(|h| format!("{:?}", h.target())).collect();
    format!("[{}]", hosts.join(", "))
}

#[test]
fn a_failing_run_names_host_command_code_and_stderr_tail_and_hides_secrets() {
    let Some(lab) = SshLab::start(1) else { return };
    let h = lab.host(0).target();
    let kh = lab.known_hosts(KnownHosts::Plain);
    let run = lab_test(&lab, &kh, &format!("ssh::run({h:?}, \"echo first >&2; echo boom >&2; exit 3\");")).run();
    let run = run.status(1).stderr_has(&h).stderr_has("exit code 3").stderr_has("echo boom >&2; exit 3");
    run.stderr_has("| first").stderr_has("| boom");

    // Caught: the fields of the error map; a Secret on stdin never shown, even when the host
    // echoes it, and a Secret joined into a command is `<redacted>`, not its value.
    let script = format!(
        r#"
        let token = ssh::secret("K10-secret-token");
        try {{
            ssh::run({h:?}, "cat >&2; exit 4", #{{input: token}});
        }} catch (e) {{
            print(to_json(e));
        }}
        let r = ssh::run({h:?}, "echo out; echo err >&2; exit 5", #{{check: false, sudo: false}});
        print(to_json(r));
        try {{ ssh::query({h:?}, "sleep 5", #{{timeout: 1}}); }} catch (e) {{ print(e.kind); }}
        try {{ ssh::query({h:?}, "true", #{{sudoo: true}}); }} catch (e) {{ print(e.kind + " " + e.message); }}
        print(`echo ${{token}}`);
        "#
    );
    let run = lab_test(&lab, &kh, &script).run().status(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let e: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!((e["kind"].as_str(), e["item"].as_str(), e["host"].as_str()), (Some("command"), Some(&*h), Some(&*h)));
    assert_eq!(e["code"], 4);
    let all = lines[0];
    assert!(!run.stdout.contains("K10-secret-token") && !run.stderr.contains("K10-secret-token"), "{all}");
    assert!(e["stderr"].as_str().unwrap().contains("***"), "the echoed secret is masked: {all}");
    assert!(
        e["command"].as_str().unwrap().starts_with("sudo -n cat >&2"),
        "sudo by default for a non-root user: {all}"
    );
    assert_eq!(lines[4], "echo <redacted>", "a Secret in a string is never its value");
    let r: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(r, json!({"code": 5, "stdout": "out\n", "stderr": "err\n", "dry_run": false}));
    assert_eq!(lines[2], "timeout", "a per-command timeout");
    assert!(lines[3].starts_with("argument unknown ssh option `sudoo`"), "{}", lines[3]);

    // A host given without a port is reached on `ssh.port`.
    let lab_host = lab.host(0);
    let script = format!("print(ssh::hostname(\"{}\"));", lab_host.addr);
    let run = lab_test_with(&lab, &kh, &script, json!({"port": lab_host.port})).run().status(0);
    assert_eq!(run.stdout, "k3sx-lab-1\n");
}

#[test]
fn dry_run_prints_a_run_without_running_it_and_still_runs_a_query() {
    let Some(lab) = SshLab::start(1) else { return };
    let host = lab.host(0);
    let h = host.target();
    let kh = lab.known_hosts(KnownHosts::Plain);
    // /var/lib/rancher is the host's own (the machine's /tmp may be shared with it).
    let script = format!(
        r#"
        let r = ssh::run({h:?}, "touch /var/lib/rancher/marker-run");
        print(to_json(r));
        print(ssh::write({h:?}, "/var/lib/rancher/marker-write", "x", 0o644));
        let q = ssh::query({h:?}, "touch /var/lib/rancher/marker-query && uname -n");
        print(to_json(q));
        "#
    );
    let t = lab_test(&lab, &kh, &script);
    let run = t.run_args(&["--dry-run", "run", "t.rhai"]).status(0);
    let run = run.stderr_has(&format!("dry-run: would run on {h}: sudo -n touch /var/lib/rancher/marker-run"));
    let run = run.stderr_has(&format!("dry-run: would write {h}:/var/lib/rancher/marker-write (mode 0644, 1 bytes"));
    let run = run.stderr_has("dry run: 2 change(s) planned, none made");
    let lines: Vec<&str> = run.stdout.lines().collect();
    let json = |line: &str| serde_json::from_str::<Value>(line).unwrap();
    assert_eq!(json(lines[0]), json!({"code": 0, "stdout": "", "stderr": "", "dry_run": true}));
    assert_eq!(lines[1], "true");
    assert_eq!(json(lines[2]), json!({"code": 0, "stdout": "k3sx-lab-1\n", "stderr": "", "dry_run": false}));
    let dir = host.root().join("var/lib/rancher");
    assert!(!dir.join("marker-run").exists() && !dir.join("marker-write").exists(), "no change made");
    assert!(dir.join("marker-query").exists(), "the query ran");

    t.run().status(0);
    assert!(dir.join("marker-run").exists() && dir.join("marker-write").exists(), "without --dry-run it runs");

    // The write is now up to date: a dry run compares and plans only the command.
    let run = t.run_args(&["--dry-run", "run", "t.rhai"]).status(0);
    assert_eq!(run.stdout.lines().nth(1), Some("false"));
    assert!(!run.stderr.contains("marker-write"), "an up-to-date file is no change: {}", run.stderr);
    run.stderr_has("dry run: 1 change(s) planned, none made");
}

#[test]
fn upload_sets_the_mode_and_an_identical_second_upload_returns_false() {
    let Some(lab) = SshLab::start(1) else { return };
    let host = lab.host(0);
    let h = host.target();
    let kh = lab.known_hosts(KnownHosts::Plain);
    let script = format!(
        r#"
        print(ssh::upload({h:?}, "payload.bin", "/usr/local/bin/tool", 0o750));
        print(ssh::upload({h:?}, "payload.bin", "/usr/local/bin/tool", 0o750));
        print(ssh::write({h:?}, "/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: 600\n", 0o600));
        print(ssh::write({h:?}, "/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: 600\n", 0o600));
        print(ssh::read({h:?}, "/etc/rancher/k3s/config.yaml"));
        try {{ ssh::write({h:?}, "/tmp/x", "x", 644); }} catch (e) {{ print(e.kind + " " + e.message); }}
        "#
    );
    let t = lab_test(&lab, &kh, &script).file("payload.bin", "#!/bin/sh\necho tool\n");
    let run = t.run().status(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(&lines[..5], ["true", "false", "true", "false", "write-kubeconfig-mode: 600"]);
    assert!(lines[6].starts_with("argument mode 644 for `/tmp/x`") && lines[6].contains("0o644"), "{}", lines[6]);
    let tool = host.root().join("usr/local/bin/tool");
    assert_eq!(std::fs::metadata(&tool).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(std::fs::read_to_string(&tool).unwrap(), "#!/bin/sh\necho tool\n");
    let config = host.root().join("etc/rancher/k3s/config.yaml");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777, 0o600);
}

/// Seconds the script printed on its first line (`timestamp().elapsed`), and the rest.
fn timed(run: &Run) -> (f64, Vec<Value>) {
    let mut lines = run.stdout.lines();
    let secs = lines.next().unwrap().parse().unwrap();
    (secs, lines.map(|l| serde_json::from_str(l).unwrap()).collect())
}

#[test]
fn queries_on_eight_hosts_through_parallel_take_at_most_twice_one_host_and_a_down_host_is_named() {
    let Some(mut lab) = SshLab::start(8) else { return };
    let kh = lab.known_hosts(KnownHosts::Plain);
    let hosts = hosts_literal(&lab);
    // The query sleeps so that it, not connection setup on a loaded machine, dominates;
    // each measurement is a fresh process, so fresh sessions.
    let one = format!(
        "let t = timestamp(); let r = ssh::query({hosts}[0], \"sleep 2; uname -n\"); print(t.elapsed); print(to_json(r.stdout));"
    );
    let eight = format!(
        "let t = timestamp();\n\
         let r = parallel({hosts}, |h| ssh::query(h, \"sleep 2; uname -n\").stdout, 8);\n\
         print(t.elapsed);\n\
         print(to_json(r.map(|x| x.value)));"
    );
    let measure = || {
        let (t1, out) = timed(&lab_test(&lab, &kh, &one).run().status(0));
        assert_eq!(out[0], "k3sx-lab-1\n");
        let (t8, out) = timed(&lab_test(&lab, &kh, &eight).run().status(0));
        let expected: Vec<String> = (1..=8).map(|i| format!("k3sx-lab-{i}\n")).collect();
        assert_eq!(out[0], json!(expected), "each host answers with its own name");
        (t1, t8)
    };
    // Other tests run at the same time; one unlucky measurement is retried.
    let (mut t1, mut t8) = measure();
    if t8 > t1 * 2.0 {
        (t1, t8) = measure();
    }
    assert!(t8 <= t1 * 2.0, "8 hosts took {t8}s, one took {t1}s");

    lab.stop_host(3);
    let down = lab.host(3).target();
    let script = format!("print(to_json(parallel({hosts}, |h| ssh::hostname(h))));");
    let run = lab_test(&lab, &kh, &script).run().status(0);
    let results: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    for (i, r) in results.as_array().unwrap().iter().enumerate() {
        if i == 3 {
            assert_eq!(
                (r["ok"].as_bool(), r["item"].as_str(), r["kind"].as_str()),
                (Some(false), Some(&*down), Some("connect"))
            );
            assert!(r["error"].as_str().unwrap().contains(&down), "{r}");
        } else {
            assert_eq!(
                (r["ok"].as_bool(), r["value"].as_str()),
                (Some(true), Some(&*format!("k3sx-lab-{}", i + 1))),
                "{r}"
            );
        }
    }
}

#[test]
fn strict_policy_with_an_empty_known_hosts_is_a_catchable_host_key_unknown() {
    let Some(lab) = SshLab::start(1) else { return };
    let h = lab.host(0).target();
    let kh = lab.known_hosts(KnownHosts::Empty);
    let script = format!(
        "try {{ ssh::query({h:?}, \"true\"); print(\"connected\"); }} catch (e) {{ print(e.kind); print(e.item); }}\n\
         ssh::hostname({h:?});"
    );
    let run = lab_test(&lab, &kh, &script).run().status(1);
    assert_eq!(run.stdout, format!("host_key_unknown\n{h}\n"));
    let fp = PublicKey::parse_openssh(&lab.host(0).public_key()).unwrap().fingerprint();
    run.stderr_has(&fp).stderr_has("accept-new");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "", "nothing recorded under strict");

    // Keys pinned through the guest agent: a host nobody pinned is never trusted on first use.
    let ssh = json!({"host_keys": "guest-agent", "host_key_policy": "accept-new"});
    let run = lab_test_with(&lab, &kh, &script, ssh).run().status(1);
    assert_eq!(run.stdout, format!("host_key_unknown\n{h}\n"));
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "", "nothing recorded in guest-agent mode");
    let run = lab_test_with(&lab, &kh, &script, json!({"host_key_policy": "accept-new"})).run().status(0);
    assert_eq!(run.stdout, "connected\n", "accept-new alone records the key");
}

#[test]
fn wait_shows_progress_times_out_naming_the_host_and_returns_once_it_answers() {
    let Some(mut lab) = SshLab::start(1) else { return };
    let h = lab.host(0).target();
    let kh = lab.known_hosts(KnownHosts::Plain);
    lab.stop_host(0);
    let script = format!("try {{ ssh::wait({h:?}, 2); }} catch (e) {{ print(e.kind + \" \" + e.item); }}");
    let run = lab_test(&lab, &kh, &script).run().status(0);
    assert_eq!(run.stdout, format!("timeout {h}\n"));
    run.stderr_has(&format!("waiting for ssh on {h}"));

    let script = format!("ssh::wait({h:?}, 20); print(ssh::hostname({h:?}));");
    let t = lab_test(&lab, &kh, &script);
    let child = t.command().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    lab.start_host(0);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "k3sx-lab-1\n");
    assert!(stderr.contains(&format!("{h} answers ssh after")), "{stderr}");
}

/// An Ed25519 public key line no lab host has.
fn stranger_key(dir: &Path) -> String {
    let key = dir.join("stranger");
    let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(ok.success());
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

#[test]
fn guest_agent_pinning_connects_with_an_empty_known_hosts_and_refuses_a_mismatching_key() {
    let Some(lab) = SshLab::start(1) else { return };
    let host = lab.host(0);
    let key_file = "/etc/ssh/ssh_host_ed25519_key.pub";
    let files = |key: String| json!({"files": {key_file: key}});
    let Some(pve) = FakePve::start(json!({"vms": [
        {"vmid": 101, "name": "k3s-1", "node": "pve1", "status": "running", "agent": files(format!("{}\n", host.public_key()))},
        {"vmid": 102, "name": "k3s-2", "node": "pve1", "status": "running", "agent": files(stranger_key(lab.dir()))},
        {"vmid": 103, "name": "k3s-3", "node": "pve1", "status": "running"},
        {"vmid": 104, "name": "k3s-4", "node": "pve1", "status": "running", "agent": files(String::new())}
    ]})) else {
        return;
    };
    let h = host.target();
    let kh = lab.known_hosts(KnownHosts::Empty);
    let script = format!(
        r#"
        let vm = |id| pve::vms().filter(|v| v.vmid == id)[0];
        print(ssh::trust_vm(vm.call(101), {h:?}));
        print(ssh::hostname({h:?}));
        ssh::trust_vm(vm.call(102), {h:?});
        try {{ ssh::hostname({h:?}); print("connected"); }} catch (e) {{ print(e.kind); }}
        for id in [103, 104] {{
            try {{ ssh::trust_vm(vm.call(id), {h:?}); print("pinned"); }} catch (e) {{ print(e.kind); }}
        }}
        "#
    );
    let t = lab_test(&lab, &kh, &script)
        .env("PROXMOX_HOST", pve.host())
        .env("PROXMOX_PORT", &pve.port().to_string())
        .env("PROXMOX_USER", USER)
        .env("PROXMOX_PASSWORD", PASSWORD)
        .env("PROXMOX_CA_FILE", pve.ca_file().to_str().unwrap());
    let run = t.run().status(0);
    let fp = PublicKey::parse_openssh(&host.public_key()).unwrap().fingerprint();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines, [fp.as_str(), "k3sx-lab-1", "host_key_mismatch", "agent_not_running", "invalid_key"]);
    run.stderr_has(&format!("{h}: trusting ssh-ed25519 {fp}, read from VM pve1/101 k3s-1"));
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "", "a pinned key is not recorded in known_hosts");
    let reads: Vec<String> = pve
        .requests()
        .into_iter()
        .filter(|r| r.api_path().ends_with("/agent/file-read"))
        .map(|r| format!("{} {}", r.api_path(), r.query.replace("%2F", "/")))
        .collect();
    assert_eq!(reads[0], "/nodes/pve1/qemu/101/agent/file-read file=/etc/ssh/ssh_host_ed25519_key.pub");
}

#[test]
fn ctrl_c_stops_a_running_remote_command_and_ends_the_script() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let Some(lab) = SshLab::start(1) else { return };
    let h = lab.host(0).target();
    let kh = lab.known_hosts(KnownHosts::Plain);
    let script = format!(
        "ssh::query({h:?}, \"true\"); print(\"connected\");\n\
         ssh::query({h:?}, \"sleep 30\");\n\
         print(\"not reached\");"
    );
    let t = lab_test(&lab, &kh, &script);
    let mut child = t.command().stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "connected\n");
    std::thread::sleep(Duration::from_millis(500)); // `sleep 30` is running now
    let sent = Instant::now();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?} after Ctrl-C", sent.elapsed());
    assert_eq!(status.code(), Some(130), "the exit status of a cancelled run");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "the script ended at the cancelled command");
}
