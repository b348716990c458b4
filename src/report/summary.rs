//! The result schema: what one cell reports in `<out>/<cell>/summary.json`. Figures,
//! repetitions and paper-vs-measured tables read it back; older summaries that no longer parse
//! are recomputed, never reported under an old definition.

use crate::config::Experiment;
use crate::federated;
use serde::{Deserialize, Serialize};

/// What one cell reports (`<out>/<cell>/summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub cell: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub model: String,
    pub fine_tune: String,
    pub frozen_fraction: f64,
    pub dataset: String,
    pub train_size: usize,
    pub val_size: usize,
    pub test_size: usize,
    pub attack: Option<String>,
    /// Poisoned training samples, "hits/total".
    pub poisoned: Option<String>,
    pub poisoned_per_class: Option<Vec<usize>>,
    pub clean_accuracy: f64,
    pub baseline_accuracy: Option<f64>,
    /// Clean-accuracy drop in percentage points against the clean baseline.
    pub clean_accuracy_drop: Option<f64>,
    /// ASR as configured (by default thesis eq. 4.1: target-class inputs left out).
    pub asr: Option<f64>,
    /// ASR over every triggered test input (target predictions / total).
    pub asr_all: Option<f64>,
    pub asr_fraction: Option<String>,
    /// The clean baseline model's ASR: how often the trigger alone moves a clean model.
    pub baseline_asr: Option<f64>,
    pub f1_macro: f64,
    /// Federated runs: strategy, partition, malicious clients, poisoned samples per client.
    #[serde(default)]
    pub federation: Option<FedSummary>,
    /// The clean-accuracy check's verdict (with `metrics.clean_check_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_check_flagged: Option<bool>,
    /// Grad-CAM trigger detection and localization (with `[gradcam]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradcam: Option<crate::defenses::gradcam::GradCamSummary>,
    /// What `[defense]` found (data screening with retraining, input checking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense: Option<crate::defenses::DefenseSummary>,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub test_loss: f64,
    pub notes: Vec<String>,
    pub config: Experiment,
    pub seed: u64,
    pub elapsed_s: f64,
    /// Seconds spent training this cell's model (not its baseline or backbone).
    #[serde(default)]
    pub train_s: f64,
    pub fingerprint: String,
    /// The CPU kernels the run used (crate::numerics); absent in older summaries.
    #[serde(default)]
    pub numerics: crate::numerics::Numerics,
}

/// The federation part of a cell's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FedSummary {
    pub strategy: String,
    pub partition: String,
    pub clients: usize,
    pub rounds: usize,
    pub malicious_clients: Vec<usize>,
    /// Poison rate of the malicious clients (the first one's, when they differ).
    pub poison_rate: Option<f64>,
    /// "poisoned/training samples" per client, e.g. "342/1140" (honest: "0/1142").
    pub poisoned_per_client: Vec<String>,
    /// (train, validation) samples per client.
    pub client_sizes: Vec<(usize, usize)>,
    /// The malicious clients' update manipulation, if any (e.g. `scaling`).
    #[serde(default)]
    pub model_poisoning: Option<String>,
    /// Exclusions by the defense scored against the malicious ids.
    #[serde(default)]
    pub detection: federated::detection::Detection,
    /// Privacy spent (ε) after the last round, with a DP rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Why the run ended early (e.g. privacy budget reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Evasion examples crafted by each client, tried on every client (`[evasion]`), per attack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evasion: Vec<crate::federated::transfer::TransferReport>,
}
