//! Progress bars on stderr (hidden automatically when stderr is not a terminal). Every bar
//! joins one [`MultiProgress`], so cells that run side by side (`fedsentry run --jobs`) each
//! keep their own line, and status lines print above them.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::LazyLock;

static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);

/// A bar counting batches.
pub fn bar(len: u64, prefix: String) -> ProgressBar {
    bar_of(len, prefix, "batches")
}

/// A bar counting `unit` (batches, rounds, …).
pub fn bar_of(len: u64, prefix: String, unit: &str) -> ProgressBar {
    let pb = BARS.add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}}<{{eta_precise}} {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

/// A bar counting downloaded bytes (its length is set once the server tells it).
pub fn bytes_bar(prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

/// One line of status on stderr, kept out of the way of progress bars.
pub fn status(msg: impl AsRef<str>) {
    BARS.suspend(|| eprintln!("{}", msg.as_ref()));
}
