//! Loaders on the real public data beside the checkout (`../shared/data`); skipped with a
//! printed reason when that folder is absent.

use fedsentry::config::{DataConfig, DataSource};
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found", p.display());
        None
    }
}

fn cfg(text: &str) -> DataConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn medmnist_npz_both_label_layouts() {
    let Some(root) = shared() else { return };
    // PneumoniaMNIST has (N,1) labels, this BreastMNIST copy (N,).
    for (path, train, test) in [
        ("pneumoniamnist/pneumoniamnist.npz", 4708, 624),
        ("breastmnist/breastmnist.npz", 546, 156),
    ] {
        let c = cfg(&format!(
            "source = \"npz\"\npath = \"{path}\"\nsize = 28\ndrop_test_duplicates = false"
        ));
        assert_eq!(c.source, DataSource::Npz);
        let ds = fedsentry::data::load(&c, Some(&root), 0).unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (train, test), "{path}");
        assert_eq!(ds.train.num_classes(), 2);
        assert!(ds.train.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn brain_mri_folder_reports_leaked_duplicates() {
    let Some(root) = shared() else { return };
    let c = cfg("source = \"folder\"\npath = \"brain_tumor_mri\"\nsize = 32\nroi_crop = true");
    let ds = fedsentry::data::load(&c, Some(&root), 0).unwrap();
    assert_eq!(
        ds.train.classes,
        vec!["glioma", "meningioma", "notumor", "pituitary"]
    );
    assert_eq!(ds.train.len(), 5708);
    assert!(
        ds.notes[0].starts_with("216 test images are byte-identical"),
        "{:?}",
        ds.notes
    );
    // 1311 test files minus the leaked ones (dropped by default).
    assert_eq!(ds.test.len(), 1311 - 216);
}

#[test]
fn inspect_finds_the_brain_mri_leak_and_medmnist_counts() {
    let Some(root) = shared() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedsentry"))
        .args(["inspect"])
        .arg(root.join("brain_tumor_mri"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("4 classes"), "{text}");
    // The loader's leak check (above) finds the same 216 test images.
    assert!(
        text.contains("Testing images also in Training: 216 byte-identical"),
        "{text}"
    );
    assert!(text.contains("Unreadable files: none"), "{text}");

    let s =
        fedsentry::data::inspect::inspect(&root.join("pneumoniamnist/pneumoniamnist.npz")).unwrap();
    assert_eq!(s.classes, ["normal", "pneumonia"]);
    let counts: Vec<(&str, &[usize])> = s
        .splits
        .iter()
        .map(|x| (x.name.as_str(), x.per_class.as_slice()))
        .collect();
    // SOURCES.md: train 1214/3494, val 135/389, test 234/390; 8 train images repeat in val.
    assert_eq!(
        counts,
        [
            ("train", &[1214, 3494][..]),
            ("val", &[135, 389][..]),
            ("test", &[234, 390][..])
        ]
    );
    let val_in_train = s
        .overlaps
        .iter()
        .find(|o| o.split == "val" && o.other == "train")
        .unwrap();
    assert_eq!(val_in_train.pixel_identical, 8);
}
