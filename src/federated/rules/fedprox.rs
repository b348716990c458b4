//! FedProx (Li et al. 2020): clients minimize their loss plus μ/2‖w − w_global‖², which keeps
//! local models near the global one on non-IID data; the server averages as FedAvg does.

use super::fedavg::WeightedMean;
use crate::federated::strategy::{Aggregation, RoundContext, Sampling, Strategy};

pub struct FedProx {
    pub mu: f64,
    pub weighted: bool,
    sampling: Sampling,
}

impl FedProx {
    pub fn new(mu: f64, weighted: bool, sampling: Sampling) -> Self {
        FedProx {
            mu,
            weighted,
            sampling,
        }
    }
}

impl Strategy for FedProx {
    fn name(&self) -> String {
        format!("fedprox(mu={})", self.mu)
    }

    fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's> {
        Box::new(WeightedMean::new(ctx.global.len(), self.weighted))
    }

    fn proximal_mu(&self) -> f64 {
        self.mu
    }
}
