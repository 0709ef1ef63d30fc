//! `k3sx upgrade` of one minor (v1.31.12 -> v1.32.8) on 3 servers + 6 agents against the K3s
//! stand-in, whose restarted node is back 3 s after its service starts (Ready and, for a
//! server, an etcd voter): the wall time against the critical path (3 servers in sequence,
//! then the 6 agents at once with `--parallel 6`), and the second upgrade that has nothing
//! to do. `cargo bench --bench upgrade` (root; needs the lab's prerequisites: `bash tests/setup`).

#[path = "../tests/lab/mod.rs"]
#[allow(dead_code)]
mod lab;
mod site;

use std::time::Duration;

use lab::k3s_lab::Delays;
use site::{Site, median};

const SERVERS: usize = 3;
const AGENTS: usize = 6;
const RUNS: usize = 3;
const FROM: &str = "v1.31.12+k3s1";
const TO: &str = "v1.32.8+k3s1";

struct Figures {
    upgrade: Duration,
    again: Duration,
    installs: usize,
    again_installs: usize,
}

/// A restart that takes 3 s: the service notifies systemd after 1 s, its Node is Ready and a
/// server a voter 3 s after it started.
fn delays() -> Delays {
    Delays { install: 0.2, start: 1.0, ready: 3.0, learner: 3.0, ..Delays::default() }
}

/// The stand-in's own time on the critical path: per server its binary download, then its
/// restart until it is Ready and a voter (a restarted server is a learner from the moment it
/// rejoins, `start` after its process started); the agents all at once, so one agent's.
fn critical_path(d: &Delays) -> f64 {
    let server = d.install + d.ready.max(d.start + d.learner);
    let agent = d.install + d.start.max(d.ready);
    SERVERS as f64 * server + agent
}

fn one_run() -> Figures {
    let site = Site::start(SERVERS, AGENTS, delays(), FROM);
    site.k3sx(&["-q", "provision"]);
    let before = site.lab.installs().len();
    let upgrade = site.k3sx(&["-q", "upgrade", "--to", TO, "--parallel", "6"]);
    let installs = site.lab.installs().len() - before;
    let again = site.k3sx(&["-q", "upgrade", "--parallel", "6"]);
    Figures { upgrade, again, installs, again_installs: site.lab.installs().len() - before - installs }
}

fn main() {
    let runs: Vec<Figures> = (0..RUNS).map(|_| one_run()).collect();
    let cp = critical_path(&delays());
    let times = |f: fn(&Figures) -> Duration| -> Vec<f64> { runs.iter().map(|r| f(r).as_secs_f64()).collect() };
    let range = |xs: &[f64]| (xs.iter().cloned().fold(f64::MAX, f64::min), xs.iter().cloned().fold(0.0, f64::max));
    let upgrade = median(runs.iter().map(|f| f.upgrade).collect()).as_secs_f64();
    let again = median(runs.iter().map(|f| f.again).collect()).as_secs_f64();
    let (lo, hi) = range(&times(|f| f.upgrade));
    println!("upgrade {FROM} -> {TO}, {SERVERS} servers + {AGENTS} agents, restart 3 s (median of {RUNS}):");
    println!("  critical path   {cp:>6.2} s   (3 servers in sequence, each back and a voter, + 6 agents at once)");
    println!("  upgrade         {upgrade:>6.2} s   ({:.2}x the critical path; min {lo:.2}, max {hi:.2})", upgrade / cp);
    println!(
        "  beyond it       {:>6.2} s   (survey and plan, etcd snapshot, stopping the old services, polling)",
        upgrade - cp
    );
    println!("  second upgrade  {again:>6.2} s   (nothing to do)");
    println!(
        "  installs        {} per upgrade, {} by the second (goal 0)",
        runs[0].installs,
        runs.iter().map(|f| f.again_installs).max().unwrap_or(0)
    );
}
