//! Coordinate-wise median (Yin et al., ICML 2018): every parameter of the next global model is
//! the median of the clients' values for it (mean of the middle two for an even count).

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, RobustRule, RoundContext};
use crate::vector;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Median {}

impl Median {
    pub fn new() -> Self {
        Median {}
    }
}

impl Default for Median {
    fn default() -> Self {
        Median::new()
    }
}

impl RuleConfig for Median {
    fn validate(&self, _per_round: usize) -> Result<()> {
        Ok(())
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl RobustRule for Median {
    fn name(&self) -> String {
        "median".into()
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
        let out = run(&Median::new(), &[0.0, 0.0], updates(&v));
        // Sorted columns: [1, 2, 3, 100] → 2.5; [−5, 0, 1, 2] → 0.5.
        assert_eq!(out.params, vec![2.5, 0.5]);
    }
}
