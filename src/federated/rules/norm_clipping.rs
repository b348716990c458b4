//! Norm-difference clipping (Sun et al., "Can You Really Backdoor Federated Learning?", 2019):
//! every update Δᵢ = wᵢ − w_global is scaled to norm at most M before the example-weighted
//! average; optional Gaussian noise N(0, σ²) on the result ("weak differential privacy").

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{
    Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, };
use crate::vector;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NormClipping {
    max_norm: f64,
    #[serde(default)]
    noise_sigma: f64,
}

impl RuleConfig for NormClipping {
    fn validate(&self, _per_round: usize) -> Result<()> {
        super::non_negative("norm_clipping", "noise_sigma", self.noise_sigma)?;
        require(
            self.max_norm.is_finite() && self.max_norm > 0.0,
            "norm_clipping",
            format!("`max_norm` must be > 0, got {}", self.max_norm),
        )
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl NormClipping {
    pub fn new(max_norm: f64, noise_sigma: f64) -> Self {
        NormClipping {
            max_norm,
            noise_sigma,
        }
    }
}

impl RobustRule for NormClipping {
    fn name(&self) -> String {
        if self.noise_sigma > 0.0 {
            format!(
                "norm_clipping(M={},sigma={})",
                self.max_norm, self.noise_sigma
            )
        } else {
            format!("norm_clipping(M={})", self.max_norm)
        }
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        require(
            !updates.is_empty(),
            "norm_clipping",
            "received no update".into(),
        )?;
        let mut flags = Vec::new();
        let mut ds = vector::deltas(&updates, ctx.global);
        for (d, u) in ds.iter_mut().zip(&updates) {
            let before = vector::norm(d);
            let s = vector::clip(d, self.max_norm);
            if s < 1.0 {
                flags.push(Flag::downweighted(
                    u.client,
                    s,
                    format!("update norm {before:.4} clipped to {}", self.max_norm),
                ));
            }
        }
        let refs: Vec<&[f32]> = ds.iter().map(|d| d.as_slice()).collect();
        let w: Vec<f64> = updates.iter().map(|u| u.num_examples as f64).collect();
        let mut mean =
            vector::weighted_mean(&refs, &w).unwrap_or_else(|| vec![0.0; ctx.global.len()]);
        vector::add_gaussian_to(&mut mean, self.noise_sigma, ctx.seed, ctx.trainable);
        Ok(Aggregate::flagged(vector::apply(ctx.global, &mean), flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, update};

    #[test]
    fn clips_then_averages() {
        let global = [1.0, 1.0];
        // Δ₀ = (3, 4) has norm 5 → clipped to (0.6, 0.8); Δ₁ = (0, 0.5) stays.
        let out = run(
            &NormClipping::new(1.0, 0.0),
            &global,
            vec![update(0, vec![4.0, 5.0], 1), update(1, vec![1.0, 1.5], 3)],
        );
        // (1·0.6 + 3·0)/4 = 0.15; (1·0.8 + 3·0.5)/4 = 0.575.
        assert!(crate::federated::rules::testing::close(
            &out.params,
            &[1.15, 1.575]
        ));
        assert_eq!(out.flags.len(), 1);
        assert_eq!(out.flags[0].client, 0);
        assert!((out.flags[0].weight.unwrap() - 0.2).abs() < 1e-12);
    }
}
