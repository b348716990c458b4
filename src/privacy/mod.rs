//! Differential privacy: the Rényi-DP accountant of the sampled Gaussian mechanism.

pub mod rdp;
