//! Defenses that are not aggregation rules (those live in [`crate::federated::rules`]): they
//! inspect a trained model or adapt it, and report what they found.
//!
//! - [`gradcam`]: Grad-CAM maps of clean and triggered inputs, and a trigger detector scored by
//!   AUROC (thesis §4.6).
//! - [`adaptation`]: Fed-Safe's server-side adaptation of a noisy global model on adversarial
//!   examples of the server's own images.
//! - Data-level detection, from a model's representations of its training images:
//!   [`activation_clustering`], [`spectral_signatures`].
//! - Input-level detection: [`strip`].
//! - Model repair: [`fine_pruning`].

pub mod activation_clustering;
pub mod adaptation;
pub mod fine_pruning;
pub mod gradcam;
pub mod spectral_signatures;
pub mod strip;

use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `[defense]` in an experiment file: the hospital's checks of its own training data (and
/// retraining without what they flag) and of incoming inputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DefenseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataDefense>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputDefense>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelDefense>,
}

/// `[defense.model]`: a repair of the trained model with the defender's clean data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelDefense {
    FinePruning(fine_pruning::FinePruning),
}

/// `[defense.data]`: a detector of poisoned training samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataDefense {
    ActivationClustering(activation_clustering::ActivationClustering),
    SpectralSignatures(spectral_signatures::SpectralSignatures),
}

/// `[defense.input]`: a detector of triggered inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputDefense {
    Strip(strip::Strip),
}

impl DefenseConfig {
    pub fn validate(&self) -> Result<()> {
        match &self.data {
            Some(DataDefense::ActivationClustering(a)) => a.validate()?,
            Some(DataDefense::SpectralSignatures(s)) => s.validate()?,
            None => {}
        }
        if let Some(ModelDefense::FinePruning(f)) = &self.model {
            f.validate()?;
        }
        match &self.input {
            Some(InputDefense::Strip(s)) => s.validate(),
            None => Ok(()),
        }
    }
}

impl DataDefense {
    pub fn name(&self) -> &'static str {
        match self {
            DataDefense::ActivationClustering(_) => "activation_clustering",
            DataDefense::SpectralSignatures(_) => "spectral_signatures",
        }
    }

    /// Flags training samples from their representations.
    pub fn detect(&self, features: &[Vec<f32>], labels: &[i64], seed: u64) -> Detection {
        match self {
            DataDefense::ActivationClustering(a) => a.detect(features, labels, seed),
            DataDefense::SpectralSignatures(s) => s.detect(features, labels),
        }
    }
}

/// What a model makes of each image just before its last layer (the last hidden
/// representation, which Activation Clustering and Spectral Signatures read).
pub fn representations(
    net: &crate::models::Net,
    set: &crate::data::ImageSet,
    norm: &crate::data::normalize::Normalizer,
) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(set.len());
    for f in batched(net, set, norm, |b| {
        net.penultimate_t(b, false).flatten(1, -1)
    }) {
        let d = f.size()[1] as usize;
        let flat = Vec::<f32>::try_from(f.to_device(tch::Device::Cpu).contiguous().view([-1]))
            .expect("features");
        out.extend(flat.chunks(d).map(<[f32]>::to_vec));
    }
    out
}

/// What `[defense]` found in one cell (`summary.json` → `defense`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DefenseSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataDefenseReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<strip::StripReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelDefenseReport>,
}

/// A repaired model: after pruning, and after fine-tuning the pruned model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelDefenseReport {
    pub method: String,
    /// Share of the last feature map's channels pruned.
    pub pruned: f64,
    pub pruned_clean_accuracy: f64,
    pub pruned_asr: Option<f64>,
    pub clean_accuracy: f64,
    pub asr: Option<f64>,
}

/// A data-level detector on the poisoned training set, and the model retrained without what it
/// flagged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataDefenseReport {
    pub method: String,
    /// Training samples flagged, of all.
    pub flagged: usize,
    pub of: usize,
    /// Poisoned samples flagged, and clean samples flagged (against the known poisoned set).
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub auroc: Option<f64>,
    pub classes: Vec<ClassVerdict>,
    /// The model trained again, from the same start, on the samples kept.
    pub retrained_clean_accuracy: f64,
    pub retrained_asr: Option<f64>,
}

/// A data-level detector's verdict on one class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassVerdict {
    pub class: i64,
    pub size: usize,
    /// Activation Clustering: the smaller cluster's share; Spectral Signatures: the share removed.
    pub score: f64,
    /// Activation Clustering: the silhouette of the 2-means split.
    pub silhouette: Option<f64>,
    pub flagged: bool,
}

/// Which training samples a data-level detector flags, with a score per sample (higher: more
/// suspicious) and its verdict per class.
#[derive(Debug, Clone)]
pub struct Detection {
    pub flagged: Vec<bool>,
    pub scores: Vec<f64>,
    pub classes: Vec<ClassVerdict>,
}

impl Detection {
    /// The samples kept for retraining.
    pub fn kept(&self) -> Vec<usize> {
        (0..self.flagged.len())
            .filter(|&i| !self.flagged[i])
            .collect()
    }

    /// TPR (poisoned samples flagged) and FPR (clean samples flagged) against the truly
    /// poisoned indices; None where a side is empty.
    pub fn rates(&self, poisoned: &[usize]) -> (Option<f64>, Option<f64>) {
        let is_poison = self.mask(poisoned);
        let share = |want: bool| {
            let total = is_poison.iter().filter(|&&p| p == want).count();
            let hits = (0..self.flagged.len())
                .filter(|&i| is_poison[i] == want && self.flagged[i])
                .count();
            (total > 0).then(|| hits as f64 / total as f64)
        };
        (share(true), share(false))
    }

    /// AUROC of the scores for telling poisoned from clean samples.
    pub fn auroc(&self, poisoned: &[usize]) -> Option<f64> {
        let is_poison = self.mask(poisoned);
        let side = |want: bool| -> Vec<f64> {
            (0..self.scores.len())
                .filter(|&i| is_poison[i] == want)
                .map(|i| self.scores[i])
                .collect()
        };
        crate::metrics::auroc::auroc(&side(false), &side(true))
    }

    fn mask(&self, poisoned: &[usize]) -> Vec<bool> {
        let mut is_poison = vec![false; self.flagged.len()];
        for &i in poisoned {
            is_poison[i] = true;
        }
        is_poison
    }
}

/// Sample indices per label, labels ascending (labels with no sample left out).
pub(crate) fn by_label(labels: &[i64]) -> Vec<(i64, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(i);
    }
    groups.into_iter().collect()
}

/// `f` of the model on `set` in batches of 128, normalized as in training and without
/// gradients: the batched forward pass the detectors and repairs share.
pub(crate) fn batched<T>(
    net: &crate::models::Net,
    set: &crate::data::ImageSet,
    norm: &crate::data::normalize::Normalizer,
    mut f: impl FnMut(&Tensor) -> T,
) -> Vec<T> {
    let device = net.vs.device();
    let prep = norm.on(net.in_channels, device);
    let x = set.to_tensor();
    (0..set.len() as i64)
        .step_by(128)
        .map(|start| {
            let len = 128.min(set.len() as i64 - start);
            let batch = prep.apply(&x.narrow(0, start, len).to_device(device));
            tch::no_grad(|| f(&batch))
        })
        .collect()
}

fn matrix(rows: &[&[f32]]) -> (Tensor, Tensor) {
    let d = rows.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let x = Tensor::from_slice(&flat)
        .view([rows.len() as i64, d as i64])
        .to_kind(Kind::Double);
    let mean = x.mean_dim(0, true, Kind::Double);
    (&x - &mean, mean)
}

/// Rows centred and projected on their top `k` principal components (fewer when the rows span
/// fewer dimensions).
pub(crate) fn pca(rows: &[&[f32]], k: usize) -> Vec<Vec<f32>> {
    let (xc, _) = matrix(rows);
    // Reduced SVD: the columns of v are the right singular vectors, largest first.
    let (_, _, v) = xc.svd(true, true);
    let k = k.min(v.size()[1] as usize) as i64;
    let proj = xc.matmul(&v.narrow(1, 0, k)).to_kind(Kind::Float);
    let flat = Vec::<f32>::try_from(proj.contiguous().view([-1])).expect("projection");
    flat.chunks(k.max(1) as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

/// The rows' mean and the top right singular vector of the centred rows.
pub(crate) fn top_direction(rows: &[&[f32]]) -> (Vec<f64>, Vec<f64>) {
    let (xc, mean) = matrix(rows);
    let (_, _, v) = xc.svd(true, true);
    let v = Vec::<f64>::try_from(v.select(1, 0).contiguous()).expect("singular vector");
    let mean = Vec::<f64>::try_from(mean.view([-1])).expect("mean");
    (mean, v)
}

/// Gaussian blobs for the detectors' tests.
#[cfg(test)]
pub(crate) mod testing {
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, Normal};

    /// Two classes of `n` points in 16 dimensions, N(0, 1) around their centres (class 1 at
    /// 3 along the last axis); a share `poison` of class 0 moved `shift` along one direction.
    /// Returns (features, labels, poisoned indices).
    pub fn blobs(
        n: usize,
        poison: f64,
        shift: f32,
        seed: u64,
    ) -> (Vec<Vec<f32>>, Vec<i64>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let dir: Vec<f32> = (0..16).map(|j| if j < 4 { 0.5 } else { 0.0 }).collect();
        let k = (poison * n as f64).round() as usize;
        let (mut features, mut labels, mut poisoned) = (Vec::new(), Vec::new(), Vec::new());
        for class in 0..2i64 {
            for i in 0..n {
                let mut x: Vec<f32> = (0..16).map(|_| normal.sample(&mut rng)).collect();
                if class == 1 {
                    x[15] += 3.0;
                }
                if class == 0 && i < k {
                    x.iter_mut().zip(&dir).for_each(|(v, d)| *v += shift * d);
                    poisoned.push(features.len());
                }
                features.push(x);
                labels.push(class);
            }
        }
        (features, labels, poisoned)
    }
}
