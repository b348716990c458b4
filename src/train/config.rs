//! The `[train]` table of an experiment file: optimizer, learning rate, epochs, batch size.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub optimizer: OptimizerKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Sgd,
}

impl TrainConfig {
    /// Adam with the experiment file's defaults (lr 1e-3, no weight decay).
    pub fn adam(epochs: usize, batch_size: usize) -> TrainConfig {
        TrainConfig {
            optimizer: OptimizerKind::Adam,
            lr: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            epochs,
            batch_size,
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |k: &str, why: String| Err(Error::param(format!("{prefix}.{k}"), why));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        if self.weight_decay < 0.0 || !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "momentum",
                "must be within 0..1 and weight_decay ≥ 0".into(),
            );
        }
        Ok(())
    }
}

fn default_lr() -> f64 {
    1e-3
}

fn default_momentum() -> f64 {
    0.9
}

fn default_batch() -> usize {
    32
}
