//! Backdoor measures: attack success rate (ASR) and clean-accuracy drop (CAD).

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct AsrCounts {
    /// Triggered inputs classified as the target.
    pub hits: usize,
    /// Inputs counted.
    pub total: usize,
}

impl AsrCounts {
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.hits as f64 / self.total as f64
        }
    }
    /// "hits/total", as reported in the thesis tables.
    pub fn fraction(&self) -> String {
        format!("{}/{}", self.hits, self.total)
    }
}

/// ASR on a fully triggered test set.
///
/// With `exclude_target` (thesis eq. 4.1, the default) inputs whose true class already is the
/// target are left out: ASR = |{i : y_i ≠ t, f(x_i + trigger) = t}| / |{i : y_i ≠ t}|.
/// Without it, every triggered input counts: target predictions / total.
pub fn attack_success_rate(
    pred_triggered: &[i64],
    truth: &[i64],
    target: i64,
    exclude_target: bool,
) -> AsrCounts {
    assert_eq!(
        pred_triggered.len(),
        truth.len(),
        "prediction and label counts differ"
    );
    let mut c = AsrCounts { hits: 0, total: 0 };
    for (&p, &t) in pred_triggered.iter().zip(truth) {
        if exclude_target && t == target {
            continue;
        }
        c.total += 1;
        c.hits += (p == target) as usize;
    }
    c
}

/// Clean-accuracy drop in percentage points: baseline minus poisoned accuracy (both in [0, 1]).
pub fn clean_accuracy_drop(baseline_accuracy: f64, accuracy: f64) -> f64 {
    100.0 * (baseline_accuracy - accuracy)
}

/// The clean-accuracy check as a detector: a model whose clean accuracy dropped more than
/// `threshold` points below the baseline's is flagged as tampered with.
pub fn clean_check(baseline: f64, accuracy: f64, threshold: f64) -> bool {
    clean_accuracy_drop(baseline, accuracy) > threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_check_flags_large_drops() {
        assert!(clean_check(0.90, 0.80, 5.0)); // 10 points
        assert!(!clean_check(0.90, 0.87, 5.0)); // 3 points
        assert!(!clean_check(0.90, 0.92, 0.0)); // improvement
    }

    #[test]
    fn both_asr_formulas() {
        // target 2; truth has two target-class inputs.
        let truth = [0, 1, 2, 0, 2, 1];
        let pred = [2, 1, 2, 2, 0, 2];
        let excl = attack_success_rate(&pred, &truth, 2, true);
        assert_eq!(excl, AsrCounts { hits: 3, total: 4 });
        assert!((excl.rate() - 0.75).abs() < 1e-12);
        let all = attack_success_rate(&pred, &truth, 2, false);
        assert_eq!(all, AsrCounts { hits: 4, total: 6 });
        assert_eq!(all.fraction(), "4/6");
        assert_eq!(attack_success_rate(&[], &[], 0, true).rate(), 0.0);
    }

    #[test]
    fn cad_in_points() {
        assert!((clean_accuracy_drop(0.95, 0.92) - 3.0).abs() < 1e-9);
        assert!(clean_accuracy_drop(0.90, 0.91) < 0.0);
    }
}
