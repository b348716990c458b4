//! The HTML report of a small real sweep (federated, robust aggregation, a backdoor, evasion
//! between clients, Grad-CAM), opened in headless Chromium: it must render without console
//! errors and every figure must load. The screenshot stays in the test's folder.

mod common;
use common::{bin, tmp};

const SWEEP: &str = r#"
name = "report <check> & co"
seed = 2
[data]
source = "synthetic"
size = 32
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
rate = 0.5
[attack.trigger]
size = 3
margin = 1
[federation]
clients = 5
rounds = 2
[federation.malicious]
count = 1
[evasion]
samples = 8
holds = "local"
[[evasion.attacks]]
kind = "fgsm"
eps = 0.05
[gradcam]
overlays = 2
[grid]
"federation.strategy" = [{ rule = "fedavg" }, { rule = "krum", f = 1 }]
"#;

#[test]
fn the_report_of_a_federated_sweep_renders_in_a_browser() {
    let dir = tmp("report");
    let cfg = dir.join("sweep.toml");
    std::fs::write(&cfg, SWEEP).unwrap();
    let out = dir.join("out");
    let run = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // Sweep-level progress with an estimate.
    assert!(stderr.contains("sweep: 1/2 cells"), "{stderr}");
    assert!(stderr.contains("left"), "{stderr}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("report.html"));

    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<h1>report &lt;check&gt; &amp; co</h1>"));
    assert!(page.contains("2 of 2 cells finished"));
    assert!(!page.contains("Cells without a result"));
    for needle in [
        "krum(f=1)",
        "data:image/svg+xml;base64,",
        "data:image/png;base64,",
        "history.svg",
        "partition.svg",
        "defense.svg",
        "evasion_0.svg",
        "adversarial_examples.png",
        "Grad-CAM: clean (left) and triggered (right)",
        "--only strategy=krum_1",
        "[federation.strategy]",
    ] {
        assert!(page.contains(needle), "the report lacks {needle}");
    }
    // No reference leaves the page: no external script, style, font or image.
    for external in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
        assert!(
            !page.contains(external),
            "the report refers outside itself: {external}"
        );
    }
    // PNG copies of the figures, at twice the SVG size.
    let png = image::image_dimensions(out.join("strategy=krum_1/partition.png")).unwrap();
    assert!(png.0 >= 960, "{png:?}");
    assert!(out.join("strategy=krum_1/history.png").is_file());

    // `fedsentry report` rewrites it, and lists a cell whose result went missing.
    std::fs::remove_file(out.join("strategy=fedavg/summary.json")).unwrap();
    let again = bin()
        .args(["report", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains("Cells without a result (1)"),
        "missing cell not listed"
    );
    assert!(page.contains("1 of 2 cells finished"));

    let missing = bin()
        .args(["report", dir.join("nowhere").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"));

    // The page in a real browser.
    let shot = dir.join("report.png");
    let check = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/browser-check"
    ))
    .arg(out.join("report.html"))
    .arg(&shot)
    .output()
    .unwrap();
    let verdict = String::from_utf8_lossy(&check.stdout).to_string();
    let why = String::from_utf8_lossy(&check.stderr).to_string();
    if check.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped the browser check: {why}");
        return;
    }
    assert!(
        check.status.success(),
        "browser check failed: {verdict} {why}"
    );
    let result: serde_json::Value = serde_json::from_str(verdict.trim()).unwrap();
    assert!(result["images"].as_u64().unwrap() >= 10, "{result}");
    eprintln!("browser check: {result}; screenshot {}", shot.display());
    assert!(image::image_dimensions(&shot).unwrap().0 >= 1000);
}
