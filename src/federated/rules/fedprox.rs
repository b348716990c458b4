//! FedProx (Li et al. 2020): clients minimize their loss plus μ/2‖w − w_global‖², which keeps
//! local models near the global one on non-IID data; the server averages as FedAvg does.

use super::RuleConfig;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use super::fedavg::WeightedMean;
use crate::federated::strategy::{Aggregation, RoundConfig, RoundContext, Strategy};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FedProx {
    pub mu: f64,
    #[serde(default = "super::yes")]
    pub weighted: bool,
}

impl RuleConfig for FedProx {
    fn validate(&self, _per_round: usize) -> Result<()> {
        super::non_negative("fedprox", "mu", self.mu)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl FedProx {
    pub fn new(mu: f64, weighted: bool) -> Self {
        FedProx {
            mu,
            weighted,
        }
    }
}

impl Strategy for FedProx {
    fn name(&self) -> String {
        format!("fedprox(mu={})", self.mu)
    }

    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's> {
        Box::new(WeightedMean::new(ctx.global.len(), self.weighted))
    }

    fn configure(&self, _round: usize, _selected: usize, _clients: usize) -> RoundConfig {
        RoundConfig {
            proximal_mu: self.mu,
            ..Default::default()
        }
    }
}
