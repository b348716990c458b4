//! End-to-end checks of the `fedsentry` binary: a tiny experiment, resume, and bad inputs.

mod common;
use common::{bin, tmp};

use std::path::{Path, PathBuf};

const TINY: &str = r#"
name = "tiny"
seed = 3
[data]
source = "synthetic"
size = 32
[data.synthetic]
train_per_class = 40
test_per_class = 10
[model]
arch = "small_cnn"
[train]
epochs = 2
batch_size = 16
[attack]
kind = "backdoor"
target = "notumor"
rate = 0.1
[attack.trigger]
size = 3
margin = 1
"#;

/// Runs an experiment file and returns its single cell's summary.json.
fn run_tiny(cfg: &Path, out: &Path) -> serde_json::Value {
    let run = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("run/summary.json")).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn tiny_experiment_writes_reports_and_resumes() {
    let dir = tmp("tiny");
    let cfg = write(&dir, "tiny.toml", TINY);
    let out = dir.join("out");
    let summary = run_tiny(&cfg, &out);
    for key in [
        "clean_accuracy",
        "clean_accuracy_drop",
        "asr",
        "asr_all",
        "f1_macro",
        "config",
        "seed",
        "elapsed_s",
    ] {
        assert!(!summary[key].is_null(), "summary.json lacks {key}");
    }
    assert_eq!(summary["poisoned"], "14/144");
    assert_eq!(summary["seed"], 3);
    let history = std::fs::read_to_string(out.join("run/history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "header + 2 epochs");
    for f in [
        "run/confusion_clean.csv",
        "run/confusion_triggered.csv",
        "results.csv",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Same seed, second invocation: the finished cell is reused, results unchanged.
    let again = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("reusing"));
    let s2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["clean_accuracy"], s2["clean_accuracy"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_federation_settings_are_named_errors() {
    let dir = tmp("badfed");
    let fed = |extra: &str| format!("{TINY}[federation]\nclients = 4\nrounds = 2\n{extra}");
    let cases = [
        (
            "ids.toml",
            "[federation.malicious]\nclients = [7]\n",
            "federation.malicious.clients",
        ),
        (
            "alpha.toml",
            "[federation.partition]\nkind = \"dirichlet\"\nalpha = 0.0\n",
            "federation.partition.alpha",
        ),
        (
            "count.toml",
            "[federation.malicious]\ncount = 5\n",
            "federation.malicious.count",
        ),
        (
            "rule.toml",
            "[federation.strategy]\nrule = \"krum2\"\n",
            "krum2",
        ),
        ("key.toml", "fraction_fitt = 0.5\n", "fraction_fitt"),
        (
            "krum.toml",
            "[federation.strategy]\nrule = \"krum\"\nf = 1\n",
            "n ≥ 2f + 3",
        ),
        // A rule's precondition names the table it is set in (it once printed an empty key).
        (
            "krum_key.toml",
            "[federation.strategy]\nrule = \"krum\"\nf = 1\n",
            "krum_key.toml: `federation.strategy`: krum",
        ),
        (
            "bulyan.toml",
            "[federation.strategy]\nrule = \"bulyan\"\nf = 1\n",
            "n ≥ 4f + 3",
        ),
        (
            "mad.toml",
            "[federation.strategy]\nrule = \"mad\"\nthreshold = 2.0\n",
            "threshold",
        ),
        // Keys travel as data from the check that fails to the message.
        (
            "fraction.toml",
            "fraction_fit = 1.5\n",
            "fraction.toml: `federation.fraction_fit`: must be within 0..=1, got 1.5",
        ),
        (
            "mp.toml",
            "[federation.malicious]\nclients = [1]\n[federation.malicious.model_poisoning]\nkind = \"boost\"\n",
            "boost",
        ),
    ];
    for (name, extra, needle) in cases {
        let cfg = write(&dir, name, &fed(extra));
        fails_with(&["run", cfg.to_str().unwrap()], &[name, needle]);
    }
    // A Dirichlet minimum the data cannot meet fails once the data is known, naming the key.
    let cfg = write(
        &dir,
        "min.toml",
        &fed("[federation.partition]\nkind = \"dirichlet\"\nalpha = 1.0\nmin_size = 500\n"),
    );
    fails_with(
        &[
            "run",
            cfg.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
        ],
        &["federation.partition.min_size"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defense_decisions_are_logged_and_scored() {
    // Client 2 sends Gaussian noise instead of its update; Krum (f = 1, n = 5) never picks it.
    let dir = tmp("defense");
    let cfg = write(
        &dir,
        "krum.toml",
        &format!(
            "{TINY}[federation]\nclients = 5\nrounds = 2\n[federation.strategy]\nrule = \"krum\"\nf = 1\n\
             [federation.malicious]\nclients = [2]\n[federation.malicious.model_poisoning]\n\
             kind = \"gaussian_noise\"\nsigma = 10.0\n"
        ),
    );
    let out = dir.join("out");
    let s = run_tiny(&cfg, &out);
    let d = &s["federation"]["detection"];
    assert_eq!(d["tpr"], 1.0, "{d}");
    assert_eq!(d["first_correct_round"], 1);
    assert_eq!(s["federation"]["model_poisoning"], "gaussian_noise");
    let log = std::fs::read_to_string(out.join("run/defense.csv")).unwrap();
    assert!(log.starts_with("round,client,malicious,action,weight,reason"));
    assert!(log.contains("1,2,true,excluded"), "{log}");
    let results = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(results.lines().next().unwrap().contains("detection_tpr"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn privacy_budget_stops_the_run() {
    // All 4 clients every round (q = 1), z = 2: ε passes 5 within a few rounds.
    let dir = tmp("dp");
    let cfg = write(
        &dir,
        "dp.toml",
        &format!(
            "{TINY}[federation]\nclients = 4\nrounds = 10\n[federation.strategy]\n\
             rule = \"dp_fedavg\"\nclip = 1.0\nnoise_multiplier = 2.0\nbudget = 5.0\n"
        ),
    );
    let out = dir.join("out");
    let s = run_tiny(&cfg, &out);
    let f = &s["federation"];
    assert!(
        f["stopped"].as_str().unwrap().contains("privacy budget"),
        "{f}"
    );
    let eps = f["epsilon"].as_f64().unwrap();
    assert!(eps > 0.0 && eps <= 5.0, "{eps}");
    let history = std::fs::read_to_string(out.join("run/history.csv")).unwrap();
    let rows = history.lines().count() - 1;
    assert!((1..10).contains(&rows), "{rows} rounds ran");
    assert!(history.lines().next().unwrap().contains("epsilon"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evasion_between_clients_is_a_matrix() {
    let dir = tmp("evasion");
    let cfg = write(
        &dir,
        "ev.toml",
        &format!(
            "{TINY}[federation]\nclients = 3\nrounds = 1\n[evasion]\nsamples = 8\nholds = \"noisy\"\n\
             noise_sigma = 0.01\n[[evasion.attacks]]\nkind = \"fgsm\"\neps = 0.05\n\
             [[evasion.attacks]]\nkind = \"pgd\"\neps = 0.05\nalpha = 0.01\nsteps = 5\n"
        ),
    );
    let out = dir.join("out");
    let s = run_tiny(&cfg, &out);
    let ev = s["federation"]["evasion"].as_array().unwrap();
    assert_eq!(ev.len(), 2);
    for r in ev {
        let asr = r["asr"].as_array().unwrap();
        assert_eq!(asr.len(), 3);
        assert!(asr.iter().all(|row| row.as_array().unwrap().len() == 3));
        let self_asr = r["self_asr"].as_array().unwrap();
        for (i, row) in asr.iter().enumerate() {
            assert_eq!(row[i], self_asr[i]);
        }
    }
    let csv = std::fs::read_to_string(out.join("run/evasion.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 9);
    assert!(out.join("run/evasion_1.svg").is_file());
    // Across the sweep: one row per cell × attack, with the held models' test accuracy.
    let sweep = std::fs::read_to_string(out.join("evasion.csv")).unwrap();
    let mut lines = sweep.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "client_test_accuracy")
        .unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{sweep}");
    let test_acc = ev[0]["test_accuracy"].as_array().unwrap();
    assert_eq!(test_acc.len(), 3);
    let mean = test_acc.iter().map(|a| a.as_f64().unwrap()).sum::<f64>() / 3.0;
    let last: Vec<&str> = rows[1].rsplit(',').collect();
    let shown: f64 = last[header.len() - 1 - col].parse().unwrap();
    assert!((shown - mean).abs() < 1e-6, "{shown} vs {mean}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gradcam_inspection_writes_overlays_and_scores() {
    let dir = tmp("gradcam");
    let cfg = write(&dir, "g.toml", &format!("{TINY}[gradcam]\noverlays = 2\n"));
    let out = dir.join("out");
    let s = run_tiny(&cfg, &out);
    let g = &s["gradcam"]["test"];
    let auroc = g["auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc), "{g}");
    assert_eq!(g["images"], 40);
    for f in [
        "clean_00.png",
        "clean_01.png",
        "triggered_00.png",
        "triggered_01.png",
    ] {
        let img = image::open(out.join("run/gradcam").join(f)).unwrap();
        assert!(img.width() >= 256);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_results() {
    let dir = tmp("seed");
    let cfg = write(&dir, "tiny.toml", &TINY.replace("epochs = 2", "epochs = 1"));
    let mut acc = Vec::new();
    for k in 0..2 {
        let out = dir.join(format!("out{k}"));
        let s = run_tiny(&cfg, &out);
        acc.push((
            s["clean_accuracy"].clone(),
            s["asr"].clone(),
            s["baseline_accuracy"].clone(),
        ));
    }
    assert_eq!(acc[0], acc[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

#[test]
fn bad_inputs_are_named_errors() {
    let dir = tmp("bad");
    let unknown = write(
        &dir,
        "unknown.toml",
        &TINY.replace("epochs = 2", "epochs = 2\nlearning_rate = 1"),
    );
    fails_with(
        &["run", unknown.to_str().unwrap()],
        &["unknown.toml", "learning_rate"],
    );
    let impossible = write(&dir, "rate.toml", &TINY.replace("rate = 0.1", "rate = 2.0"));
    fails_with(
        &["run", impossible.to_str().unwrap()],
        &["rate.toml", "attack.rate"],
    );
    let target = write(
        &dir,
        "target.toml",
        &TINY.replace("\"notumor\"", "\"healthy\""),
    );
    fails_with(
        &[
            "run",
            target.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
        ],
        &["attack.target", "healthy"],
    );
    fails_with(
        &["run", dir.join("missing.toml").to_str().unwrap()],
        &["missing.toml"],
    );
    // `pretrain --only` picks a grid cell like `run --only`; none matching is an error.
    fails_with(
        &[
            "pretrain",
            impossible
                .to_str()
                .unwrap()
                .replace("rate.toml", "unknown.toml")
                .as_str(),
            "--out",
            dir.join("w.safetensors").to_str().unwrap(),
        ],
        &["unknown.toml", "learning_rate"],
    );
    let plain = write(&dir, "plain.toml", TINY);
    fails_with(
        &[
            "pretrain",
            plain.to_str().unwrap(),
            "--out",
            dir.join("w.safetensors").to_str().unwrap(),
            "--only",
            "seed=9",
        ],
        &["no cell of", "plain.toml", "seed=9"],
    );
    let folder = write(
        &dir,
        "folder.toml",
        &TINY.replace(
            "source = \"synthetic\"",
            "source = \"folder\"\npath = \"nowhere\"",
        ),
    );
    fails_with(
        &[
            "run",
            folder.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
            "--data-root",
            dir.to_str().unwrap(),
        ],
        &["nowhere", "not found"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `<dir>/Training|Testing/<class>/<i>.png`: uniform gray images, each a different level.
fn gray_folder(dir: &Path, per_class: &[(&str, usize)]) {
    for (split, n) in per_class {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let d = dir.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..*n {
                let level = (10 + 120 * c + 4 * i + if *split == "Testing" { 2 } else { 0 }) as u8;
                image::GrayImage::from_pixel(28, 28, image::Luma([level]))
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
}

#[test]
fn backbone_learns_from_the_images_the_experiment_leaves_out() {
    let dir = tmp("rest");
    let data = dir.join("mri");
    gray_folder(&data, &[("Training", 10), ("Testing", 3)]);
    let folder = format!(
        "source = \"folder\"\npath = \"{}\"\nsize = 28\ndrop_test_duplicates = false\n",
        data.display()
    );
    let exp = |own_cap: usize| {
        format!(
            "name = \"rest\"\nseed = 2\n[data]\n{folder}max_train_per_class = {own_cap}\n\
             [model]\narch = \"small_cnn\"\ninit = \"pretrained\"\nfine_tune = \"classifier_only\"\n\
             [train]\nepochs = 1\nbatch_size = 4\n\
             [pretrain]\nexclude_experiment_images = true\n[pretrain.data]\n{folder}\
             [pretrain.train]\nepochs = 1\nbatch_size = 4\n"
        )
    };
    let cfg = write(&dir, "rest.toml", &exp(4));
    let run = bin()
        .args(["run", cfg.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    // 4 of 10 per class train the experiment; the backbone gets the other 6 per class.
    assert!(
        err.contains("left out 8 images that the experiment trains on; 12 trusted"),
        "{err}"
    );
    // When the experiment takes every image, nothing trusted is left: a named error.
    let all = write(&dir, "all.toml", &exp(0));
    fails_with(
        &[
            "run",
            all.to_str().unwrap(),
            "--out",
            dir.join("out2").to_str().unwrap(),
        ],
        &["exclude_experiment_images", "no trusted"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defenses_screen_the_data_retrain_and_check_inputs() {
    let dir = tmp("backdoor-defenses");
    let text = TINY
        .replace("rate = 0.1", "rate = 0.2")
        .replace("epochs = 2", "epochs = 3")
        + "[defense.data]\nkind = \"spectral_signatures\"\nexpected_poison = 0.2\n\
           [defense.input]\nkind = \"strip\"\nsuperimpositions = 16\nsamples = 24\n\
           [defense.model]\nkind = \"fine_pruning\"\nstep = 0.1\nepochs = 1\n";
    let cfg = write(&dir, "defense.toml", &text);
    let s = run_tiny(&cfg, &dir.join("o"));
    let d = &s["defense"]["data"];
    assert_eq!(d["method"], "spectral_signatures");
    // 1.5 · ε · n removed per label, over the (poisoned) training split.
    let of = d["of"].as_u64().unwrap();
    let flagged = d["flagged"].as_u64().unwrap();
    assert!(flagged > 0 && flagged < of, "{d}");
    for k in ["tpr", "fpr", "retrained_clean_accuracy", "retrained_asr"] {
        let v = d[k].as_f64().unwrap_or_else(|| panic!("{k}: {d}"));
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    let i = &s["defense"]["input"];
    let auroc = i["auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc), "{i}");
    assert!(i["mean_clean_entropy"].as_f64().unwrap() >= 0.0);
    let results = std::fs::read_to_string(dir.join("o/results.csv")).unwrap();
    assert!(
        results
            .lines()
            .next()
            .unwrap()
            .contains("defense_tpr,defense_fpr,retrained_asr,strip_auroc")
    );
    let table = std::fs::read_to_string(dir.join("o/defenses_mean_std.csv")).unwrap();
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with("attack,data_defense,seeds,clean_accuracy_mean"),
        "{head}"
    );
    assert!(
        head.contains("retrained_asr_mean") && head.contains("repaired_asr_std"),
        "{head}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("backdoor,spectral_signatures,1,")
    );
    // Not for federations yet: a named error, not a silent skip.
    let fed = write(
        &dir,
        "fed_defense.toml",
        &(text + "[federation]\nclients = 2\nrounds = 1\n"),
    );
    fails_with(
        &["run", fed.to_str().unwrap()],
        &["fed_defense.toml", "`defense`"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
