//! The federated evasion threat (Darzi et al.): after training, a client crafts adversarial
//! examples from its own held-out data on the model it holds, and they are tried on every
//! client's model. Which model each client holds is configurable: the global model, its own
//! after one more round of local training, or its own noisy downlink copy (distributed noise).
//!
//! ASR here counts changed predictions (prediction after the attack ≠ before; Darzi eq. 4). AASR
//! is, as the paper defines it, the ASR averaged over *all* clients, the adversary's own model
//! included; the mean over the other clients only is kept beside it as `aasr_others`. The error
//! transfer rate from s to t is, of the examples that fool s, the share that also fool t; AETR
//! averages it over the other clients. The paper gives no formula for AETR: this definition is
//! ours. Attack accuracy (AA, Fed-Safe §4.2) is a model's accuracy on the adversarial examples.

use crate::attacks::evasion::{EvasionConfig, logits_of, predict};
use crate::data::ImageSet;
use crate::data::normalize::Normalizer;
use crate::models::Net;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Which model each client holds when attacked / attacking.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Holds {
    /// Everyone holds the final global model.
    #[default]
    Global,
    /// Each client's model after one more round of local training from the global model.
    Local,
    /// The global model plus independent Gaussian noise N(0, σ²) per client (`noise_sigma`).
    Noisy,
}

/// `[evasion]` in a federated experiment file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// Attacks tried in turn on the same trained models (e.g. an ε sweep).
    pub attacks: Vec<EvasionConfig>,
    /// Examples each source crafts from its validation data.
    #[serde(default = "hundred")]
    pub samples: usize,
    #[serde(default)]
    pub holds: Holds,
    #[serde(default)]
    pub noise_sigma: f64,
    /// Attacking clients (empty: every client in turn).
    #[serde(default)]
    pub sources: Vec<usize>,
    /// Server-side adversarial adaptation of the global model before it is sent out (Fed-Safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt: Option<crate::defenses::adaptation::Adaptation>,
}

fn hundred() -> usize {
    100
}

impl TransferConfig {
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |key: String, why: String| {
            Err(crate::error::Error::param(format!("evasion.{key}"), why))
        };
        if self.attacks.is_empty() {
            return bad("attacks".into(), "lists no attack".into());
        }
        for (i, a) in self.attacks.iter().enumerate() {
            a.validate(&format!("evasion.attacks[{i}]"))?;
        }
        if let Some(a) = &self.adapt {
            a.validate()?;
        }
        if self.samples == 0 {
            return bad("samples".into(), "must be at least 1".into());
        }
        if !(self.noise_sigma >= 0.0 && self.noise_sigma.is_finite()) {
            return bad(
                "noise_sigma".into(),
                format!("must be ≥ 0, got {}", self.noise_sigma),
            );
        }
        Ok(())
    }
}

/// Per (source, target) client: share of changed predictions, and error transfer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TransferReport {
    pub attack: String,
    pub sources: Vec<usize>,
    /// `asr[i][t]`: source `sources[i]` against target client t.
    pub asr: Vec<Vec<f64>>,
    pub etr: Vec<Vec<Option<f64>>>,
    /// `aa[i][t]`: accuracy of target t on the examples source `sources[i]` crafted.
    pub aa: Vec<Vec<f64>>,
    /// Per source: ASR on its own model, average over all clients (AASR), average over the
    /// other clients, average ETR over the other clients.
    pub self_asr: Vec<f64>,
    pub aasr: Vec<f64>,
    /// No serde default on purpose: a summary written when `aasr` meant this mean does not
    /// parse, so its cell is computed again rather than reported under the wrong definition.
    pub aasr_others: Vec<f64>,
    pub aetr: Vec<Option<f64>>,
    /// Clean accuracy of every client's model on its own validation samples.
    pub clean_accuracy: Vec<f64>,
    /// Clean accuracy of every client's model on the whole test set: what a defense that
    /// changes the held models (noise, adaptation) costs, on more images than a client holds.
    #[serde(default)]
    pub test_accuracy: Vec<f64>,
    /// Mean of `test_accuracy` over the clients (Darzi's ACC, "average client performance for
    /// unperturbed test data").
    #[serde(default)]
    pub mean_test_accuracy: f64,
    pub mean_self_asr: f64,
    pub mean_aasr: f64,
    pub mean_aasr_others: f64,
    pub mean_aetr: Option<f64>,
    /// Attack accuracy over every source and target.
    pub mean_aa: f64,
    /// Time to craft one source's batch.
    pub ms_per_batch: f64,
    /// The first source's first example before and after the attack (for the picture, not
    /// kept in summary.json).
    #[serde(skip)]
    pub example: Option<crate::attacks::evasion::examples::Example>,
}

/// One row of the matrices from predictions before (`clean[t]`) and after (`adv[t]`) the
/// attack, on every target t, for examples crafted on `source`.
pub fn row(clean: &[Vec<i64>], adv: &[Vec<i64>], source: usize) -> (Vec<f64>, Vec<Option<f64>>) {
    let changed: Vec<Vec<bool>> = clean
        .iter()
        .zip(adv)
        .map(|(c, a)| c.iter().zip(a).map(|(x, y)| x != y).collect())
        .collect();
    let fooled: Vec<usize> = (0..changed[source].len())
        .filter(|&i| changed[source][i])
        .collect();
    let asr = changed
        .iter()
        .map(|c| c.iter().filter(|&&x| x).count() as f64 / c.len().max(1) as f64)
        .collect();
    let etr = changed
        .iter()
        .map(|c| {
            (!fooled.is_empty())
                .then(|| fooled.iter().filter(|&&i| c[i]).count() as f64 / fooled.len() as f64)
        })
        .collect();
    (asr, etr)
}

/// Share of `pred` equal to `labels`.
fn accuracy(pred: &[i64], labels: &[i64]) -> f64 {
    pred.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / pred.len().max(1) as f64
}

/// Per-source averages of one row of the ASR matrix: (AASR over all clients, mean over the
/// clients other than `source`).
pub fn aasr(asr: &[f64], source: usize) -> (f64, f64) {
    let others = asr
        .iter()
        .enumerate()
        .filter(|&(t, _)| t != source)
        .map(|(_, &a)| a);
    (mean(asr.iter().copied()), mean(others))
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// Runs the scenario for every configured attack: `models[t]` is what client t holds,
/// `sets[t]` its held-out data.
pub fn run(
    models: &[Net],
    sets: &[ImageSet],
    norm: &Normalizer,
    cfg: &TransferConfig,
    seed: u64,
) -> Vec<TransferReport> {
    cfg.attacks
        .iter()
        .map(|a| run_one(models, sets, norm, cfg, a, seed))
        .collect()
}

fn run_one(
    models: &[Net],
    sets: &[ImageSet],
    norm: &Normalizer,
    cfg: &TransferConfig,
    attack: &EvasionConfig,
    seed: u64,
) -> TransferReport {
    let n = models.len();
    let sources: Vec<usize> = if cfg.sources.is_empty() {
        (0..n).collect()
    } else {
        cfg.sources.clone()
    };
    let attack = attack.attack();
    let tensor = |s: &ImageSet| {
        let k = s.len().min(cfg.samples);
        let x = Tensor::from_slice(&s.pixels[..k * s.image_len()]).view([
            k as i64,
            s.channels as i64,
            s.height as i64,
            s.width as i64,
        ]);
        (x, Tensor::from_slice(&s.labels[..k]))
    };
    let clean_accuracy = models
        .iter()
        .zip(sets)
        .map(|(m, s)| {
            let (x, y) = tensor(s);
            let p = predict(m, norm, s.channels, &x);
            accuracy(&p, &Vec::<i64>::try_from(y).expect("labels"))
        })
        .collect();
    let mut report = TransferReport {
        attack: attack.name(),
        sources: sources.clone(),
        clean_accuracy,
        ..Default::default()
    };
    let mut times = Vec::new();
    for &s in &sources {
        let (x, y) = tensor(&sets[s]);
        let model = logits_of(&models[s], norm, sets[s].channels);
        let t = Instant::now();
        let adv = attack
            .generate(&*model, &x.to_kind(Kind::Float), &y, seed ^ s as u64)
            .detach();
        times.push(1000.0 * t.elapsed().as_secs_f64());
        let ch = sets[s].channels;
        if report.example.is_none() && x.size()[0] > 0 {
            let first = |t: &Tensor| Vec::<f32>::try_from(t.get(0).flatten(0, -1)).expect("pixels");
            report.example = Some(crate::attacks::evasion::examples::Example {
                clean: first(&x.to_kind(Kind::Float)),
                adversarial: first(&adv.to_kind(Kind::Float)),
                channels: ch,
                height: sets[s].height,
                width: sets[s].width,
            });
        }
        let clean: Vec<Vec<i64>> = models.iter().map(|m| predict(m, norm, ch, &x)).collect();
        let advp: Vec<Vec<i64>> = models.iter().map(|m| predict(m, norm, ch, &adv)).collect();
        let (asr, etr) = row(&clean, &advp, s);
        let labels = Vec::<i64>::try_from(&y).expect("labels");
        report
            .aa
            .push(advp.iter().map(|p| accuracy(p, &labels)).collect());
        report.self_asr.push(asr[s]);
        let (all, others) = aasr(&asr, s);
        report.aasr.push(all);
        report.aasr_others.push(others);
        let others: Vec<f64> = (0..n).filter(|&t| t != s).filter_map(|t| etr[t]).collect();
        report
            .aetr
            .push((!others.is_empty()).then(|| mean(others.iter().copied())));
        report.asr.push(asr);
        report.etr.push(etr);
    }
    report.mean_self_asr = mean(report.self_asr.iter().copied());
    report.mean_aasr = mean(report.aasr.iter().copied());
    report.mean_aasr_others = mean(report.aasr_others.iter().copied());
    report.mean_aa = mean(report.aa.iter().flatten().copied());
    let e: Vec<f64> = report.aetr.iter().flatten().copied().collect();
    report.mean_aetr = (!e.is_empty()).then(|| mean(e.into_iter()));
    times.sort_by(f64::total_cmp);
    report.ms_per_batch = times.get(times.len() / 2).copied().unwrap_or(0.0);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_row_by_hand() {
        // Source 0 fools itself on examples 0 and 1 (of 4); target 1 changes on 1 and 3;
        // target 2 changes on nothing.
        let clean = vec![vec![0, 1, 2, 3], vec![0, 1, 2, 3], vec![0, 1, 2, 3]];
        let adv = vec![vec![9, 9, 2, 3], vec![0, 9, 2, 9], vec![0, 1, 2, 3]];
        let (asr, etr) = row(&clean, &adv, 0);
        assert_eq!(asr, vec![0.5, 0.5, 0.0]);
        // Of the two that fool the source, target 1 is fooled by one (example 1): 0.5.
        assert_eq!(etr, vec![Some(1.0), Some(0.5), Some(0.0)]);
        // Nothing fools the source: no transfer rate.
        let (_, etr) = row(&clean, &clean, 0);
        assert_eq!(etr, vec![None, None, None]);
    }

    #[test]
    fn aasr_over_all_clients_and_over_the_others() {
        // Three hospitals; the adversary is client 1. Its own model is fooled on 0.9 of the
        // examples, the others on 0.3 and 0.0. Darzi's AASR averages all three:
        // (0.3 + 0.9 + 0.0) / 3 = 0.4; the others-only mean is (0.3 + 0.0) / 2 = 0.15.
        let (all, others) = aasr(&[0.3, 0.9, 0.0], 1);
        assert!((all - 0.4).abs() < 1e-12, "{all}");
        assert!((others - 0.15).abs() < 1e-12, "{others}");
        // One client alone: both are its own ASR / nothing to average (0).
        assert_eq!(aasr(&[0.5], 0), (0.5, 0.0));
    }

    #[test]
    fn attack_accuracy_counts_correct_predictions_on_adversarial_examples() {
        assert_eq!(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]), 0.5);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }
}
