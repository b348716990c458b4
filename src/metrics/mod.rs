//! Evaluation measures on plain prediction vectors: no model needed.

pub mod asr;
pub mod auroc;
pub mod classification;

pub use asr::{AsrCounts, attack_success_rate, clean_accuracy_drop, clean_check};
pub use classification::{ClassificationReport, accuracy, confusion_matrix};
