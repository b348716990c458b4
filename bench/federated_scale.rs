//! Scale: 1,000 simulated clients of the small CNN on 28×28 synthetic scans, 5 FedAvg rounds
//! with every client training every round, 100 of them malicious (backdoor), plus the clean
//! federated baseline. Prints wall time and the process's peak resident memory (VmHWM).
//!
//! Run: ./scripts/bench federated_scale
//! env: BENCH_CLIENTS=1000, BENCH_ROUNDS=5, BENCH_WORKERS=0, BENCH_FRACTION=1.0 (share of the
//! clients drawn to train and to evaluate each round; e.g. 0.02 for 10,000 clients on a CPU).

use fedsentry::config;
use fedsentry::study::{self, RunOptions};
use std::time::Instant;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Peak resident set size of this process in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let clients: usize = env_or("BENCH_CLIENTS", "1000").parse().unwrap();
    let rounds: usize = env_or("BENCH_ROUNDS", "5").parse().unwrap();
    let workers: usize = env_or("BENCH_WORKERS", "0").parse().unwrap();
    let fraction: f64 = env_or("BENCH_FRACTION", "1.0").parse().unwrap();
    // 12 training images per client on average (10 train + 2 validation after the 80/20 split).
    let per_class = (clients * 12).div_ceil(4);
    let text = format!(
        r#"
name = "federated_scale"
seed = 7
[data]
source = "synthetic"
size = 28
[data.synthetic]
train_per_class = {per_class}
test_per_class = 250
[model]
arch = "small_cnn"
[train]
lr = 0.001
epochs = 1
batch_size = 32
[attack]
kind = "backdoor"
target = "notumor"
rate = 0.5
exclude_target = false
[attack.trigger]
size = 3
margin = 1
[federation]
clients = {clients}
rounds = {rounds}
workers = {workers}
fraction_fit = {fraction:?}
fraction_evaluate = {fraction:?}
[federation.malicious]
count = {malicious}
"#,
        malicious = clients / 10
    );
    let cells = config::parse(&text, "bench/federated_scale.rs").unwrap();
    let out = std::env::temp_dir().join(format!("fedsentry-scale-{}", std::process::id()));
    let opts = RunOptions {
        out: out.clone(),
        data_root: None,
        force: true,
        jobs: 1,
        ..Default::default()
    };
    let start = Instant::now();
    let s = study::run_cells(&cells, &opts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "{clients} clients (fraction {fraction} per round) × {rounds} rounds (small_cnn, 28×28, {} training images; clean baseline + poisoned run): {secs:.1}s, {:.1}s per round, peak RSS {peak:.0} MiB (limit 2048) — {}",
        s[0].train_size + s[0].val_size,
        secs / (2 * rounds) as f64,
        if peak <= 2048.0 { "within" } else { "OVER" }
    );
    println!(
        "clean accuracy {:.2}%, ASR {:.2}%",
        100.0 * s[0].clean_accuracy,
        100.0 * s[0].asr.unwrap_or(f64::NAN)
    );
    std::fs::remove_dir_all(out).ok();
}
