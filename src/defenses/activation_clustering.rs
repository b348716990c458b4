//! Activation Clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by
//! Activation Clustering", 2018): a poisoned class holds two kinds of images that the model
//! tells apart in its last hidden representation — its own, and the triggered images of other
//! classes relabelled to it. For every label:
//! 1. the representations of the training images carrying that label, centred and reduced to
//!    `dims` dimensions (the paper: 10 independent components; here the top 10 principal
//!    components, deterministic and what IBM ART also offers);
//! 2. 2-means on the reduced points;
//! 3. the smaller cluster is poison when it holds less than `size_threshold` of the class
//!    (the paper's relative-size analysis; ART's default threshold 0.35). The silhouette score
//!    of the split is reported beside it.
//!
//! On a clean class 2-means cuts one blob roughly in half, so nothing is flagged.

use super::{ClassVerdict, Detection, by_label, pca};
use crate::cluster;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActivationClustering {
    /// Dimensions kept before clustering (the paper: 10).
    #[serde(default = "ten")]
    pub dims: usize,
    /// A class's smaller cluster is flagged when it holds less than this share of the class.
    #[serde(default = "default_size_threshold")]
    pub size_threshold: f64,
}

fn ten() -> usize {
    10
}
fn default_size_threshold() -> f64 {
    0.35
}

impl Default for ActivationClustering {
    fn default() -> Self {
        ActivationClustering {
            dims: ten(),
            size_threshold: default_size_threshold(),
        }
    }
}

impl ActivationClustering {
    pub fn validate(&self) -> Result<()> {
        if self.dims == 0 {
            return Err(Error::param("defense.data.dims", "must be at least 1"));
        }
        if !(self.size_threshold > 0.0 && self.size_threshold <= 0.5) {
            return Err(Error::param(
                "defense.data.size_threshold",
                format!("must be within (0, 0.5], got {}", self.size_threshold),
            ));
        }
        Ok(())
    }

    /// Flags training samples from their representations (`features[i]` for sample i, with
    /// label `labels[i]`). Deterministic for a seed (k-means++ seeding).
    pub fn detect(&self, features: &[Vec<f32>], labels: &[i64], seed: u64) -> Detection {
        let mut flagged = vec![false; features.len()];
        // The smaller cluster's members score 1 - share; the rest 0 (for AUROC).
        let mut scores = vec![0.0; features.len()];
        let mut classes = Vec::new();
        for (class, members) in by_label(labels) {
            if members.len() < 4 {
                continue;
            }
            let rows: Vec<&[f32]> = members.iter().map(|&i| features[i].as_slice()).collect();
            let reduced = pca(&rows, self.dims);
            let points: Vec<&[f32]> = reduced.iter().map(Vec::as_slice).collect();
            let split = cluster::kmeans(&points, 2, seed ^ class as u64, 100);
            let ones = split.labels.iter().filter(|&&l| l == 1).count();
            let smaller = if ones * 2 <= members.len() { 1 } else { 0 };
            let share = split.labels.iter().filter(|&&l| l == smaller).count() as f64
                / members.len() as f64;
            let flag = share < self.size_threshold;
            for (k, &i) in members.iter().enumerate() {
                if split.labels[k] == smaller {
                    flagged[i] = flag;
                    scores[i] = 1.0 - share;
                }
            }
            classes.push(ClassVerdict {
                class,
                size: members.len(),
                score: share,
                silhouette: Some(silhouette(&points, &split.labels)),
                flagged: flag,
            });
        }
        Detection {
            flagged,
            scores,
            classes,
        }
    }
}

/// Mean silhouette of a 2-cluster split: (b − a) / max(a, b) per point, a the mean distance
/// to its own cluster, b to the other one (0 for a point alone in its cluster).
pub fn silhouette(points: &[&[f32]], labels: &[usize]) -> f64 {
    let n = points.len();
    let dist = |i: usize, j: usize| crate::vector::sq_dist(points[i], points[j]).sqrt();
    let mut total = 0.0;
    for i in 0..n {
        let (mut own, mut own_n, mut other, mut other_n) = (0.0, 0usize, 0.0, 0usize);
        for j in 0..n {
            if i == j {
                continue;
            }
            if labels[j] == labels[i] {
                own += dist(i, j);
                own_n += 1;
            } else {
                other += dist(i, j);
                other_n += 1;
            }
        }
        if own_n == 0 || other_n == 0 {
            continue;
        }
        let (a, b) = (own / own_n as f64, other / other_n as f64);
        total += (b - a) / a.max(b).max(f64::MIN_POSITIVE);
    }
    total / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defenses::testing::blobs;

    #[test]
    fn recovers_a_planted_fifteen_percent_cluster() {
        // Class 0: 85 clean points around the origin and 15 around a far centre (the poison);
        // class 1: one clean blob.
        let (features, labels, poison) = blobs(100, 0.15, 8.0, 1);
        let d = ActivationClustering::default().detect(&features, &labels, 3);
        let hits = poison.iter().filter(|&&i| d.flagged[i]).count();
        let false_flags = d
            .flagged
            .iter()
            .enumerate()
            .filter(|(i, f)| **f && !poison.contains(i))
            .count();
        assert_eq!(hits, poison.len());
        assert_eq!(false_flags, 0);
        let c0 = &d.classes[0];
        assert!(c0.flagged && (c0.score - 0.15).abs() < 1e-9, "{c0:?}");
        // The poisoned class splits more cleanly than the clean one.
        let c1 = &d.classes[1];
        assert!(!c1.flagged);
        assert!(
            c0.silhouette.unwrap() > c1.silhouette.unwrap() + 0.1,
            "{c0:?} {c1:?}"
        );
    }

    #[test]
    fn flags_nothing_on_clean_data() {
        let (features, labels, _) = blobs(100, 0.0, 0.0, 2);
        let d = ActivationClustering::default().detect(&features, &labels, 3);
        assert!(d.flagged.iter().all(|f| !f), "{:?}", d.classes);
        assert!(d.classes.iter().all(|c| c.score > 0.35));
    }

    #[test]
    fn settings_are_checked() {
        let bad = ActivationClustering {
            size_threshold: 0.7,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("size_threshold")
        );
    }
}
