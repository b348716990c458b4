//! Fine-Pruning (Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks
//! on Deep Neural Networks", RAID 2018): backdoor behaviour hides in channels of the last
//! convolutional layer that clean inputs leave dormant. Prune those channels in increasing order
//! of their mean activation on the defender's clean data, `step` of them at a time, until the
//! clean accuracy on that data would fall more than `max_accuracy_drop` below the unpruned
//! model's (the paper: 4 points); then fine-tune the pruned model on the same clean data.
//! The stopping point is chosen from clean accuracy only — the defender has no triggered data.
//!
//! Pruning is a channel mask on the last feature map (`Net::set_channel_mask`): a pruned channel
//! passes no signal and no gradient, so fine-tuning cannot revive it.

use crate::data::ImageSet;
use crate::data::normalize::Normalizer;
use crate::error::{Error, Result};
use crate::models::Net;
use serde::{Deserialize, Serialize};
use tch::Kind;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinePruning {
    /// Largest drop of clean accuracy (0–1, absolute) pruning may cause.
    #[serde(default = "four_points")]
    pub max_accuracy_drop: f64,
    /// Share of the channels pruned per step.
    #[serde(default = "one_percent")]
    pub step: f64,
    /// Fine-tuning epochs on the clean data after pruning.
    #[serde(default = "five")]
    pub epochs: usize,
    /// Fine-tuning learning rate (default: a tenth of `[train].lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

fn four_points() -> f64 {
    0.04
}
fn one_percent() -> f64 {
    0.01
}
fn five() -> usize {
    5
}

impl Default for FinePruning {
    fn default() -> Self {
        FinePruning {
            max_accuracy_drop: four_points(),
            step: one_percent(),
            epochs: five(),
            lr: None,
        }
    }
}

/// What pruning chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    /// Channels kept (true) and pruned (false), in the feature map's order.
    pub keep: Vec<bool>,
    /// Clean accuracy on the defender's data before and after pruning.
    pub accuracy_before: f64,
    pub accuracy_after: f64,
}

impl FinePruning {
    pub fn validate(&self) -> Result<()> {
        if !(self.max_accuracy_drop >= 0.0 && self.max_accuracy_drop < 1.0) {
            return Err(Error::param(
                "defense.model.max_accuracy_drop",
                format!("must be within [0, 1), got {}", self.max_accuracy_drop),
            ));
        }
        if !(self.step > 0.0 && self.step <= 1.0) {
            return Err(Error::param(
                "defense.model.step",
                format!("must be within (0, 1], got {}", self.step),
            ));
        }
        if self.lr.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
            return Err(Error::param("defense.model.lr", "must be > 0"));
        }
        Ok(())
    }

    /// Prunes `net`'s last feature map on the clean data `clean` (sets its channel mask). Only
    /// clean accuracy decides how far.
    pub fn prune(&self, net: &mut Net, clean: &ImageSet, norm: &Normalizer) -> Pruned {
        let activity = channel_activity(net, clean, norm);
        let c = activity.len();
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| activity[a].total_cmp(&activity[b]).then(a.cmp(&b)));
        let per_step = ((self.step * c as f64).round() as usize).max(1);
        let accuracy = |net: &Net| {
            let (_, pred) = crate::train::evaluate(net, clean, norm);
            crate::metrics::accuracy(&pred, &clean.labels)
        };
        let before = accuracy(net);
        let mut accuracies = Vec::new();
        let mut keep = vec![true; c];
        // Never the last channel: the head needs something to read.
        for pruned in (per_step..c).step_by(per_step) {
            for &ch in &order[..pruned] {
                keep[ch] = false;
            }
            net.set_channel_mask(Some(&keep));
            accuracies.push(accuracy(net));
            if *accuracies.last().expect("one") < before - self.max_accuracy_drop {
                break;
            }
        }
        let steps = steps_kept(&accuracies, before, self.max_accuracy_drop);
        let mut keep = vec![true; c];
        for &ch in &order[..steps * per_step] {
            keep[ch] = false;
        }
        net.set_channel_mask(Some(&keep));
        let after = accuracy(net);
        Pruned {
            keep,
            accuracy_before: before,
            accuracy_after: after,
        }
    }
}

/// How many pruning steps to keep: those before the first whose clean accuracy falls more than
/// `max_drop` below `before`.
pub fn steps_kept(accuracies: &[f64], before: f64, max_drop: f64) -> usize {
    accuracies
        .iter()
        .position(|&a| a < before - max_drop)
        .unwrap_or(accuracies.len())
}

/// Mean activation of each channel of the last feature map over `set`.
pub fn channel_activity(net: &Net, set: &ImageSet, norm: &Normalizer) -> Vec<f64> {
    let sums = super::batched(net, set, norm, |b| {
        net.features_t(b, false)
            .sum_dim_intlist(&[0i64, 2, 3][..], false, Kind::Double)
    });
    let Some(sum) = sums.into_iter().reduce(|a, b| a + b) else {
        return Vec::new();
    };
    let v = Vec::<f64>::try_from(sum.to_device(tch::Device::Cpu)).expect("activity");
    v.into_iter().map(|s| s / set.len() as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testing::{phantoms, trained};

    #[test]
    fn the_stopping_point_reads_clean_accuracy_only() {
        // Steps at 0.90, 0.89, 0.87, 0.80: with a 4-point budget from 0.90 the third is the last.
        assert_eq!(steps_kept(&[0.90, 0.89, 0.87, 0.80], 0.90, 0.04), 3);
        assert_eq!(steps_kept(&[0.85], 0.90, 0.04), 0);
        assert_eq!(steps_kept(&[], 0.90, 0.04), 0);
        // `prune` sees the network and clean images only: its signature has no room for
        // triggered data or ASR.
        let _: fn(&FinePruning, &mut Net, &ImageSet, &Normalizer) -> Pruned = FinePruning::prune;
    }

    #[test]
    fn pruning_stays_within_the_clean_accuracy_budget() {
        let (data, norm) = phantoms();
        let (mut net, _) = trained(&data, &norm, 1, 3, &Default::default());
        let fp = FinePruning {
            max_accuracy_drop: 0.05,
            step: 0.05,
            ..Default::default()
        };
        let p = fp.prune(&mut net, &data.test, &norm);
        let pruned = p.keep.iter().filter(|k| !**k).count();
        assert!(pruned > 0, "dormant channels exist in a small CNN");
        assert!(p.accuracy_after >= p.accuracy_before - 0.05, "{p:?}");
        // The mask holds: pruned channels are zero in the feature map.
        let x = norm.on(1, tch::Device::Cpu).apply(&data.test.to_tensor());
        let f = net.features_t(&x, false);
        let ch = p.keep.iter().position(|k| !k).unwrap() as i64;
        assert_eq!(
            f.select(1, ch).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        let activity = channel_activity(&net, &data.test, &norm);
        assert_eq!(activity.len(), p.keep.len());
    }
}
