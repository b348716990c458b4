//! Every shipped experiment file parses, expands its grid and validates (rule preconditions
//! included), with and without its `[data.real]` switch.

use std::path::Path;

#[test]
fn shipped_configs_are_valid() {
    let mut files: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for f in &files {
        let cells = fedsentry::config::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!cells.is_empty(), "{}", f.display());
        for c in &cells {
            let real = c.resolved(Some(Path::new("/data")));
            real.experiment
                .validate(&f.display().to_string())
                .unwrap_or_else(|e| panic!("{} ({}), real data: {e}", f.display(), c.id()));
        }
    }
    let robust = fedsentry::config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/robust_aggregation.toml"),
    )
    .unwrap();
    // 11 rules × 1–3 malicious × 2 partitions × 2 boosts.
    assert_eq!(robust.len(), 11 * 3 * 2 * 2);
    let mad = fedsentry::config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mad_pneumonia.toml"),
    )
    .unwrap();
    assert_eq!(mad.len(), 6);
    let real = mad[0].resolved(Some(Path::new("../shared/data")));
    assert_eq!(real.experiment.data.classes, vec!["normal", "pneumonia"]);
    assert!(mad[0].resolved(None).experiment.data.real.is_some());
    // Tables 4.2–4.5: 7 models × 5 freezing levels × 3 seeds, on CPU and GPU scale.
    for (file, device) in [
        ("thesis_model_comparison.toml", "auto"),
        ("thesis_model_comparison_gpu.toml", "cuda"),
    ] {
        let cells = fedsentry::config::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(file),
        )
        .unwrap();
        assert_eq!(cells.len(), 7 * 5 * 3, "{file}");
        let e = &cells[5 * 3 - 1].experiment;
        assert_eq!(
            (e.model.arch.name(), e.model.freeze_percent, e.seed),
            ("alexnet", Some(100.0), 3),
            "{file}"
        );
        assert_eq!(
            serde_json::to_value(e.device).unwrap().as_str(),
            Some(device),
            "{file}"
        );
    }
}
