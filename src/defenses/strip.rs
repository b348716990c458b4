//! STRIP (Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks", ACSAC
//! 2019): superimpose an input on N clean held-out images and look at the model's predictions.
//! A clean input's blends disagree (high entropy); a triggered input's blends all answer the
//! target, because the trigger survives the blending (low entropy). An input is flagged when
//! the mean entropy over its N blends falls below a threshold set on the defender's clean
//! held-out inputs at a chosen false-rejection rate (the paper: N = 100, FRR 1%).
//!
//! Blending as in the paper: the two images added, saturating at white (clipped to [0, 1]) —
//! a bright trigger survives it at full strength. Entropy in bits.

use crate::attacks::evasion::Logits;
use crate::error::{Error, Result};
use crate::metrics::auroc::auroc;
use rand::{SeedableRng, rngs::StdRng, seq::index};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Strip {
    /// Clean images each input is blended with (N).
    #[serde(default = "hundred")]
    pub superimpositions: usize,
    /// Share of clean inputs the threshold may reject.
    #[serde(default = "one_percent")]
    pub frr: f64,
    /// Test images checked, clean and triggered (each costs `superimpositions` forward passes);
    /// 0: all.
    #[serde(default = "two_hundred")]
    pub samples: usize,
}

fn two_hundred() -> usize {
    200
}

fn hundred() -> usize {
    100
}
fn one_percent() -> f64 {
    0.01
}

impl Default for Strip {
    fn default() -> Self {
        Strip {
            superimpositions: hundred(),
            frr: one_percent(),
            samples: two_hundred(),
        }
    }
}

/// STRIP on a test set and its triggered copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StripReport {
    /// AUROC of −entropy for telling triggered from clean test inputs.
    pub auroc: Option<f64>,
    /// The entropy below which an input is flagged (set on the held-out clean inputs).
    pub threshold: f64,
    /// Clean test inputs flagged (false rejection rate).
    pub frr: f64,
    /// Triggered test inputs not flagged (false acceptance rate).
    pub far: f64,
    pub mean_clean_entropy: f64,
    pub mean_triggered_entropy: f64,
}

impl Strip {
    pub fn validate(&self) -> Result<()> {
        if self.superimpositions == 0 {
            return Err(Error::param(
                "defense.input.superimpositions",
                "must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.frr) {
            return Err(Error::param(
                "defense.input.frr",
                format!("must be within [0, 1), got {}", self.frr),
            ));
        }
        Ok(())
    }

    /// Mean prediction entropy (bits) of each input (N·C·H·W, raw pixels) over its blends with
    /// `self.superimpositions` images drawn from `held_out`; the draw for input i is seeded by
    /// (seed, i).
    pub fn entropies(
        &self,
        model: &Logits,
        inputs: &Tensor,
        held_out: &Tensor,
        seed: u64,
    ) -> Vec<f64> {
        let n = inputs.size()[0];
        let pool = held_out.size()[0] as usize;
        let k = self.superimpositions.min(pool);
        (0..n)
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(crate::seed::mix(seed, i as u64, 0));
                let picks: Vec<i64> = index::sample(&mut rng, pool, k)
                    .into_iter()
                    .map(|j| j as i64)
                    .collect();
                let others = held_out
                    .index_select(0, &Tensor::from_slice(&picks).to_device(held_out.device()));
                let blends = (others + inputs.get(i).unsqueeze(0)).clamp(0.0, 1.0);
                let p = tch::no_grad(|| model(&blends)).softmax(-1, Kind::Double);
                let h = -(&p * (&p + 1e-12).log2()).sum_dim_intlist(-1, false, Kind::Double);
                h.mean(Kind::Double).double_value(&[])
            })
            .collect()
    }

    /// Threshold from the held-out clean entropies at `frr`, applied to the test set's clean and
    /// triggered entropies.
    pub fn report(&self, held_out: &[f64], clean: &[f64], triggered: &[f64]) -> StripReport {
        let mut sorted = held_out.to_vec();
        sorted.sort_by(f64::total_cmp);
        // The largest threshold that rejects at most `frr` of the held-out inputs.
        let cut =
            ((self.frr * sorted.len() as f64).floor() as usize).min(sorted.len().saturating_sub(1));
        let threshold = sorted.get(cut).copied().unwrap_or(0.0);
        let share = |v: &[f64], below: bool| {
            v.iter().filter(|&&h| (h < threshold) == below).count() as f64 / v.len().max(1) as f64
        };
        let neg = |v: &[f64]| v.iter().map(|h| -h).collect::<Vec<_>>();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        StripReport {
            auroc: auroc(&neg(clean), &neg(triggered)),
            threshold,
            frr: share(clean, true),
            far: share(triggered, false),
            mean_clean_entropy: mean(clean),
            mean_triggered_entropy: mean(triggered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A model that answers class 3, confidently, whenever the bottom-right 4×4 patch is bright;
    /// otherwise it leans, unsure, to a class that jumps with the image's mean brightness.
    fn patch_model(x: &Tensor) -> Tensor {
        let n = x.size()[0];
        let patch =
            x.narrow(2, 12, 4)
                .narrow(3, 12, 4)
                .mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let mean = x.mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let cls = ((mean * 400.0).floor().remainder(4.0)).to_kind(Kind::Int64);
        let backdoored = patch.gt(0.9);
        let target = Tensor::full([n], 3, (Kind::Int64, Device::Cpu));
        let chosen = target.where_self(&backdoored, &cls);
        let scale = Tensor::full([n], 0.5, (Kind::Float, Device::Cpu)).where_self(
            &backdoored.logical_not(),
            &Tensor::full([n], 8.0, (Kind::Float, Device::Cpu)),
        );
        chosen.one_hot(4).to_kind(Kind::Float) * scale.unsqueeze(1)
    }

    fn triggered(x: &Tensor) -> Tensor {
        let t = x.copy();
        let _ = t.narrow(2, 12, 4).narrow(3, 12, 4).fill_(1.0);
        t
    }

    #[test]
    fn a_patch_backdoor_leaves_low_entropy() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let (clean, held) = (
            Tensor::rand([40, 1, 16, 16], opts),
            Tensor::rand([60, 1, 16, 16], opts),
        );
        let strip = Strip {
            superimpositions: 30,
            frr: 0.05,
            samples: 0,
        };
        let model: &Logits = &patch_model;
        let h_clean = strip.entropies(model, &clean, &held, 1);
        let h_trig = strip.entropies(model, &triggered(&clean), &held, 1);
        let h_held = strip.entropies(model, &held.narrow(0, 0, 30), &held.narrow(0, 30, 30), 2);
        let r = strip.report(&h_held, &h_clean, &h_trig);
        assert!(
            r.mean_triggered_entropy < 0.5 * r.mean_clean_entropy,
            "{r:?}"
        );
        assert!(r.auroc.unwrap() > 0.95, "{r:?}");
        assert!(r.far < 0.1 && r.frr <= 0.15, "{r:?}");
        // The same draws, the same entropies.
        assert_eq!(h_clean, strip.entropies(model, &clean, &held, 1));
    }
}
