//! Accuracy, confusion matrix and macro precision / recall / F1.

use serde::Serialize;

pub fn accuracy(pred: &[i64], truth: &[i64]) -> f64 {
    assert_eq!(
        pred.len(),
        truth.len(),
        "prediction and label counts differ"
    );
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / pred.len() as f64
}

/// `m[true][predicted]`.
pub fn confusion_matrix(pred: &[i64], truth: &[i64], k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; k];
    for (&p, &t) in pred.iter().zip(truth) {
        m[t as usize][p as usize] += 1;
    }
    m
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassificationReport {
    pub accuracy: f64,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub confusion: Vec<Vec<u64>>,
}

impl ClassificationReport {
    /// Per-class scores; a class never predicted (or absent) scores 0, as scikit-learn does.
    pub fn new(pred: &[i64], truth: &[i64], k: usize) -> Self {
        let m = confusion_matrix(pred, truth, k);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut precision = Vec::with_capacity(k);
        let mut recall = Vec::with_capacity(k);
        let mut f1 = Vec::with_capacity(k);
        for (c, row) in m.iter().enumerate() {
            let tp = row[c];
            let predicted: u64 = m.iter().map(|r| r[c]).sum();
            let actual: u64 = row.iter().sum();
            let (p, r) = (ratio(tp, predicted), ratio(tp, actual));
            precision.push(p);
            recall.push(r);
            f1.push(if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            });
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / k as f64;
        ClassificationReport {
            accuracy: accuracy(pred, truth),
            precision_macro: mean(&precision),
            recall_macro: mean(&recall),
            f1_macro: mean(&f1),
            precision,
            recall,
            f1,
            confusion: m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        // truth: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
        let truth = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 2, 2];
        let r = ClassificationReport::new(&pred, &truth, 3);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // precision: 2/2, 1/2, 1/2 ; recall: 2/3, 1/2, 1/1
        assert!((r.precision_macro - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert!((r.recall_macro - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        assert!((r.f1_macro - f1.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    }
}
