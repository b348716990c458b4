//! Defenses that are not aggregation rules (those live in [`crate::federated::rules`]): they
//! inspect a trained model or adapt it, and report what they found.
//!
//! - [`gradcam`]: Grad-CAM maps of clean and triggered inputs, and a trigger detector scored by
//!   AUROC (thesis §4.6).
//! - [`adaptation`]: Fed-Safe's server-side adaptation of a noisy global model on adversarial
//!   examples of the server's own images.

pub mod adaptation;
pub mod gradcam;
