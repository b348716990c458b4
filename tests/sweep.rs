//! A federated sweep killed with SIGKILL and started again (two cells at a time): finished cells
//! are not recomputed and results.csv matches an uninterrupted run (one cell at a time) byte for
//! byte. The same grid split over three processes at once (`--shard K/3`) and put together by
//! `collect` gives that results.csv too.

mod common;
use common::{bin, tmp};

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SWEEP: &str = r#"
name = "sweep"
seed = 11
[data]
source = "synthetic"
size = 28
[data.synthetic]
train_per_class = 40
test_per_class = 10
[model]
arch = "small_cnn"
[train]
epochs = 1
batch_size = 16
[attack]
kind = "backdoor"
target = "notumor"
rate = 0.3
exclude_target = false
[attack.trigger]
size = 3
margin = 1
[federation]
clients = 4
rounds = 3
[federation.malicious]
count = 1
[grid]
"federation.malicious.count" = [1, 2]
"attack.rate" = [0.3, 0.6]
"seed" = [11, 12]
"#;

fn run(cfg: &Path, out: &Path, jobs: &str) -> std::process::Output {
    let o = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--jobs", jobs])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn finished_cells(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("summary.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains('='))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|row| {
            header
                .iter()
                .map(String::from)
                .zip(row.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// mean_std.csv: one row per (malicious, rate) with both seeds, means matching results.csv.
fn check_mean_std(out: &Path) {
    let cells = read_csv(&out.join("results.csv"));
    let settings = read_csv(&out.join("mean_std.csv"));
    assert_eq!(settings.len(), 4);
    for s in &settings {
        assert_eq!(s["seeds"], "11 12");
        let accs: Vec<f64> = cells
            .iter()
            .filter(|c| {
                c["federation.malicious.count"] == s["federation.malicious.count"]
                    && c["attack.rate"] == s["attack.rate"]
            })
            .map(|c| c["clean_accuracy"].parse().unwrap())
            .collect();
        assert_eq!(accs.len(), 2);
        let mean: f64 = s["clean_accuracy_mean"].parse().unwrap();
        let std: f64 = s["clean_accuracy_std"].parse().unwrap();
        assert!(
            (mean - (accs[0] + accs[1]) / 2.0).abs() < 1e-5,
            "{s:?} {accs:?}"
        );
        assert!(
            (std - (accs[0] - accs[1]).abs() / 2f64.sqrt()).abs() < 1e-5,
            "{s:?}"
        );
        assert!(s["train_s_mean"].parse::<f64>().unwrap() > 0.0);
    }
}

#[test]
fn killed_sweep_resumes_to_identical_results() {
    let dir = tmp("kill");
    let cfg = dir.join("sweep.toml");
    std::fs::write(&cfg, SWEEP).unwrap();

    let whole = dir.join("whole");
    let printed = run(&cfg, &whole, "1");
    assert_eq!(finished_cells(&whole).len(), 8);
    check_mean_std(&whole);
    assert!(String::from_utf8_lossy(&printed.stdout).contains("Mean ± std over seeds"));

    // Kill -9 once two cells are finished.
    let part = dir.join("part");
    let mut child = bin()
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            part.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while finished_cells(&part).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = finished_cells(&part);
    assert!(before.len() >= 2 && before.len() < 8, "{before:?}");
    let stamps: Vec<_> = before
        .iter()
        .map(|c| {
            std::fs::metadata(part.join(c).join("summary.json"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    // Resumed with two cells at a time: results must not depend on it.
    let again = run(&cfg, &part, "2");
    let log = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        log.matches("finished earlier, reusing").count(),
        before.len(),
        "{log}"
    );
    // The finished cells were not rewritten.
    for (c, t) in before.iter().zip(stamps) {
        let now = std::fs::metadata(part.join(c).join("summary.json"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(now, t, "{c} was recomputed");
    }
    assert_eq!(finished_cells(&part).len(), 8);
    let a = std::fs::read(whole.join("results.csv")).unwrap();
    let b = std::fs::read(part.join("results.csv")).unwrap();
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));

    // Three shards at once into one folder, then collect.
    let sharded = dir.join("sharded");
    let collect = || {
        bin()
            .args(["collect", cfg.to_str().unwrap(), "--out"])
            .arg(&sharded)
            .output()
            .unwrap()
    };
    let shard = |k: usize| {
        bin()
            .args(["run", cfg.to_str().unwrap(), "--out"])
            .arg(&sharded)
            .args(["--shard", &format!("{k}/3")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Shard 3 alone first: collect lists the cells the others have not run.
    let third = shard(3).wait_with_output().unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(finished_cells(&sharded).len(), 2);
    let early = collect();
    assert!(!early.status.success());
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        err.contains("6 of 8 cells have no finished result"),
        "{err}"
    );
    let page = std::fs::read_to_string(sharded.join("report.html")).unwrap();
    assert!(page.contains("Cells without a result (6)"));
    let others: Vec<_> = [1, 2].into_iter().map(shard).collect();
    for c in others {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(sharded.join("shards/1-of-3/results.csv").is_file());
    let done = collect();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let c = std::fs::read(sharded.join("results.csv")).unwrap();
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&c));
    check_mean_std(&sharded);
    let page = std::fs::read_to_string(sharded.join("report.html")).unwrap();
    assert!(page.contains("8 of 8 cells finished"));
    std::fs::remove_dir_all(dir).ok();
}
