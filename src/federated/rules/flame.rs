//! FLAME (Nguyen et al., USENIX Security 2022), three steps per round:
//! 1. HDBSCAN over pairwise cosine distances (min cluster size n/2 + 1, min samples 1, a
//!    single cluster allowed); clients outside the majority cluster are excluded.
//! 2. Admitted updates are clipped to S, the median of all clients' update norms ‖wᵢ − w_g‖.
//! 3. The mean of the clipped updates moves the global model; Gaussian noise of deviation λ·S is
//!    added (λ = 0.001 for image classification in the paper).
//!
//! Distances are taken between updates Δᵢ = wᵢ − w_g rather than whole models: every local
//! model lies within rounding of the global one, so the models' cosine distances carry little
//! but float noise, while the updates' directions are what the paper's clustering separates.

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::require;
use crate::error::{Error, Result};
use crate::federated::strategy::{
    Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, };
use crate::vector;
use hdbscan::{DistanceMetric, Hdbscan, HdbscanHyperParams};

pub fn precondition(n: usize) -> Result<()> {
    require(
        n >= 3,
        "flame",
        format!("clustering needs at least 3 updates per round, a round has {n}"),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Flame {
    #[serde(default = "default_lambda")]
    lambda: f64,
}

impl RuleConfig for Flame {
    fn validate(&self, _per_round: usize) -> Result<()> {
        super::non_negative("flame", "lambda", self.lambda)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl Flame {
    pub fn new(lambda: f64) -> Self {
        Flame { lambda }
    }
}

/// Indices of the majority HDBSCAN cluster over cosine distances of `vectors`.
pub fn majority_cluster(vectors: &[&[f32]]) -> Result<Vec<usize>> {
    let n = vectors.len();
    let mut dist = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = (1.0 - vector::cosine(vectors[i], vectors[j])).max(0.0);
            dist[i][j] = d;
            dist[j][i] = d;
        }
    }
    let hp = HdbscanHyperParams::builder()
        .min_cluster_size(n / 2 + 1)
        .min_samples(1)
        .allow_single_cluster(true)
        .dist_metric(DistanceMetric::Precalculated)
        .build();
    let labels = Hdbscan::new(&dist, hp)
        .cluster()
        .map_err(|e| Error::Invalid(format!("flame: HDBSCAN failed: {e}")))?;
    // The cluster holding the most clients (the paper assumes an honest majority).
    let mut counts = std::collections::BTreeMap::new();
    for &l in labels.iter().filter(|&&l| l >= 0) {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    let Some((&major, _)) = counts.iter().max_by_key(|(l, c)| (**c, -**l)) else {
        return Ok(Vec::new());
    };
    Ok((0..n).filter(|&i| labels[i] == major).collect())
}

impl RobustRule for Flame {
    fn name(&self) -> String {
        format!("flame(lambda={})", self.lambda)
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let n = updates.len();
        precondition(n)?;
        let mut ds = vector::deltas(&updates, ctx.global);
        let refs: Vec<&[f32]> = ds.iter().map(|d| d.as_slice()).collect();
        let admitted = majority_cluster(&refs)?;
        let norms: Vec<f64> = ds.iter().map(|d| vector::norm(d)).collect();
        let mut flags: Vec<Flag> = (0..n)
            .filter(|i| !admitted.contains(i))
            .map(|i| Flag::excluded(updates[i].client, "outside FLAME's majority cluster"))
            .collect();
        let s = {
            let mut sorted = norms.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let m = sorted.len();
            if m % 2 == 1 {
                sorted[m / 2]
            } else {
                (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0
            }
        };
        for &i in &admitted {
            if vector::clip(&mut ds[i], s) < 1.0 {
                flags.push(Flag::downweighted(
                    updates[i].client,
                    s / norms[i],
                    format!("update norm {:.4} clipped to the median {s:.4}", norms[i]),
                ));
            }
        }
        flags.sort_by_key(|f| f.client);
        let picked: Vec<&[f32]> = admitted.iter().map(|&i| ds[i].as_slice()).collect();
        let params = match vector::weighted_mean(&picked, &vec![1.0; picked.len()]) {
            Some(mut step) => {
                vector::add_gaussian_to(&mut step, self.lambda * s, ctx.seed, ctx.trainable);
                vector::apply(ctx.global, &step)
            }
            None => ctx.global.to_vec(),
        };
        Ok(Aggregate::flagged(params, flags))
    }
}

/// The paper's noise level λ = 0.001.
fn default_lambda() -> f64 {
    0.001
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{close, run, updates};

    #[test]
    fn excludes_the_odd_direction_and_clips_to_the_median_norm() {
        // Four updates pointing roughly along +x with norms 1, 2, 3, 4; one along −y.
        let v: [&[f32]; 5] = [
            &[1.0, 0.01],
            &[2.0, -0.01],
            &[3.0, 0.02],
            &[4.0, 0.0],
            &[0.0, -10.0],
        ];
        let out = run(
            &Flame::new(0.0),
            &[0.0, 0.0],
            updates(&v),
        );
        let excluded = crate::federated::rules::testing::excluded(&out);
        assert_eq!(excluded, vec![4]);
        // Median norm S = 3 (≈ the third update's): updates 3 (norm 4) is clipped to 3.
        let clipped: Vec<usize> = out
            .flags
            .iter()
            .filter(|f| !f.is_exclusion())
            .map(|f| f.client)
            .collect();
        assert_eq!(clipped, vec![3]);
        let s = vector::norm(&[3.0, 0.02]);
        let x = (1.0 + 2.0 + 3.0 + s) / 4.0;
        let y = (0.01 - 0.01 + 0.02 + 0.0) / 4.0;
        assert!(
            close(&out.params, &[x as f32, y as f32]),
            "{:?}",
            out.params
        );
    }

    #[test]
    fn noise_is_seeded() {
        let v: [&[f32]; 3] = [&[1.0, 0.0], &[1.1, 0.0], &[0.9, 0.1]];
        let f = Flame::new(0.1);
        let a = run(&f, &[0.0, 0.0], updates(&v));
        let b = run(&f, &[0.0, 0.0], updates(&v));
        assert_eq!(a.params, b.params);
    }
}
