//! Helpers shared by the end-to-end tests and those comparing against the virtualenv's torch.
// Each test crate uses a subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedsentry"))
}

/// A fresh, empty temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fedsentry-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The virtualenv's Python (or `python3`), if it can import torchvision; otherwise prints why
/// the calling test is skipped.
pub fn torchvision_python() -> Option<String> {
    let python = std::env::var("VIRTUAL_ENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import torchvision"])
        .output()
        .ok()?;
    if out.status.success() {
        return Some(python);
    }
    eprintln!(
        "skipped: torchvision not importable by {python}: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    None
}

/// Runs a Python script with the given arguments; panics with its stderr when it fails.
/// The script runs from a file in the temporary folder, so that `torch.jit.script` can read
/// its source.
pub fn run_python(python: &str, script: &str, args: &[&str]) -> Vec<u8> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "fedsentry-script-{}-{}.py",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, script).unwrap();
    let out = Command::new(python)
        .arg(&file)
        .args(args)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
