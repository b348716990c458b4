//! The server-side `Strategy` interface (after Flower's): which clients train and evaluate each
//! round, and how their updates become the next global model. Each rule lives in its own file
//! and is listed once in [`build`].
//!
//! Models travel as flat `f32` vectors: every variable of the model (weights, biases and
//! batch-norm running statistics) in layer order, as `params::flatten` writes them.

use super::{fedavg::FedAvg, fedprox::FedProx};
use crate::error::{Error, Result};
use rand::{rngs::StdRng, seq::index};
use serde::{Deserialize, Serialize};

/// One client's result of local training.
#[derive(Debug, Clone)]
pub struct ClientUpdate {
    pub client: usize,
    pub params: Vec<f32>,
    /// Training examples behind the update (FedAvg's weight).
    pub num_examples: usize,
}

/// Folds the updates of one round, in ascending client order, into the next global model.
/// Rules that need every update at once (robust rules) keep them; FedAvg keeps only a sum, so
/// a round with a thousand clients holds one model's worth of memory.
pub trait Aggregation {
    fn add(&mut self, update: ClientUpdate) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Vec<f32>>;
}

pub trait Strategy: Send + Sync {
    /// Name for reports, e.g. `fedavg` or `fedprox(mu=0.01)`.
    fn name(&self) -> String;

    fn sampling(&self) -> &Sampling;

    /// Clients that train in `round` (ascending ids).
    fn configure_fit(&self, _round: usize, clients: usize, rng: &mut StdRng) -> Vec<usize> {
        let s = self.sampling();
        sample(clients, s.fraction_fit, s.min_fit_clients, rng)
    }

    /// Clients that evaluate the new global model on their validation sets.
    fn configure_evaluate(&self, _round: usize, clients: usize, rng: &mut StdRng) -> Vec<usize> {
        let s = self.sampling();
        sample(clients, s.fraction_evaluate, s.min_evaluate_clients, rng)
    }

    /// Starts aggregating a round whose global model was `global`.
    fn begin(&self, global: &[f32]) -> Box<dyn Aggregation + '_>;

    /// Weight of the proximal term μ/2‖w − w_global‖² in the clients' local loss (FedProx).
    fn proximal_mu(&self) -> f64 {
        0.0
    }
}

/// Client sampling per round (Flower's fraction_fit / min_fit_clients and their evaluate twins).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub fraction_fit: f64,
    pub min_fit_clients: usize,
    pub fraction_evaluate: f64,
    pub min_evaluate_clients: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            fraction_fit: 1.0,
            min_fit_clients: 1,
            fraction_evaluate: 1.0,
            min_evaluate_clients: 0,
        }
    }
}

impl Sampling {
    pub fn validate(&self, clients: usize) -> Result<()> {
        for (key, f) in [
            ("fraction_fit", self.fraction_fit),
            ("fraction_evaluate", self.fraction_evaluate),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::Invalid(format!(
                    "`federation.{key}` must be within 0..=1, got {f}"
                )));
            }
        }
        if self.min_fit_clients > clients || self.min_evaluate_clients > clients {
            return Err(Error::Invalid(format!(
                "`federation.min_fit_clients` ({}) and `min_evaluate_clients` ({}) cannot exceed the {clients} clients",
                self.min_fit_clients, self.min_evaluate_clients
            )));
        }
        if self.fraction_fit == 0.0 && self.min_fit_clients == 0 {
            return Err(Error::Invalid(
                "`federation.fraction_fit` and `min_fit_clients` are both 0: nobody would train"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// max(⌊fraction·n⌋, min) distinct clients drawn uniformly; all of them when that is n.
pub fn sample(n: usize, fraction: f64, min: usize, rng: &mut StdRng) -> Vec<usize> {
    let k = ((fraction * n as f64).floor() as usize).max(min).min(n);
    if k == n {
        return (0..n).collect();
    }
    let mut picked = index::sample(rng, n, k).into_vec();
    picked.sort_unstable();
    picked
}

/// The aggregation rule, as written in `[federation.strategy]` (`rule = "…"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyConfig {
    /// FedAvg (McMahan et al. 2017); `weighted = false` averages clients equally.
    Fedavg {
        #[serde(default = "yes")]
        weighted: bool,
    },
    /// FedProx (Li et al. 2020): FedAvg aggregation, proximal term μ in local training.
    Fedprox {
        mu: f64,
        #[serde(default = "yes")]
        weighted: bool,
    },
}

fn yes() -> bool {
    true
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::Fedavg { weighted: true }
    }
}

impl StrategyConfig {
    pub fn validate(&self) -> Result<()> {
        match self {
            StrategyConfig::Fedprox { mu, .. } if !(*mu >= 0.0 && mu.is_finite()) => Err(
                Error::Invalid(format!("`federation.strategy.mu` must be ≥ 0, got {mu}")),
            ),
            _ => Ok(()),
        }
    }
}

/// The registry: one line per rule.
pub fn build(cfg: &StrategyConfig, sampling: Sampling) -> Box<dyn Strategy> {
    match cfg {
        StrategyConfig::Fedavg { weighted } => Box::new(FedAvg::new(*weighted, sampling)),
        StrategyConfig::Fedprox { mu, weighted } => {
            Box::new(FedProx::new(*mu, *weighted, sampling))
        }
    }
}

/// Checks that an update fits the global model.
pub fn check_len(update: &ClientUpdate, len: usize) -> Result<()> {
    if update.params.len() != len {
        return Err(Error::Invalid(format!(
            "client {} sent {} parameters, the global model has {len}",
            update.client,
            update.params.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sampling_respects_fraction_and_minimum() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample(4, 1.0, 1, &mut rng), vec![0, 1, 2, 3]);
        let s = sample(1000, 0.1, 2, &mut rng);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample(10, 0.05, 3, &mut rng).len(), 3);
        let a = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        let b = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }
}
