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
}
