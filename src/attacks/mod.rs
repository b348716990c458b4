//! Attacks. Training-time poisoning works on plain image sets: each attack modifies a chosen
//! share of a training set and reports which samples it touched.

pub mod backdoor;
pub mod evasion;
pub mod label_flip;
pub mod model;
pub mod selection;

use crate::data::ImageSet;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which samples were poisoned.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PoisonReport {
    /// Indices into the poisoned set, ascending.
    pub indices: Vec<usize>,
    /// Poisoned samples per original class.
    pub per_class: Vec<usize>,
    /// Size of the set.
    pub of: usize,
}

impl PoisonReport {
    /// "342/1140": poisoned over total, as in the thesis appendix.
    pub fn fraction(&self) -> String {
        format!("{}/{}", self.indices.len(), self.of)
    }
}

/// A training-time poisoning attack, as written in an experiment file (`kind = "…"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Poisoning {
    Backdoor(backdoor::Backdoor),
    LabelFlip(label_flip::LabelFlip),
}

impl Poisoning {
    pub fn poison(&self, set: &mut ImageSet, seed: u64) -> Result<PoisonReport> {
        match self {
            Poisoning::Backdoor(b) => b.poison(set, seed),
            Poisoning::LabelFlip(l) => l.poison(set, seed),
        }
    }

    pub fn rate(&self) -> f64 {
        match self {
            Poisoning::Backdoor(b) => b.rate,
            Poisoning::LabelFlip(l) => l.rate,
        }
    }

    /// The same attack at another poison rate (a malicious client's own rate).
    pub fn with_rate(&self, rate: f64) -> Poisoning {
        let mut a = self.clone();
        match &mut a {
            Poisoning::Backdoor(b) => b.rate = rate,
            Poisoning::LabelFlip(l) => l.rate = rate,
        }
        a
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Poisoning::Backdoor(_) => "backdoor",
            Poisoning::LabelFlip(_) => "label_flip",
        }
    }

    pub fn as_backdoor(&self) -> Option<&backdoor::Backdoor> {
        match self {
            Poisoning::Backdoor(b) => Some(b),
            _ => None,
        }
    }

    /// Checks names and ranges against the task's classes before any work starts.
    pub fn validate(&self, classes: &[String]) -> Result<()> {
        match self {
            Poisoning::Backdoor(b) => b.validate(classes),
            Poisoning::LabelFlip(l) => l.validate(classes),
        }
    }
}

/// Resolves a class given by name (or by index as text).
pub fn class_id(classes: &[String], name: &str, field: &str) -> Result<i64> {
    if let Some(i) = classes.iter().position(|c| c == name) {
        return Ok(i as i64);
    }
    match name.parse::<usize>() {
        Ok(i) if i < classes.len() => Ok(i as i64),
        _ => Err(Error::param(
            field,
            format!("unknown class `{name}` (classes: {})", classes.join(", ")),
        )),
    }
}

pub(crate) fn check_rate(rate: f64, field: &str) -> Result<()> {
    if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
        return Err(Error::param(
            field,
            format!("must be within 0..=1, got {rate}"),
        ));
    }
    Ok(())
}
