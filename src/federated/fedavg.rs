//! FedAvg (McMahan et al. 2017): the next global model is the mean of the clients' models,
//! weighted by their training examples (or unweighted). Summed in f64 in client order, so the
//! result does not depend on how many workers trained the clients.

use super::strategy::{Aggregation, ClientUpdate, Sampling, Strategy, check_len};
use crate::error::{Error, Result};

pub struct FedAvg {
    pub weighted: bool,
    sampling: Sampling,
}

impl FedAvg {
    pub fn new(weighted: bool, sampling: Sampling) -> Self {
        FedAvg { weighted, sampling }
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

    fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    fn begin(&self, global: &[f32]) -> Box<dyn Aggregation + '_> {
        Box::new(WeightedMean::new(global.len(), self.weighted))
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

    fn finish(self: Box<Self>) -> Result<Vec<f32>> {
        if self.total <= 0.0 {
            return Err(Error::Invalid(
                "FedAvg received no update with training examples this round".into(),
            ));
        }
        Ok(self.sum.iter().map(|s| (s / self.total) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(client: usize, params: Vec<f32>, n: usize) -> ClientUpdate {
        ClientUpdate {
            client,
            params,
            num_examples: n,
        }
    }

    fn run(weighted: bool, updates: Vec<ClientUpdate>) -> Vec<f32> {
        let s = FedAvg::new(weighted, Sampling::default());
        let mut agg = s.begin(&[0.0; 3]);
        for u in updates {
            agg.add(u).unwrap();
        }
        agg.finish().unwrap()
    }

    #[test]
    fn weighted_mean_by_examples() {
        let got = run(
            true,
            vec![
                update(0, vec![1.0, 2.0, -4.0], 100),
                update(1, vec![3.0, 0.0, 4.0], 300),
            ],
        );
        // (100·1 + 300·3)/400 = 2.5; (100·2 + 0)/400 = 0.5; (−400 + 1200)/400 = 2.
        assert_eq!(got, vec![2.5, 0.5, 2.0]);
    }

    #[test]
    fn unweighted_mean_ignores_sizes() {
        let got = run(
            false,
            vec![
                update(0, vec![1.0, 2.0, -4.0], 100),
                update(1, vec![3.0, 0.0, 4.0], 300),
            ],
        );
        assert_eq!(got, vec![2.0, 1.0, 0.0]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let s = FedAvg::new(true, Sampling::default());
        let mut agg = s.begin(&[0.0; 3]);
        assert!(agg.add(update(4, vec![1.0], 1)).is_err());
    }
}
