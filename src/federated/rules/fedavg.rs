//! FedAvg (McMahan et al. 2017): the next global model is the mean of the clients' models,
//! weighted by their training examples (or unweighted). Summed in f64 in client order, so the
//! result does not depend on how many workers trained the clients.

use super::RuleConfig;
use serde::{Deserialize, Serialize};
use crate::error::{Error, Result};
use crate::federated::strategy::{
    Aggregate, Aggregation, ClientUpdate, RoundContext, Strategy, check_len,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FedAvg {
    #[serde(default = "super::yes")]
    pub weighted: bool,
}

impl RuleConfig for FedAvg {
    fn validate(&self, _per_round: usize) -> Result<()> {
        Ok(())
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl FedAvg {
    pub fn new(weighted: bool) -> Self {
        FedAvg { weighted }
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> String {
        if self.weighted {
            "fedavg".into()
        } else {
            "fedavg(unweighted)".into()
        }
    }

    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's> {
        Box::new(WeightedMean::new(ctx.global.len(), self.weighted))
    }
}

/// Running Σ wₖ·xₖ and Σ wₖ.
pub struct WeightedMean {
    sum: Vec<f64>,
    total: f64,
    weighted: bool,
}

impl WeightedMean {
    pub fn new(len: usize, weighted: bool) -> Self {
        WeightedMean {
            sum: vec![0.0; len],
            total: 0.0,
            weighted,
        }
    }
}

impl Aggregation for WeightedMean {
    fn add(&mut self, u: ClientUpdate) -> Result<()> {
        check_len(&u, self.sum.len())?;
        let w = if self.weighted {
            u.num_examples as f64
        } else {
            1.0
        };
        for (s, &x) in self.sum.iter_mut().zip(&u.params) {
            *s += w * x as f64;
        }
        self.total += w;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Aggregate> {
        if self.total <= 0.0 {
            return Err(Error::Invalid(
                "FedAvg received no update with training examples this round".into(),
            ));
        }
        Ok(Aggregate::plain(
            self.sum.iter().map(|s| (s / self.total) as f32).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, update};

    #[test]
    fn weighted_mean_by_examples() {
        let got = run(
            &FedAvg::new(true),
            &[0.0; 3],
            vec![
                update(0, vec![1.0, 2.0, -4.0], 100),
                update(1, vec![3.0, 0.0, 4.0], 300),
            ],
        );
        // (100·1 + 300·3)/400 = 2.5; (100·2 + 0)/400 = 0.5; (−400 + 1200)/400 = 2.
        assert_eq!(got.params, vec![2.5, 0.5, 2.0]);
    }

    #[test]
    fn unweighted_mean_ignores_sizes() {
        let got = run(
            &FedAvg::new(false),
            &[0.0; 3],
            vec![
                update(0, vec![1.0, 2.0, -4.0], 100),
                update(1, vec![3.0, 0.0, 4.0], 300),
            ],
        );
        assert_eq!(got.params, vec![2.0, 1.0, 0.0]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let s = FedAvg::new(true);
        let global = [0.0; 3];
        let mut agg = s.begin(crate::federated::rules::testing::ctx(&global));
        assert!(agg.add(update(4, vec![1.0], 1)).is_err());
    }
}
