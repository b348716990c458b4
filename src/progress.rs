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

/// A bar counting a sweep's cells; its message carries [`sweep_line`]'s estimate (indicatif's
/// own would count cells reused from an earlier run as work done).
pub fn sweep_bar(total: u64) -> ProgressBar {
    let pb = BARS.add(ProgressBar::new(total));
    pb.set_style(
        ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} cells {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// `5h02m`, `4m10s`, `42s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Where a sweep stands: cells done of the total, time so far, and the time left estimated
/// from the cells computed so far (reused cells cost nothing and do not count).
pub fn sweep_line(done: usize, reused: usize, total: usize, elapsed_s: f64) -> String {
    let computed = done.saturating_sub(reused);
    let left = total.saturating_sub(done);
    let reused = if reused > 0 {
        format!(" ({reused} reused)")
    } else {
        String::new()
    };
    let eta = if left == 0 {
        "done".to_string()
    } else if computed == 0 {
        "time left: known after the first computed cell".to_string()
    } else {
        format!(
            "about {} left",
            duration(elapsed_s / computed as f64 * left as f64)
        )
    };
    format!(
        "sweep: {done}/{total} cells{reused}, {} elapsed, {eta}",
        duration(elapsed_s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_only_computed_cells() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(250.0), "4m10s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3h02m");
        // 2 cells computed in 100 s, 1 reused: 7 left at 50 s each.
        assert_eq!(
            sweep_line(3, 1, 10, 100.0),
            "sweep: 3/10 cells (1 reused), 1m40s elapsed, about 5m50s left"
        );
        assert!(sweep_line(2, 2, 4, 1.0).contains("known after the first computed cell"));
        assert!(sweep_line(4, 0, 4, 10.0).ends_with("done"));
    }
}
