//! Start-up cost of the real binary: `k3sx --version` (goal ≤ 5 ms) and an empty script
//! (goal ≤ 40 ms: engine build, config load, resolver), on a release build:
//! `cargo bench --bench startup`.

use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};

const BIN: &str = env!("CARGO_BIN_EXE_k3sx");

fn run(args: &[&str], dir: &std::path::Path) {
    let status = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("k3sx runs");
    assert!(status.success());
}

fn startup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.rhai"), "").unwrap();
    let mut group = c.benchmark_group("startup");
    group.bench_function("version", |b| b.iter(|| run(&["--version"], dir.path())));
    group.bench_function("empty_script", |b| b.iter(|| run(&["run", "empty.rhai"], dir.path())));
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
