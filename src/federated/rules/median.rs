//! Coordinate-wise median (Yin et al., ICML 2018): every parameter of the next global model is
//! the median of the clients' values for it (mean of the middle two for an even count).

use super::vector;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, RobustRule, RoundContext, Sampling};

pub struct Median {
    sampling: Sampling,
}

impl Median {
    pub fn new(sampling: Sampling) -> Self {
        Median { sampling }
    }
}

impl RobustRule for Median {
    fn name(&self) -> String {
        "median".into()
    }
    fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    fn aggregate(&self, _ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        super::require(!updates.is_empty(), "median", "received no update".into())?;
        let vs: Vec<&[f32]> = updates.iter().map(|u| u.params.as_slice()).collect();
        Ok(Aggregate::plain(vector::coordinatewise(
            &vs,
            vector::median_sorted,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, updates};

    #[test]
    fn per_coordinate_median() {
        let v: [&[f32]; 4] = [&[1.0, -5.0], &[2.0, 0.0], &[100.0, 1.0], &[3.0, 2.0]];
        let out = run(&Median::new(Sampling::default()), &[0.0, 0.0], updates(&v));
        // Sorted columns: [1, 2, 3, 100] → 2.5; [−5, 0, 1, 2] → 0.5.
        assert_eq!(out.params, vec![2.5, 0.5]);
    }
}
