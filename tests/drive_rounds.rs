//! `examples/drive_rounds.rs` drives a federation through the public round API only; on the
//! same experiment `fedsentry run` must produce the same rounds, bit for bit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const EXPERIMENT: &str = r#"
name = "drive_rounds"
seed = 3

[data]
source = "synthetic"
size = 24

[data.synthetic]
train_per_class = 24
test_per_class = 6

[model]
arch = "small_cnn"

[train]
epochs = 1
batch_size = 16

[attack]
kind = "backdoor"
target = "notumor"
rate = 0.5

[attack.trigger]
size = 3
margin = 1

[federation]
clients = 5
rounds = 3
fraction_fit = 0.8

[federation.partition]
kind = "dirichlet"
alpha = 1.0

[federation.malicious]
clients = [1]

[federation.malicious.model_poisoning]
kind = "scaling"
factor = 3.0

[grid]
"federation.strategy" = [
    { rule = "fltrust", root_size = 20 },
    { rule = "mad", activation_round = 2 },
    { rule = "dp_fedavg", clip = 5.0, noise_multiplier = 0.3 },
]
"#;

/// The example binary, which `cargo test` builds next to the test binaries.
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let exe = profile
        .join("examples")
        .join(format!("drive_rounds{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo test` or `cargo build --examples`",
        exe.display()
    );
    exe
}

fn csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn the_public_round_api_reproduces_fedsentry_run_bit_for_bit() {
    let dir = common::tmp("drive-rounds");
    let cfg = dir.join("drive_rounds.toml");
    std::fs::write(&cfg, EXPERIMENT).unwrap();
    let out = common::bin()
        .args(["run", cfg.to_str().unwrap(), "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for cell in [
        "strategy=fltrust_20",
        "strategy=mad_2",
        "strategy=dp_fedavg_5.0_0.3",
    ] {
        let driven = dir.join(cell);
        let out = Command::new(example())
            .arg(&cfg)
            .arg(&driven)
            .args(["--only", cell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = csv(&dir.join("run").join(cell).join("history.csv"));
        let api = csv(&driven.join("rounds.csv"));
        assert_eq!(run.len(), 3, "{cell}");
        assert_eq!(api.len(), run.len(), "{cell}");
        for (a, r) in api.iter().zip(&run) {
            for k in [
                "round",
                "clients_fit",
                "train_loss",
                "test_loss",
                "test_accuracy",
                "asr",
                "epsilon",
            ] {
                assert_eq!(a[k], r[k], "{cell}, round {}: `{k}` differs", r["round"]);
            }
        }
        assert!(run.iter().all(|r| !r["test_loss"].is_empty()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
