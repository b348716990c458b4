//! Workloads W1 and W2 (PneumoniaMNIST 28×28, small CNN, FedAvg; `bench/configs/w{1,2}.toml`)
//! run end to end by the `fedsentry` binary next to the reference implementations in
//! `../shared/peers` (a plain PyTorch loop, Flower's `run_simulation`, Flower's `flwr run`).
//! Every run, ours included, is measured from outside by the peers' `measure.py`: wall time from
//! spawn to exit, peak memory of the whole process tree. Runs alternate, one at a time; a run
//! during which other processes used the CPU is repeated. Medians of `BENCH_REPS` runs.
//!
//! W1 also reports the achieved arithmetic rate: the multiply-adds of the convolutions and
//! linear layers (forward for evaluation; forward, input-gradient and weight-gradient for
//! training) over the time of the rounds, against this CPU's measured matrix-multiply peak.
//!
//! Run: ./scripts/bench federated_peers
//! env: BENCH_REPS=3, BENCH_WORKLOADS=W1,W2, BENCH_PEERS=plain-t2,flower-c2t2,... (default all),
//!      FEDSENTRY_PEERS_PYTHON (a Python with torch 2.13.0 and flwr 1.41.0; scripts/bench sets it).

#[path = "common.rs"]
#[allow(dead_code)] // the PyTorch-script helper is not needed here
mod common;

use common::median;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The peers' configurations, named as in their `run_bench.py`.
const PEERS: &[(&str, &str, &[&str])] = &[
    ("plain-t2", "plain_fl.py", &["--threads", "2"]),
    (
        "flower-c2t2",
        "flower_fl.py",
        &["--client-cpus", "2", "--threads", "2"],
    ),
    (
        "flower-c1t1",
        "flower_fl.py",
        &["--client-cpus", "1", "--threads", "1"],
    ),
    (
        "flwrrun-c2t2",
        "flwr_run_fl.py",
        &["--client-cpus", "2", "--threads", "2"],
    ),
];

struct Env {
    peers: PathBuf,
    data_root: PathBuf,
    python: String,
    scratch: PathBuf,
}

#[derive(Clone)]
struct Run {
    wall_s: f64,
    rss_mb: f64,
    pss_mb: f64,
    accuracy: f64,
    /// Seconds spent in the rounds (fedsentry: sum of its per-round times; peers: their own).
    rounds_s: f64,
}

fn measure(env: &Env, label: &str, result: &Path, cmd: &[String]) -> Option<Run> {
    let jsonl = env.scratch.join("bench.jsonl");
    for attempt in 1..=3 {
        // The measured command's own exit status is in the record measure.py appends.
        let _ = Command::new("python3")
            .arg(env.peers.join("measure.py"))
            .args(["--label", label, "--jsonl"])
            .arg(&jsonl)
            .arg("--result")
            .arg(result)
            .arg("--log")
            .arg(env.scratch.join(format!("{}.log", label.replace('/', "_"))))
            .arg("--")
            .args(cmd)
            .current_dir(&env.peers)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 runs measure.py");
        let text = std::fs::read_to_string(&jsonl).expect("measure.py wrote its record");
        let rec: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let foreign = rec["foreign_cpu_s"].as_f64().unwrap_or(0.0);
        let wall = rec["wall_s"].as_f64().unwrap_or(0.0);
        if rec["rc"].as_i64() != Some(0) || rec.get("result").is_none() {
            eprintln!(
                "{label}: run failed (rc {}), see the log in {}",
                rec["rc"],
                env.scratch.display()
            );
            return None;
        }
        if foreign > f64::max(2.0, 0.05 * wall) {
            eprintln!(
                "{label}: other processes used {foreign:.1} CPU-s during the run; repeating ({attempt}/3)"
            );
            std::thread::sleep(std::time::Duration::from_secs(20));
            continue;
        }
        let res = &rec["result"];
        let (accuracy, rounds_s) = match res.get("clean_accuracy") {
            // fedsentry's summary.json (the per-round times are in history.csv beside it).
            Some(acc) => (
                acc.as_f64().unwrap(),
                history_seconds(&result.with_file_name("history.csv")),
            ),
            None => (
                res["final_acc"].as_f64().unwrap(),
                res["t_rounds_s"].as_f64().unwrap_or(f64::NAN),
            ),
        };
        return Some(Run {
            wall_s: wall,
            rss_mb: rec["peak_tree_rss_mb"].as_f64().unwrap(),
            pss_mb: rec["peak_tree_pss_mb"].as_f64().unwrap(),
            accuracy,
            rounds_s,
        });
    }
    None
}

fn history_seconds(path: &Path) -> f64 {
    let mut r = csv::Reader::from_path(path).expect("history.csv beside summary.json");
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "seconds")
        .expect("a seconds column");
    r.records()
        .map(|rec| rec.unwrap()[col].parse::<f64>().unwrap())
        .sum()
}

fn ours(env: &Env, wl: &str) -> Option<Run> {
    let out = env.scratch.join(format!("fedsentry_{wl}"));
    let _ = std::fs::remove_dir_all(&out);
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("bench/configs/{}.toml", wl.to_lowercase()));
    let cmd = [
        env!("CARGO_BIN_EXE_fedsentry").to_string(),
        "run".into(),
        config.display().to_string(),
        "--data-root".into(),
        env.data_root.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    measure(
        env,
        &format!("{wl}/fedsentry"),
        &out.join("run/summary.json"),
        &cmd,
    )
}

fn peer(env: &Env, wl: &str, name: &str) -> Option<Run> {
    let (_, script, extra) = PEERS.iter().find(|p| p.0 == name).expect("a known peer");
    let result = env.scratch.join(format!("{wl}_{name}.json"));
    let _ = std::fs::remove_file(&result);
    let mut cmd = vec![
        env.python.clone(),
        env.peers.join(script).display().to_string(),
        "--workload".into(),
        wl.into(),
        "--out".into(),
        result.display().to_string(),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    measure(env, &format!("{wl}/{name}"), &result, &cmd)
}

/// Multiply-adds of one image through the small CNN on 28×28: (forward, training step).
fn small_cnn_macs() -> (f64, f64) {
    let conv1 = 28.0 * 28.0 * 32.0 * 9.0;
    let conv2 = 14.0 * 14.0 * 64.0 * 32.0 * 9.0;
    let fc = 3136.0 * 128.0 + 128.0 * 2.0;
    let fwd = conv1 + conv2 + fc;
    // Backward: a weight gradient for every layer, an input gradient for all but the first.
    (fwd, fwd + fwd + (conv2 + fc))
}

/// Best single-precision matrix-multiply rate over a few 2048² products, GFLOP/s.
fn matmul_peak() -> f64 {
    let n = 2048;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = a.matmul(&b);
            2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn row(name: &str, runs: &[Run]) -> (f64, f64) {
    let wall = median(runs.iter().map(|r| r.wall_s).collect());
    let lo = runs.iter().map(|r| r.wall_s).fold(f64::INFINITY, f64::min);
    let hi = runs.iter().map(|r| r.wall_s).fold(0.0, f64::max);
    let rss = median(runs.iter().map(|r| r.rss_mb).collect());
    let pss = median(runs.iter().map(|r| r.pss_mb).collect());
    let acc = median(runs.iter().map(|r| r.accuracy).collect());
    let rounds = median(runs.iter().map(|r| r.rounds_s).collect());
    println!(
        "{name:<14} {:>3} {wall:>9.2} [{lo:.2}–{hi:.2}] {rounds:>9.2} {rss:>12.0} {pss:>10.0} {:>9.2}",
        runs.len(),
        100.0 * acc
    );
    (wall, rss)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peers = std::env::var("FEDSENTRY_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/peers"));
    let data_root = std::env::var("FEDSENTRY_DATA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/data"));
    if !peers.join("measure.py").exists()
        || !data_root.join("pneumoniamnist/pneumoniamnist.npz").exists()
    {
        println!(
            "skipped: needs the peers in {} and PneumoniaMNIST in {}",
            peers.display(),
            data_root.display()
        );
        return;
    }
    let python = std::env::var("FEDSENTRY_PEERS_PYTHON").unwrap_or_else(|_| "python3".into());
    let scratch =
        std::env::temp_dir().join(format!("fedsentry_bench_peers_{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let env = Env {
        peers,
        data_root,
        python,
        scratch,
    };
    let reps: usize = std::env::var("BENCH_REPS").map_or(3, |s| s.parse().expect("BENCH_REPS"));
    let workloads = std::env::var("BENCH_WORKLOADS").unwrap_or_else(|_| "W1,W2".into());
    let chosen = std::env::var("BENCH_PEERS").ok();
    let wanted = |name: &str| {
        chosen
            .as_deref()
            .is_none_or(|c| c.split(',').any(|x| x == name))
    };
    println!(
        "runs measured by {}/measure.py; medians of {reps}",
        env.peers.display()
    );
    for wl in workloads.split(',') {
        // W1 has no `flwr run` row in the reference table (its run is a minute of the same math).
        let names: Vec<&str> = PEERS
            .iter()
            .map(|p| p.0)
            .filter(|n| wanted(n) && !(wl == "W1" && *n == "flwrrun-c2t2"))
            .collect();
        // Untimed warm-up of each implementation (page cache, .pyc files, Ray's first start).
        let _ = ours(&env, wl);
        for n in &names {
            let _ = peer(&env, wl, n);
        }
        let mut runs: Vec<(String, Vec<Run>)> = std::iter::once("fedsentry")
            .chain(names.iter().copied())
            .map(|n| (n.to_string(), Vec::new()))
            .collect();
        for _ in 0..reps {
            for (name, rs) in runs.iter_mut() {
                let r = if name == "fedsentry" {
                    ours(&env, wl)
                } else {
                    peer(&env, wl, name)
                };
                rs.extend(r);
            }
        }
        println!("\n{wl}");
        println!(
            "{:<14} {:>3} {:>22} {:>9} {:>12} {:>10} {:>9}",
            "run", "n", "wall s median [range]", "rounds s", "peak RSS MB", "peak PSS MB", "acc %"
        );
        let mut summary = Vec::new();
        for (name, rs) in &runs {
            if rs.is_empty() {
                println!("{name:<14} no successful run");
                continue;
            }
            summary.push((name.clone(), row(name, rs)));
        }
        let Some((_, (our_wall, our_rss))) = summary.iter().find(|s| s.0 == "fedsentry").cloned()
        else {
            continue;
        };
        for (name, (wall, rss)) in summary.iter().filter(|s| s.0 != "fedsentry") {
            println!(
                "{name:<14} is {:.2}× fedsentry's wall time and {:.2}× its peak tree RSS",
                wall / our_wall,
                rss / our_rss
            );
        }
        if wl == "W1" {
            let (fwd, step) = small_cnn_macs();
            // 20 rounds × 4,708 training images, and the 624 test images after every round.
            let flops = 2.0 * (20.0 * 4708.0 * step + 20.0 * 624.0 * fwd);
            let rounds = median(runs[0].1.iter().map(|r| r.rounds_s).collect());
            let peak = matmul_peak();
            println!(
                "W1 arithmetic: {:.1} GFLOP in {rounds:.2} s of rounds = {:.1} GFLOP/s ({:.1} over the whole wall time); \
                 matmul peak here {peak:.1} GFLOP/s (libtorch threads {}) → {:.0}% of peak",
                flops / 1e9,
                flops / rounds / 1e9,
                flops / our_wall / 1e9,
                tch::get_num_threads(),
                100.0 * flops / rounds / 1e9 / peak
            );
        }
    }
    let _ = std::fs::remove_dir_all(&env.scratch);
}
