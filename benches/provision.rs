//! `k3sx provision` on 3 servers + 6 agents against the K3s stand-in, whose install takes 3 s
//! and whose nodes are Ready 1.5 s after they start: the wall time against the critical path
//! (the bootstrap server, two server joins one after the other, one agent, MetalLB's
//! readiness), and a re-run on the healthy cluster.
//! `cargo bench --bench provision` (root; needs the lab's prerequisites: `bash tests/setup`).

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

struct Figures {
    provision: Duration,
    rerun: Duration,
    installs: usize,
    rerun_installs: usize,
}

fn delays() -> Delays {
    Delays { install: 3.0, ready: 1.5, learner: 0.5, metallb: 1.0, ..Delays::default() }
}

/// The stand-in's own time on the critical path: per server and for the agent its install,
/// start and readiness (a server also until it is a voter), then MetalLB's controller.
fn critical_path(d: &Delays) -> f64 {
    let server = d.install + d.start + d.ready.max(d.learner);
    let agent = d.install + d.start + d.ready;
    SERVERS as f64 * server + agent + d.metallb + d.webhook_lag
}

fn one_run() -> Figures {
    let site = Site::start(SERVERS, AGENTS, delays(), "v1.32.4+k3s1");
    let provision = site.k3sx(&["-q", "provision"]);
    let installs = site.lab.installs().len();
    let rerun = site.k3sx(&["-q", "provision"]);
    Figures { provision, rerun, installs, rerun_installs: site.lab.installs().len() - installs }
}

fn main() {
    let runs: Vec<Figures> = (0..RUNS).map(|_| one_run()).collect();
    let cp = critical_path(&delays());
    let provision = median(runs.iter().map(|f| f.provision).collect()).as_secs_f64();
    let rerun = median(runs.iter().map(|f| f.rerun).collect()).as_secs_f64();
    println!("provision, {SERVERS} servers + {AGENTS} agents, install 3 s, Ready 1.5 s (median of {RUNS}):");
    println!("  critical path   {cp:>6.2} s   (bootstrap + 2 server joins in sequence + 1 agent + MetalLB)");
    println!("  provision       {provision:>6.2} s   ({:.2}x the critical path; goal <= 1.15x)", provision / cp);
    println!("  re-run          {rerun:>6.2} s   (goal <= 1.5 s)");
    println!(
        "  installs        {} per provision, {} per re-run (goal 0)",
        runs[0].installs,
        runs.iter().map(|f| f.rerun_installs).max().unwrap_or(0)
    );
}
