//! The architecture as a test: every module of the library sits in a layer (listed in
//! `src/lib.rs`), and no file imports from a layer below it in that list — `crate::…` paths
//! anywhere in a file count, tests included. A new top-level module must be given a layer here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, from the leaves up.
const LAYERS: &[&[&str]] = &[
    &[
        "cluster", "error", "io", "numerics", "progress", "seed", "vector",
    ],
    &["data", "metrics", "models", "privacy"],
    &["attacks"],
    &["train"],
    &["defenses"],
    &["federated"],
    &["config"],
    &["report"],
    &["study"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/federated/rules/krum.rs` → "federated").
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a text refers to, outside comments.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `fedsentry_crate::`
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.push(name);
            }
        }
    }
    refs
}

fn upward_imports(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let module = module_of(src, &f);
        if module == "lib" || module == "main" {
            continue;
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("{}: module `{module}` has no layer", f.display()));
        let text = std::fs::read_to_string(&f).unwrap();
        for r in crate_refs(&text) {
            let Some(theirs) = layer_of(&r) else {
                continue; // crate-root items such as `crate::Result`
            };
            if theirs > own {
                bad.push(format!(
                    "{}: `{module}` (layer {}) imports `crate::{r}` (layer {})",
                    f.display(),
                    own + 1,
                    theirs + 1
                ));
            }
        }
    }
    bad
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = upward_imports(&src);
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_declared_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(declared.len() > 10, "{declared:?}");
    for m in declared {
        assert!(
            layer_of(m).is_some(),
            "`{m}` is declared in lib.rs but has no layer"
        );
    }
}

#[test]
fn the_check_catches_an_upward_import() {
    // A miniature source tree: `data` reaching up into `study` must be reported.
    let dir = std::env::temp_dir().join(format!("fedsentry-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/mod.rs"), "use crate::study::Thing; // x\n").unwrap();
    std::fs::write(dir.join("io.rs"), "// crate::study in a comment only\n").unwrap();
    let bad = upward_imports(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("`data` (layer 2) imports `crate::study` (layer 9)"));
    let mut by_module: BTreeMap<String, usize> = BTreeMap::new();
    for l in LAYERS.iter().flat_map(|l| l.iter()) {
        *by_module.entry(l.to_string()).or_default() += 1;
    }
    assert!(
        by_module.values().all(|&n| n == 1),
        "a module in two layers"
    );
}
