//! Spectral Signatures (Tran, Li, Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS
//! 2018): within a class, the poisoned images shift the representations along one direction,
//! which the top singular vector of the centred representations finds. For every label: centre
//! the representations, take the top right singular vector v, score each image by (x − μ)·v
//! squared, and remove the 1.5·ε·n highest scores, ε being the expected poison share (the
//! paper's removal rule).

use super::{ClassVerdict, Detection, by_label, top_direction};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpectralSignatures {
    /// The expected share ε of poisoned images in a class.
    pub expected_poison: f64,
    /// How many times ε·n images are removed per class (the paper: 1.5).
    #[serde(default = "one_and_a_half")]
    pub removal_factor: f64,
}

fn one_and_a_half() -> f64 {
    1.5
}

impl SpectralSignatures {
    pub fn new(expected_poison: f64) -> Self {
        SpectralSignatures {
            expected_poison,
            removal_factor: one_and_a_half(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.expected_poison > 0.0 && self.expected_poison < 1.0) {
            return Err(Error::param(
                "defense.data.expected_poison",
                format!("must be within (0, 1), got {}", self.expected_poison),
            ));
        }
        if !(self.removal_factor > 0.0 && self.removal_factor.is_finite()) {
            return Err(Error::param(
                "defense.data.removal_factor",
                format!("must be > 0, got {}", self.removal_factor),
            ));
        }
        Ok(())
    }

    /// Scores and flags training samples from their representations.
    pub fn detect(&self, features: &[Vec<f32>], labels: &[i64]) -> Detection {
        let mut flagged = vec![false; features.len()];
        let mut scores = vec![0.0; features.len()];
        let mut classes = Vec::new();
        for (class, members) in by_label(labels) {
            if members.len() < 2 {
                continue;
            }
            let rows: Vec<&[f32]> = members.iter().map(|&i| features[i].as_slice()).collect();
            let (mean, v) = top_direction(&rows);
            let s: Vec<f64> = rows
                .iter()
                .map(|r| {
                    let p: f64 = r
                        .iter()
                        .zip(&mean)
                        .zip(&v)
                        .map(|((&x, &m), &d)| (x as f64 - m) * d)
                        .sum();
                    p * p
                })
                .collect();
            let remove = ((self.removal_factor * self.expected_poison * members.len() as f64)
                .round() as usize)
                .min(members.len());
            let mut order: Vec<usize> = (0..members.len()).collect();
            // Highest scores first; ties by index, so the cut is deterministic.
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            for &k in &order[..remove] {
                flagged[members[k]] = true;
            }
            for (k, &i) in members.iter().enumerate() {
                scores[i] = s[k];
            }
            classes.push(ClassVerdict {
                class,
                size: members.len(),
                score: remove as f64 / members.len() as f64,
                silhouette: None,
                flagged: remove > 0,
            });
        }
        Detection {
            flagged,
            scores,
            classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defenses::testing::blobs;
    use crate::metrics::auroc::auroc;

    #[test]
    fn the_score_separates_a_planted_rank_one_shift() {
        // 10% of class 0 shifted along one direction: their scores rank above all others.
        let (features, labels, poison) = blobs(200, 0.1, 6.0, 4);
        let d = SpectralSignatures::new(0.1).detect(&features, &labels);
        let class0: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
        let (pos, neg): (Vec<usize>, Vec<usize>) = class0.iter().partition(|i| poison.contains(i));
        let score = |v: &[usize]| v.iter().map(|&i| d.scores[i]).collect::<Vec<_>>();
        let a = auroc(&score(&neg), &score(&pos)).unwrap();
        assert!(a > 0.99, "AUROC {a}");
        // 1.5·ε·n = 30 removed from class 0: every poisoned image among them.
        assert_eq!(class0.iter().filter(|&&i| d.flagged[i]).count(), 30);
        assert!(poison.iter().all(|&i| d.flagged[i]));
    }

    #[test]
    fn settings_are_checked() {
        assert!(SpectralSignatures::new(0.0).validate().is_err());
        assert!(SpectralSignatures::new(0.1).validate().is_ok());
    }
}
