//! The Python package, as a user gets it: the wheel built by scripts/python-wheel, installed
//! with pip into a fresh virtualenv that has torch 2.13.0; then the README's Python snippet and
//! python/tests/test_package.py (which checks the package against `fedsentry run`'s numbers).

mod common;
use common::{bin, tmp};
use std::path::Path;
use std::process::Command;

fn sh(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The first ```python block of the README's "## Python" section.
fn readme_snippet(root: &Path) -> String {
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("\n## Python\n").expect("a Python section")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let end = section[start..].find("```").unwrap();
    section[start..start + end].to_string()
}

#[test]
fn wheel_installs_into_a_fresh_virtualenv_and_matches_the_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(torch_venv) = std::env::var("VIRTUAL_ENV") else {
        eprintln!("skipped: VIRTUAL_ENV (the torch virtualenv of scripts/env.sh) is not set");
        return;
    };
    let dir = tmp("python");
    let wheel = sh(
        Command::new(root.join("scripts/python-wheel")).env("VIRTUAL_ENV", &torch_venv),
        "scripts/python-wheel",
    );
    let wheel = wheel.lines().last().unwrap().trim().to_string();
    assert!(wheel.ends_with(".whl"), "{wheel}");

    // A fresh virtualenv that sees the pinned torch (installed once, outside the repository).
    let venv = dir.join("venv");
    sh(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let py = venv.join("bin/python");
    let torch_site = sh(
        Command::new(format!("{torch_venv}/bin/python"))
            .args(["-c", "import site; print(site.getsitepackages()[0])"]),
        "torch site-packages",
    );
    let site = sh(
        Command::new(&py).args(["-c", "import site; print(site.getsitepackages()[0])"]),
        "venv site-packages",
    );
    std::fs::write(
        Path::new(site.trim()).join("fedsentry-torch.pth"),
        torch_site.trim(),
    )
    .unwrap();
    sh(
        Command::new(&py).args(["-m", "pip", "install", "--quiet", &wheel]),
        "pip install the wheel",
    );

    // The README's snippet, from the repository root (its config path is relative).
    let snippet = dir.join("snippet.py");
    std::fs::write(&snippet, readme_snippet(root)).unwrap();
    let out = sh(
        Command::new(&py)
            .arg(&snippet)
            .current_dir(root)
            .env("FEDSENTRY_CPU_KERNELS", "portable"),
        "the README's Python snippet",
    );
    assert!(out.contains("'accuracy'"), "{out}");

    // The package against the command line, round by round.
    let run_out = dir.join("run");
    let cfg = root.join("configs/flower_backdoor.toml");
    sh(
        bin().arg("run").arg(&cfg).arg("--out").arg(&run_out),
        "fedsentry run",
    );
    let checks = sh(
        Command::new(&py)
            .arg(root.join("python/tests/test_package.py"))
            .arg(root)
            .arg(run_out.join("run/history.csv"))
            .current_dir(&dir),
        "python/tests/test_package.py",
    );
    assert!(checks.contains("package checks passed"), "{checks}");
    eprintln!("{checks}");
    std::fs::remove_dir_all(&dir).ok();
}
