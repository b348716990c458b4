//! fedsentry: a security testbed for centralized and federated medical-image deep learning.
//!
//! Data flows one way: [`config`] → [`data`] → [`attacks`] (poisoning) → [`train`] →
//! [`metrics`] → [`report`]; [`experiment`] wires the steps for one experiment file.

pub mod attacks;
pub mod config;
pub mod data;
pub mod error;
pub mod evasion;
pub mod experiment;
pub mod federated;
pub mod figures;
pub mod gradcam;
pub mod metrics;
pub mod models;
pub mod numerics;
pub mod paper_vs_measured;
pub mod privacy;
pub mod progress;
pub mod repetitions;
pub mod report;
pub mod rounds_figure;
pub mod seed;
pub mod train;

pub use error::{Error, Result};
