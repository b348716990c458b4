//! The `[data]` table of an experiment file: where images come from and how they are prepared.

use super::augment::AugmentConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: DataSource,
    /// Images are resized to size×size.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Stored channels: 1 (grayscale) or 3 (RGB).
    #[serde(default = "one")]
    pub channels: usize,
    #[serde(default)]
    pub normalize: Normalize,
    /// Threshold + largest-component crop before resizing (files only).
    #[serde(default)]
    pub roi_crop: bool,
    /// Remove test images with a byte- or pixel-identical twin in train.
    #[serde(default = "yes")]
    pub drop_test_duplicates: bool,
    /// Share of the training split held out for validation (stratified).
    #[serde(default = "default_val")]
    pub val_fraction: f64,
    /// Cap on training images per class (0 = all), drawn with the data seed.
    #[serde(default)]
    pub max_train_per_class: usize,
    #[serde(default)]
    pub max_test_per_class: usize,
    #[serde(default)]
    pub synthetic: SyntheticConfig,
    /// Image folder root (relative paths resolve against `--data-root`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_train_split")]
    pub train_split: String,
    #[serde(default = "default_test_split")]
    pub test_split: String,
    /// Class names in label order (npz); folders use their sub-folder names.
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub augment: AugmentConfig,
    /// The real dataset to use instead when `--data-root` is given (`[data.real]`), so one file
    /// runs on the synthetic default anywhere and on real data where it is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<Box<DataConfig>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in MRI phantom generator.
    Synthetic,
    /// `<path>/<split>/<class>/*.{jpg,png}`.
    Folder,
    /// A MedMNIST-style `.npz` at `path`.
    Npz,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Mean and std of the training split, per channel.
    #[default]
    TrainStats,
    /// ImageNet mean/std (RGB), for ImageNet-pretrained backbones.
    Imagenet,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    pub seed: u64,
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub lesion_contrast: f32,
    pub noise: f32,
    /// A subset of the phantom classes, in label order (empty: all four).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        let d = crate::data::synthetic::PhantomConfig::default();
        SyntheticConfig {
            seed: d.seed,
            train_per_class: d.train_per_class,
            test_per_class: d.test_per_class,
            lesion_contrast: d.lesion_contrast,
            noise: d.noise,
            classes: d.classes,
        }
    }
}

impl DataConfig {
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |k: &str, why: String| Err(Error::param(format!("{prefix}.{k}"), why));
        if self.size < 4 || self.size > 1024 {
            return bad(
                "size",
                format!("must be within 4..=1024, got {}", self.size),
            );
        }
        if self.channels != 1 && self.channels != 3 {
            return bad("channels", format!("must be 1 or 3, got {}", self.channels));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be within 0..0.9, got {}", self.val_fraction),
            );
        }
        match self.source {
            DataSource::Synthetic => {
                if self.synthetic.train_per_class == 0 || self.synthetic.test_per_class == 0 {
                    return bad(
                        "synthetic.train_per_class",
                        "and `test_per_class` must be positive".into(),
                    );
                }
                if self.channels != 1 {
                    return bad(
                        "channels",
                        "must be 1 for synthetic data (the model expands gray to RGB)".into(),
                    );
                }
            }
            DataSource::Folder | DataSource::Npz if self.path.is_none() => {
                return bad(
                    "path",
                    format!("is required for source = \"{:?}\"", self.source).to_lowercase(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

fn default_size() -> usize {
    64
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn default_val() -> f64 {
    0.1
}

fn default_train_split() -> String {
    "Training".into()
}

fn default_test_split() -> String {
    "Testing".into()
}
