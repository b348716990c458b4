//! The `[model]` table of an experiment file: architecture, initialization, fine-tuning.

use super::{Arch, FineTune};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// "full", "classifier_only" or "partial" (with `freeze_percent`).
    #[serde(default)]
    pub fine_tune: FineTuneMode,
    #[serde(default)]
    pub freeze_percent: Option<f64>,
    #[serde(default)]
    pub init: Init,
    /// Backbone weights file to start from (safetensors, or a PyTorch `.pth`/`.pt` state
    /// dict); made by `[pretrain]` when absent. `{arch}` in the path stands for the model's
    /// name, so one line serves a grid over models (`imagenet/{arch}.pth`).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// TorchScript module file, for `arch = "torchscript"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<PathBuf>,
    /// Name of the TorchScript module's classifier layer (e.g. "fc"): what classifier-only
    /// fine-tuning trains and what imported weights leave re-initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Random initialization.
    #[default]
    Scratch,
    /// Feature extractor from a trusted pretrained backbone.
    Pretrained,
}

impl ModelConfig {
    /// `weights` with `{arch}` replaced by the model's name.
    pub fn weights_path(&self) -> Option<PathBuf> {
        self.weights
            .as_ref()
            .map(|w| PathBuf::from(w.to_string_lossy().replace("{arch}", self.arch.name())))
    }

    /// What the model is built from (validated: a script comes with its head).
    pub fn recipe(&self) -> crate::models::Recipe {
        crate::models::Recipe {
            arch: self.arch,
            script: self
                .script
                .clone()
                .map(|p| (p, self.head.clone().unwrap_or_default())),
        }
    }

    pub fn validate_script(&self) -> Result<()> {
        let is_script = self.arch == Arch::TorchScript;
        match (is_script, &self.script, &self.head) {
            (true, Some(_), Some(h)) if !h.is_empty() => Ok(()),
            (true, None, _) => Err(Error::param(
                "model.script",
                "is required with `model.arch = \"torchscript\"` (the module file)",
            )),
            (true, Some(_), _) => Err(Error::param(
                "model.script",
                "needs `model.head`, the name of its classifier layer",
            )),
            (false, None, None) => Ok(()),
            (false, _, _) => Err(Error::param(
                "model.script",
                format!(
                    "and `model.head` apply to `arch = \"torchscript\"`, not `{}`",
                    self.arch.name()
                ),
            )),
        }
    }

    /// The fine-tuning mode with its freeze percentage, checked together.
    pub fn fine_tune(&self) -> Result<FineTune> {
        let bad = |why: &str| Err(Error::param("model.freeze_percent", why));
        match (self.fine_tune, self.freeze_percent) {
            (FineTuneMode::Full, None) => Ok(FineTune::Full),
            (FineTuneMode::ClassifierOnly, None) => Ok(FineTune::ClassifierOnly),
            (FineTuneMode::Partial, Some(p)) if (0.0..=100.0).contains(&p) => {
                Ok(FineTune::PartialFreeze(p))
            }
            (FineTuneMode::Partial, Some(p)) => bad(&format!("must be within 0..=100, got {p}")),
            (FineTuneMode::Partial, None) => bad("is required for `model.fine_tune = \"partial\"`"),
            (_, Some(_)) => bad("only applies to `model.fine_tune = \"partial\"`"),
        }
    }
}

/// `model.fine_tune`: which parameters train (the percentage of `partial` is
/// `model.freeze_percent`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FineTuneMode {
    #[default]
    Full,
    ClassifierOnly,
    Partial,
}
