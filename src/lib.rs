//! fedsentry: a security testbed for centralized and federated medical-image deep learning.
//!
//! The modules form layers; a module imports only from its own layer or the ones above it in
//! this list (data flows downward: an experiment file becomes data, a model, a training, a
//! federation, a study and its report). `tests/layers.rs` checks every `use crate::` line.
//!
//! 1. Leaves: [`cluster`] (k-means), [`error`], [`io`] (atomic JSON/CSV writes, tables), [`numerics`], [`progress`],
//!    [`seed`] (named seed streams), [`vector`] (flat-parameter math and the client update).
//! 2. [`data`], [`metrics`], [`models`], [`privacy`]: each owns its own settings types.
//! 3. [`attacks`]: data poisoning, model poisoning, test-time evasion.
//! 4. [`train`]: local training (plain, FedProx's proximal term, adversarial training).
//! 5. [`defenses`]: defenses that are not aggregation rules (Grad-CAM, Fed-Safe adaptation).
//! 6. [`federated`]: partitions, clients, aggregation rules, the round loop, evasion between
//!    clients.
//! 7. [`config`]: the experiment file's schema and grid expansion.
//! 8. [`report`]: the summary schema, writers, figures, repetitions, paper-vs-measured tables.
//! 9. [`study`]: one experiment cell end to end (centralized, federated, evasion), caching and
//!    scheduling. The `fedsentry` binary parses arguments and calls it.

pub mod cluster;
pub mod error;
pub mod io;
pub mod numerics;
pub mod progress;
pub mod seed;
pub mod vector;

pub mod data;
pub mod metrics;
pub mod models;
pub mod privacy;

pub mod attacks;

pub mod train;

pub mod defenses;

pub mod federated;

pub mod config;

pub mod report;

pub mod study;

pub use error::{Error, Result};
