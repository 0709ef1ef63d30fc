//! Discovery on the fakepve lab at 20 ms per response: the seed's per-node/per-VM algorithm
//! (written with k3sx's own client) against `k3sx discover --no-ip` and `k3sx discover`, and how
//! `discover --no-ip` grows from 30 to 3,000 VMs. Method and figures: `docs/performance.md`.
//!
//! ```text
//! cargo bench --bench discovery                 # everything (about 50 s on 2 cores, plus the build)
//! cargo bench --bench discovery -- compare      # only the 300-VM comparison
//! cargo bench --bench discovery -- growth       # only the growth series
//! cargo bench --bench discovery -- engine       # only k3sx's in-process share (no lab needed)
//! cargo bench --bench discovery -- serve 3000   # a lab to run or profile k3sx against by hand
//! K3SX_BENCH_BIN=/path/to/k3sx cargo bench --bench discovery   # another build on the same lab
//! ```
//! The lab sections need fakepve in `.venv` (or `K3SX_TEST_PYTHON`); without it they are skipped
//! with a note and the bench exits 0, except under `CI=true`, where that is an error. Wall times are medians of interleaved repetitions, so a burst of load
//! from another process hits every variant alike. A request count that differs from the
//! expected one exits 1; a missed speed goal is reported, not fatal (it depends on the machine).

#[path = "../tests/lab/pve.rs"]
mod pve_lab;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use k3sx::pve::{PveClient, PveSettings, normalize_tags};
use k3sx::script::api::pve::vm_map;
use k3sx::script::host::{Host, RunOptions};
use k3sx::secret::Secret;
use rhai::{Array, Dynamic, Scope};
use serde_json::{Value, json};

use pve_lab::FakePve;

const BIN: &str = env!("CARGO_BIN_EXE_k3sx");

/// The binary under test: this package's release build, or `K3SX_BENCH_BIN` to compare another
/// build of k3sx on the same lab.
fn bin() -> String {
    std::env::var("K3SX_BENCH_BIN").unwrap_or_else(|_| BIN.to_string())
}
const TOKEN_ID: &str = "k3sx";
const TOKEN_SECRET: &str = "bench-token-secret-0d3c";
/// Seconds of latency fakepve adds to every response (PVE seconds at `time_scale` 1).
const LATENCY: f64 = 0.020;
const NODES: usize = 3;

// ----------------------------------------------------------------------------- the lab

/// What a generated scenario should classify as (templates and untagged VMs excluded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    servers: usize,
    agents: usize,
    storage: usize,
    /// Distinct K3s VMs (a VM with two roles once).
    k3s: usize,
    /// VMs whose address needs the guest agent (running, agent on, no `ipconfig0`).
    agent_reads: usize,
}

/// `vms` VMs spread over 3 nodes: every 10 VMs are 2 servers (spelled `k3s-server;prod` and
/// `K3S-Server`), 4 agents (one `team-a,k3s-agent`), one agent+storage, one storage and two
/// untagged; every 25th VM is a template tagged `k3s-server`. 4 VMs in 5 have a static
/// `ipconfig0`; the others have the guest agent enabled, with interfaces when running.
/// 3 VMs in 4 are running.
fn scenario(vms: usize) -> (Value, Expected) {
    let mut list = Vec::with_capacity(vms);
    let mut exp = Expected::default();
    for i in 0..vms {
        let vmid = 1000 + i;
        let node = format!("pve{}", i % NODES + 1);
        let template = i % 25 == 24;
        let tags = if template {
            Some("k3s-server")
        } else {
            match i % 10 {
                0 => Some("k3s-server;prod"),
                1 => Some("K3S-Server"),
                2 => Some("team-a,k3s-agent"),
                3..=5 => Some("k3s-agent"),
                6 => Some("k3s-agent k3s-storage"),
                7 => Some("k3s-storage"),
                _ => None,
            }
        };
        let running = i % 4 != 3 && !template;
        let ip = format!("10.{}.{}.{}", 10 + i / 62_500, (i / 250) % 250, i % 250 + 1);
        let mut config = serde_json::Map::new();
        let mut spec = json!({"vmid": vmid, "name": format!("vm-{vmid}"), "node": node,
                              "status": if running { "running" } else { "stopped" }});
        let static_ip = i % 5 != 4;
        if static_ip {
            config.insert("ipconfig0".into(), json!(format!("ip={ip}/16,gw=10.10.0.1")));
        } else {
            config.insert("agent".into(), json!("1"));
            if running {
                spec["agent"] = json!({"interfaces": [
                    {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                    {"name": "eth0", "ip-addresses": [
                        {"ip-address": "fe80::1", "ip-address-type": "ipv6", "prefix": 64},
                        {"ip-address": ip, "ip-address-type": "ipv4", "prefix": 16}]}]});
            }
        }
        spec["config"] = Value::Object(config);
        if let Some(t) = tags {
            spec["tags"] = json!(t);
        }
        if template {
            spec["template"] = json!(true);
        }
        if let (Some(t), false) = (tags, template) {
            let t = normalize_tags(t);
            let server = t.iter().any(|t| t == "k3s-server");
            let agent = t.iter().any(|t| t == "k3s-agent");
            let storage = t.iter().any(|t| t == "k3s-storage");
            exp.servers += usize::from(server);
            exp.agents += usize::from(agent);
            exp.storage += usize::from(storage);
            if server || agent || storage {
                exp.k3s += 1;
                exp.agent_reads += usize::from(running && !static_ip);
            }
        }
        list.push(spec);
    }
    let nodes: Vec<String> = (1..=NODES).map(|n| format!("pve{n}")).collect();
    let scenario = json!({
        "tokens": {format!("{}!{TOKEN_ID}", pve_lab::USER): TOKEN_SECRET},
        "time_scale": 1.0,
        "latency": LATENCY,
        "nodes": nodes,
        "vms": list,
    });
    (scenario, exp)
}

/// The `data` of `GET /cluster/resources` for the scenario, shaped as fakepve answers it.
fn resources(scenario: &Value) -> Value {
    let mut data: Vec<Value> = Vec::new();
    for vm in scenario["vms"].as_array().into_iter().flatten() {
        let mut item = json!({"id": format!("qemu/{}", vm["vmid"]), "type": "qemu", "node": vm["node"],
                              "vmid": vm["vmid"], "name": vm["name"], "status": vm["status"],
                              "template": i32::from(vm["template"] == true), "maxmem": 2147483648u64,
                              "maxcpu": 2, "uptime": 0});
        if let Some(tags) = vm.get("tags") {
            item["tags"] = tags.clone();
        }
        data.push(item);
    }
    for node in scenario["nodes"].as_array().into_iter().flatten() {
        data.push(json!({"id": format!("node/{}", node.as_str().unwrap()), "type": "node", "node": node,
                         "status": "online"}));
    }
    Value::Array(data)
}

fn settings(pve: &FakePve) -> PveSettings {
    let mut s = PveSettings::new(pve.host(), pve_lab::USER);
    s.port = pve.port();
    s.token_id = Some(TOKEN_ID.into());
    s.token_secret = Some(Secret::new(TOKEN_SECRET));
    s.ca_file = Some(pve.ca_file().to_path_buf());
    s
}

// -------------------------------------------------------------------- what is measured

/// The seed's discovery, with k3sx's client: `GET /nodes`, then per node `GET /nodes/{n}/qemu`,
/// then per VM `GET .../config` for its tags; one request at a time. Returns (servers, agents, storage).
fn seed_discovery(pve: &FakePve) -> (usize, usize, usize) {
    let client = PveClient::new(settings(pve)).expect("client");
    let mut found: [Vec<(String, u64)>; 3] = Default::default();
    let nodes = client.get("/nodes", &[]).expect("GET /nodes");
    for node in nodes.as_array().expect("node list") {
        if node["status"] != "online" {
            continue;
        }
        let name = node["node"].as_str().expect("node name");
        let vms = client.get(&format!("/nodes/{name}/qemu"), &[]).expect("GET qemu");
        for vm in vms.as_array().expect("VM list") {
            let vmid = vm["vmid"].as_u64().expect("vmid");
            let config = client.vm_config(name, vmid as u32).expect("GET config");
            // Real PVE flags a template in both answers; fakepve only in the list.
            let flagged = |v: Option<&Value>| v.is_some_and(|t| t == 1 || t == "1");
            if flagged(vm.get("template")) || flagged(config.get("template")) {
                continue;
            }
            let tags = normalize_tags(config.get("tags").and_then(Value::as_str).unwrap_or(""));
            for (list, tag) in found.iter_mut().zip(["k3s-server", "k3s-agent", "k3s-storage"]) {
                if tags.iter().any(|t| t == tag) {
                    list.push((name.to_string(), vmid));
                }
            }
        }
    }
    for list in &mut found {
        list.sort();
    }
    (found[0].len(), found[1].len(), found[2].len())
}

/// Runs the release `k3sx` against the lab in `dir` (HOME too), environment isolated as in the
/// CLI tests; returns stdout. Panics unless it exits 0.
fn k3sx(pve: &FakePve, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("PROXMOX_") || k.starts_with("K3SX_") || k.starts_with("XDG_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("PROXMOX_HOST", pve.host())
        .env("PROXMOX_PORT", pve.port().to_string())
        .env("PROXMOX_USER", pve_lab::USER)
        .env("PROXMOX_CA_FILE", pve.ca_file())
        .env("PROXMOX_API_TOKEN_ID", TOKEN_ID)
        .env("PROXMOX_API_TOKEN_SECRET", TOKEN_SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("k3sx runs");
    assert!(out.status.success(), "k3sx {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// (servers, agents, storage, VMs with an address) of `discover --json` output.
fn classified(stdout: &str) -> (usize, usize, usize, usize) {
    let out: Value = serde_json::from_str(stdout).expect("discover --json output");
    let len = |k: &str| out[k].as_array().map_or(0, Vec::len);
    let with_ip = ["servers", "agents", "storage"]
        .iter()
        .flat_map(|k| out[*k].as_array().into_iter().flatten())
        .filter(|vm| !vm["ip"].is_null())
        .count();
    (len("servers"), len("agents"), len("storage"), with_ip)
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2 }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 { format!("{:.2} s", ms / 1e3) } else { format!("{ms:.1} ms") }
}

/// `min–max` of the samples, for the spread column.
fn spread(samples: &[Duration]) -> String {
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    format!("{}–{}", ms(min), ms(max))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Requests fakepve logged since the last clear, and clears the log.
fn take_requests(pve: &FakePve) -> usize {
    let n = pve.requests().len();
    pve.clear_requests();
    n
}

fn check(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

// ---------------------------------------------------------------------------- sections

/// 3 nodes × 100 VMs: (a) seed algorithm, (b) `discover --no-ip`, (c) `discover`.
fn compare(failures: &mut Vec<String>) {
    let (scenario, exp) = scenario(300);
    let Some(pve) = FakePve::start(scenario) else { std::process::exit(0) };
    let dir = tempfile::tempdir().expect("temp dir");
    println!("\n## 300 VMs on 3 nodes, {} ms per response (load before: {})", LATENCY * 1e3, loadavg());

    // One checked run of each first: right answer, and the request count.
    pve.clear_requests();
    let seed = seed_discovery(&pve);
    let seed_requests = take_requests(&pve);
    assert_eq!(seed, (exp.servers, exp.agents, exp.storage), "the seed algorithm classifies like the scenario");
    let no_ip = classified(&k3sx(&pve, dir.path(), &["--json", "discover", "--no-ip"]));
    let no_ip_requests = take_requests(&pve);
    assert_eq!((no_ip.0, no_ip.1, no_ip.2), seed, "discover --no-ip finds what the seed finds");
    let full = classified(&k3sx(&pve, dir.path(), &["--json", "discover"]));
    let full_requests = take_requests(&pve);
    assert_eq!((full.0, full.1, full.2), seed, "discover finds what the seed finds");
    assert_eq!(full.3, no_ip.0 + no_ip.1 + no_ip.2, "discover finds an address for every listed VM");
    let expected_seed = 1 + NODES + 300;
    let expected_full = 1 + exp.k3s + exp.agent_reads;
    for (what, got, want) in [
        ("seed algorithm", seed_requests, expected_seed),
        ("discover --no-ip", no_ip_requests, 1),
        ("discover", full_requests, expected_full),
    ] {
        if got != want {
            failures.push(format!("{what}: {got} requests, expected {want}"));
        }
    }

    // Interleaved rounds: the seed once, --no-ip 4 times, full twice per round.
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(timed(|| seed_discovery(&pve)).0);
        for _ in 0..4 {
            b.push(timed(|| k3sx(&pve, dir.path(), &["discover", "--no-ip"])).0);
        }
        for _ in 0..2 {
            c.push(timed(|| k3sx(&pve, dir.path(), &["discover"])).0);
        }
    }
    pve.clear_requests();
    let (ma, mb, mc) = (median(&a), median(&b), median(&c));
    println!("(load after: {})\n", loadavg());
    println!("| variant | requests | median | min–max | runs | speed-up vs (a) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, req: usize, s: &[Duration], m: Duration| {
        let up = ma.as_secs_f64() / m.as_secs_f64();
        println!("| {name} | {req} | {} | {} | {} | {up:.1}× |", ms(m), spread(s), s.len());
    };
    row("(a) seed: /nodes + per node + per VM config, sequential", seed_requests, &a, ma);
    row("(b) `k3sx discover --no-ip`", no_ip_requests, &b, mb);
    row("(c) `k3sx discover` (16 reads at a time)", full_requests, &c, mc);
    let (sb, sc) = (ma.as_secs_f64() / mb.as_secs_f64(), ma.as_secs_f64() / mc.as_secs_f64());
    println!(
        "\nclassified: {} servers, {} agents, {} storage ({} distinct K3s VMs, {} addresses from the guest agent)",
        exp.servers, exp.agents, exp.storage, exp.k3s, exp.agent_reads
    );
    println!("acceptance: (b) 1 request: {}", check(no_ip_requests == 1));
    println!("acceptance: (b) >= 50x faster than (a): {} ({sb:.1}x)", check(sb >= 50.0));
    println!("acceptance: (c) >= 8x faster than (a): {} ({sc:.1}x)", check(sc >= 8.0));
}

/// `discover --no-ip` at 30, 300 and 3,000 VMs, with the lab's own share measured alongside.
fn growth(failures: &mut Vec<String>) {
    const RUNS: usize = 7;
    println!("\n## Growth of `discover --no-ip`, {} ms per response", LATENCY * 1e3);
    let mut rows = Vec::new();
    for size in [30, 300, 3000] {
        let (scenario, exp) = scenario(size);
        let (startup, pve) = timed(|| FakePve::start(scenario));
        let Some(pve) = pve else { std::process::exit(0) };
        let dir = tempfile::tempdir().expect("temp dir");
        let load_before = loadavg();
        // Scripts that stop after each stage of `discover --no-ip`, to see where time goes.
        let scripts = [
            ("empty.rhai", ""),
            ("version.rhai", "let v = pve::get(\"/version\");\n"),
            ("cluster.rhai", "let c = pve::cluster();\n"),
            ("load.rhai", "import \"inventory\" as inventory;\nlet found = inventory::load(false);\n"),
        ];
        for (name, text) in scripts {
            std::fs::write(dir.path().join(name), text).expect("write script");
        }
        let out = classified(&k3sx(&pve, dir.path(), &["--json", "discover", "--no-ip"]));
        assert_eq!((out.0, out.1, out.2), (exp.servers, exp.agents, exp.storage), "{size} VMs classified");
        let requests = take_requests(&pve);
        if requests != 1 {
            failures.push(format!("discover --no-ip at {size} VMs: {requests} requests, expected 1"));
        }

        // Per round, in-process: a fresh client's first GET /cluster/resources (TLS handshake +
        // latency + fakepve + transfer + JSON parse), the same GET on the warm connection, and a
        // warm GET /version; then the release binary: the stage scripts and the command itself.
        let mut s: [Vec<Duration>; 8] = Default::default();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let client = PveClient::new(settings(&pve)).expect("client");
            s[0].push(timed(|| client.get("/cluster/resources", &[]).expect("GET")).0);
            let (t, data) = timed(|| client.get("/cluster/resources", &[]).expect("GET"));
            s[1].push(t);
            bytes = data.to_string().len();
            s[2].push(timed(|| client.get("/version", &[]).expect("GET")).0);
            for (i, script) in ["empty.rhai", "version.rhai", "cluster.rhai", "load.rhai"].iter().enumerate() {
                s[3 + i].push(timed(|| k3sx(&pve, dir.path(), &["run", script])).0);
            }
            s[7].push(timed(|| k3sx(&pve, dir.path(), &["discover", "--no-ip"])).0);
        }
        pve.clear_requests();
        let m: Vec<Duration> = s.iter().map(|v| median(v)).collect();
        println!(
            "{size:>5} VMs: lab started in {}, /cluster/resources data {} kB, load {load_before} -> {}",
            ms(startup),
            bytes / 1000,
            loadavg()
        );
        rows.push((size, m, s));
    }
    println!("\nmedians of {RUNS} interleaved runs (min–max below each)\n");
    println!(
        "| VMs | raw GET, new client | raw GET, warm | fakepve share¹ | `k3sx run` empty | \
         `pve::get(\"/version\")` | `pve::cluster()` | `inventory::load` | `discover --no-ip` | k3sx's own² |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (size, m, s) in &rows {
        let lab = m[1].saturating_sub(Duration::from_secs_f64(LATENCY));
        let own = m[7].saturating_sub(m[0]);
        let cells: Vec<String> = [m[0], m[1], lab, m[3], m[4], m[5], m[6]].iter().map(|d| ms(*d)).collect();
        println!("| {size} | {} | **{}** | {} |", cells.join(" | "), ms(m[7]), ms(own));
        let sp: Vec<String> = s.iter().map(|v| spread(v)).collect();
        println!("| | {} | {} | | {} | {} | {} | {} | {} | |", sp[0], sp[1], sp[3], sp[4], sp[5], sp[6], sp[7]);
    }
    println!(
        "\n¹ warm GET minus the {} ms injected latency: fakepve building and sending the answer.\n\
         ² `discover --no-ip` minus the new-client GET: process start, engine, config, TLS set-up, \
         conversion, classification, output.",
        LATENCY * 1e3
    );
    let (first, last) = (&rows[0].1, &rows[rows.len() - 1].1);
    let growth = last[7].as_secs_f64() / first[7].as_secs_f64();
    println!("\nacceptance: discover --no-ip 30 -> 3000 VMs grows <= 1.5x: {} ({growth:.2}x)", check(growth <= 1.5));
    let (own_first, own_last) = (first[7].saturating_sub(first[0]), last[7].saturating_sub(last[0]));
    println!(
        "k3sx's own part 30 -> 3000 VMs: {} -> {} ({:.2}x); fixed cost of the first request in a \
         process (version script - empty script - warm GET): {}",
        ms(own_first),
        ms(own_last),
        own_last.as_secs_f64() / own_first.as_secs_f64().max(1e-9),
        ms(first[4].saturating_sub(first[3]).saturating_sub(first[2]))
    );
}

/// `-- serve VMS`: starts the lab with VMS VMs, prints the environment that points k3sx at it
/// and keeps it up until stdin closes — to profile or time k3sx by hand.
fn serve(vms: usize) {
    let (scenario, exp) = scenario(vms);
    let Some(pve) = FakePve::start(scenario) else { return };
    println!("# lab with {vms} VMs ({exp:?}); paste into a shell:");
    println!("export PROXMOX_HOST={} PROXMOX_PORT={} PROXMOX_USER={}", pve.host(), pve.port(), pve_lab::USER);
    println!("export PROXMOX_CA_FILE={}", pve.ca_file().display());
    println!("export PROXMOX_API_TOKEN_ID={TOKEN_ID} PROXMOX_API_TOKEN_SECRET={TOKEN_SECRET}");
    println!("# up until stdin closes");
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

/// The classification `discover --no-ip` runs (`inventory::by_tags`, then a sort per role).
const CLASSIFY: &str = r#"
import "inventory" as inventory;
let f = inventory::by_tags(vms);
#{servers: inventory::sort_vms(f.servers), agents: inventory::sort_vms(f.agents),
  storage: inventory::sort_vms(f.storage)}
"#;
/// The table rows of `scripts/discover.rhai`, as it builds them (a `push` per row).
const ROWS_PUSH: &str = r#"
import "inventory" as inventory;
let rows = [];
for role in [["server", found.servers], ["agent", found.agents], ["storage", found.storage]] {
    for vm in role[1] { let r = inventory::summary(vm); r.role = role[0]; rows.push(r); }
}
rows.len()
"#;
/// The same rows built with `map` and `+=`: one size check per role instead of one per row.
const ROWS_MAP: &str = r#"
import "inventory" as inventory;
let rows = [];
for role in [["server", found.servers], ["agent", found.agents], ["storage", found.storage]] {
    let name = role[0];
    rows += role[1].map(|vm| { let r = inventory::summary(vm); r.role = name; r });
}
rows.len()
"#;

/// k3sx's own work on the answer, in-process and without a lab: JSON parse into the typed
/// cluster, conversion to Rhai values, classification and table rows with k3sx's engine —
/// as built (data-size limits on) and with the limits off, which skips Rhai's per-call
/// re-measuring of the mutated array.
fn engine() {
    const RUNS: usize = 5;
    println!(
        "
## In-process: k3sx's engine on the /cluster/resources answer (no lab, medians of {RUNS})
"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let options = RunOptions { cwd: dir.path().to_path_buf(), ..RunOptions::default() };
    let host = Host::new(k3sx::config::Loaded::defaults(), options, rhai::Map::new(), Arc::new(AtomicBool::new(false)));
    println!(
        "| VMs | JSON text → typed (serde + parse) | typed → Rhai maps | classify, limits on | rows (`push`), limits on | \
         rows (`map`), limits on | classify, limits off | rows (`push`), limits off |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in [30, 300, 3000] {
        let (scenario, exp) = scenario(size);
        let text = serde_json::to_string(&json!({"data": resources(&scenario)})).unwrap();
        let mut t: [Vec<Duration>; 7] = Default::default();
        let engines = {
            let on = k3sx::script::build_engine(&host);
            let mut off = k3sx::script::build_engine(&host);
            off.set_max_string_size(0);
            off.set_max_array_size(0);
            off.set_max_map_size(0);
            [on, off]
        };
        for _ in 0..RUNS {
            let (d, cluster) = timed(|| {
                let v: Value = serde_json::from_str(&text).unwrap();
                k3sx::pve::parse_resources(&v["data"]).unwrap()
            });
            t[0].push(d);
            let (d, vms) = timed(|| cluster.vms.iter().map(vm_map).collect::<Array>());
            t[1].push(d);
            for (e, engine) in engines.iter().enumerate() {
                let run = |script: &str, name: &str, value: Dynamic| {
                    let ast = engine.compile(script).expect("compiles");
                    let mut scope = Scope::new();
                    scope.push(name, value);
                    timed(|| engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast).expect("runs"))
                };
                let (d, found) = run(CLASSIFY, "vms", Dynamic::from_array(vms.clone()));
                t[if e == 0 { 2 } else { 5 }].push(d);
                let (d, rows) = run(ROWS_PUSH, "found", found.clone());
                t[if e == 0 { 3 } else { 6 }].push(d);
                assert_eq!(rows.as_int().unwrap() as usize, exp.servers + exp.agents + exp.storage);
                if e == 0 {
                    t[4].push(run(ROWS_MAP, "found", found).0);
                }
            }
        }
        let m: Vec<String> = t.iter().map(|v| ms(median(v))).collect();
        println!("| {size} | {} | {} | {} | {} | {} | {} | {} |", m[0], m[1], m[2], m[3], m[4], m[5], m[6]);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else not starting with `-` picks sections.
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |s: &str| picked.is_empty() || picked.iter().any(|p| s.contains(p.as_str()));
    let lab = pve_lab::python().is_some();
    if !lab {
        println!("discovery bench: fakepve is not installed (create .venv, see .ci/run): lab sections skipped");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# discovery bench: {cores} cores, load {}, binary {}", loadavg(), bin());
    if let Some(size) = picked.iter().position(|p| p == "serve").and_then(|i| picked.get(i + 1)) {
        serve(size.parse().expect("serve VMS"));
        return;
    }
    let mut failures = Vec::new();
    let start = Instant::now();
    if lab && want("compare") {
        compare(&mut failures);
    }
    if lab && want("growth") {
        growth(&mut failures);
    }
    if want("engine") {
        engine();
    }
    println!("\ntotal bench time {}", ms(start.elapsed()));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
