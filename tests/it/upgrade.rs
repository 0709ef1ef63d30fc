//! `upgrade` end to end: a cluster provisioned on the K3s stand-in lab (fakepve for the VMs),
//! upgraded minor by minor; the stand-in's event log shows the order it happened in.

use crate::lab::k3s_lab::{Fault, Install, K3sOptions};
use crate::provision::Site;

/// The times at which `kind` events happened, with the node each names.
fn timed(site: &Site, kind: &str) -> Vec<(f64, String)> {
    site.lab
        .events_of(kind)
        .iter()
        .map(|e| (e["ts"].as_f64().unwrap(), e["node"].as_str().or(e["host"].as_str()).unwrap_or("").to_string()))
        .collect()
}

#[test]
fn upgrade_goes_minor_by_minor_servers_one_at_a_time_each_a_voter_before_the_next() {
    // A restarted server stays a learner longer than it takes to be Ready: an upgrade that
    // only waited for Ready would restart the next server while one is still a learner.
    let mut opts = K3sOptions::default();
    opts.delays.learner = 1.5;
    let Some(site) = Site::at_version(9, 3, "v1.30.14+k3s2", opts) else { return };
    site.provision(&[]).status(0);
    let provisioned = site.lab.installs().len();
    assert_eq!(provisioned, 9);

    // A downgrade is refused before anything changes.
    site.run(&["upgrade", "--to", "v1.30.12+k3s1"]).status(1).stderr_has("downgrades are not supported");

    // The dry run: the plan, every command, nothing done.
    let dry = site.run(&["--dry-run", "upgrade", "--to", "v1.32.8+k3s1"]).status(0);
    for step in ["1/2", "2/2", "v1.31.12+k3s1", "v1.32.8+k3s1"] {
        assert!(dry.stdout.contains(step), "the plan lacks {step}:\n{}", dry.stdout);
    }
    let planned_installs =
        dry.stderr.lines().filter(|l| l.contains("would run on") && l.contains("INSTALL_K3S_VERSION")).count();
    assert_eq!(planned_installs, 18, "every node, each step:\n{}", dry.stderr);
    let dry = dry.stderr_has("k3s etcd-snapshot save --name k3sx-pre-upgrade-").stderr_has("k3s.version");
    assert!(dry.stderr.contains("would write") && dry.stderr.contains("k3sx.json"), "{}", dry.stderr);
    assert_eq!(site.lab.installs().len(), provisioned, "a dry run installed");
    assert!(site.lab.events_of("etcd-snapshot").is_empty(), "a dry run saved a snapshot");
    assert_eq!(site.configured_version(), "v1.30.14+k3s2");

    let run = site.run(&["upgrade", "--to", "v1.32.8+k3s1", "--timeout", "60"]).status(0);
    let snapshots = site.lab.events_of("etcd-snapshot");
    assert_eq!(snapshots.len(), 1, "one etcd snapshot per run: {snapshots:?}");
    let snapshot_name = snapshots[0]["name"].as_str().unwrap();
    assert!(snapshot_name.starts_with("k3sx-pre-upgrade-"), "{snapshot_name}");
    assert!(run.stderr.contains(snapshot_name), "the output names the snapshot:\n{}", run.stderr);

    let installs: Vec<Install> = site.lab.installs().into_iter().skip(provisioned).collect();
    assert_eq!(installs.len(), 18, "{installs:?}");
    assert!(installs.iter().all(|i| i.outcome == "started"), "{installs:?}");
    let first_server = installs.iter().filter(|i| i.role == "server").map(|i| i.started).fold(f64::MAX, f64::min);
    assert!(snapshots[0]["ts"].as_f64().unwrap() <= first_server, "the snapshot comes before the first server");
    let voters = timed(&site, "etcd-voter");
    // The stand-in logs `etcd-voter` just after the datastore says so, and k3sx may act on
    // the datastore a few milliseconds before the line is written; skipping the voter wait
    // would be early by about the learner delay (1.2 s more than Ready).
    const SLACK: f64 = 0.1;
    let mut previous_step_end = 0.0;
    for version in ["v1.31.12+k3s1", "v1.32.8+k3s1"] {
        let step: Vec<&Install> = installs.iter().filter(|i| i.version.as_deref() == Some(version)).collect();
        assert_eq!(step.len(), 9, "{version}: {step:?}");
        let servers: Vec<&&Install> = step.iter().filter(|i| i.role == "server").collect();
        let agents: Vec<&&Install> = step.iter().filter(|i| i.role == "agent").collect();
        assert!(servers[0].started >= previous_step_end, "{version} starts after the step before");
        // Each server is an etcd voter again before the next one restarts.
        let mut voter_at = Vec::new();
        for s in &servers {
            let at = voters.iter().find(|(ts, node)| *node == s.host && *ts >= s.started).map(|(ts, _)| *ts);
            voter_at.push(at.unwrap_or_else(|| panic!("{} never became a voter again on {version}", s.host)));
        }
        for k in 1..servers.len() {
            assert!(
                servers[k].started >= servers[k - 1].finished && servers[k].started + SLACK >= voter_at[k - 1],
                "{version}: {} restarted before {} was a voter again",
                servers[k].host,
                servers[k - 1].host
            );
        }
        let servers_done = voter_at.iter().cloned().fold(0.0, f64::max);
        let first_agent = agents.iter().map(|a| a.started).fold(f64::MAX, f64::min);
        assert!(
            first_agent + SLACK >= servers_done,
            "{version}: agents after every server: {first_agent} < {servers_done}"
        );
        previous_step_end = step.iter().map(|i| i.finished).fold(0.0, f64::max);
    }
    let versions = site.versions();
    assert!(versions.iter().all(|(_, v)| v == "v1.32.8+k3s1"), "{versions:?}");
    let members = site.lab.etcd_members();
    assert_eq!(members.iter().filter(|m| m["voter"] == true).count(), 3, "{members:?}");
    assert_eq!(site.configured_version(), "v1.32.8+k3s1", "k3s.version follows the cluster");

    // A second upgrade (to the configured version now) finds nothing to do.
    site.run(&["upgrade"]).status(0).stderr_has("nothing to do");
    site.run(&["--expect-no-changes", "upgrade"]).status(0);
    assert_eq!(site.lab.installs().len(), provisioned + 18, "a second upgrade installed");
    assert_eq!(site.lab.events_of("etcd-snapshot").len(), 1);
}

#[test]
fn a_server_that_does_not_come_back_stops_the_upgrade_and_is_rolled_back() {
    let Some(site) = Site::at_version(4, 3, "v1.31.12+k3s1", K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    let provisioned = site.lab.installs().len();
    site.lab.set_fault(1, Fault::NeverReady);
    site.pve.clear_requests();

    let run =
        site.run(&["--yes", "upgrade", "--to", "v1.32.8+k3s1", "--snapshot", "--drain", "--timeout", "5"]).status(1);
    let run = run.stderr_has("k3s-102").stderr_has("step 1/1 (v1.32.8+k3s1)").stderr_has("k3sx-pre-upgrade-");
    let upgraded: Vec<usize> = site.lab.installs().iter().skip(provisioned).map(|i| i.index).collect();
    assert_eq!(upgraded, [1, 2], "the first server, then the failing one; nothing after it:\n{}", run.stderr);
    let versions = site.versions();
    let of = |i: usize| versions.iter().find(|(n, _)| *n == format!("k3sx-lab-{i}")).unwrap().1.clone();
    assert_eq!(of(1), "v1.32.8+k3s1");
    assert_eq!((of(3), of(4)), ("v1.31.12+k3s1".to_string(), "v1.31.12+k3s1".to_string()), "{versions:?}");
    assert_eq!(site.configured_version(), "v1.31.12+k3s1", "k3s.version is not updated by a failed upgrade");
    // --drain: the upgraded server was cordoned, drained and uncordoned; the failed one is left
    // cordoned (named in the report), the untouched ones were never cordoned.
    let cordoned = |i: usize| site.lab.node(&format!("k3sx-lab-{i}")).unwrap()["spec"]["unschedulable"] == true;
    assert_eq!((cordoned(1), cordoned(2), cordoned(3), cordoned(4)), (false, true, false, false));
    run.stderr_has("done: Proxmox snapshot k3sx-pre-v1-32-8-k3s1, cordoned, drained, installed v1.32.8+k3s1");

    // Proxmox snapshots before each server's step; the failed one rolled back and started.
    let writes: Vec<String> =
        site.pve.requests().into_iter().filter(|r| r.method == "POST").map(|r| r.api_path().to_string()).collect();
    assert!(writes.contains(&"/nodes/pve1/qemu/101/snapshot".to_string()), "{writes:?}");
    assert!(writes.contains(&"/nodes/pve1/qemu/102/snapshot/k3sx-pre-v1-32-8-k3s1/rollback".to_string()), "{writes:?}");
    assert!(
        !writes.iter().any(|w| w.contains("/101/snapshot/") && w.ends_with("rollback")),
        "only the failed VM: {writes:?}"
    );
    assert!(!writes.iter().any(|w| w.contains("/qemu/103/")), "the third server untouched: {writes:?}");
    assert_eq!(site.pve.vm(102)["status"], "running", "started again after the rollback");
}
