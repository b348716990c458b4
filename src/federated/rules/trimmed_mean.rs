//! Coordinate-wise trimmed mean (Yin et al., ICML 2018): for every parameter, the f largest and
//! f smallest client values are dropped and the rest averaged (β = f/n). Requires n ≥ 2f + 1.

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, RobustRule, RoundContext};
use crate::vector;

pub fn precondition(n: usize, f: usize) -> Result<()> {
    require(
        n > 2 * f,
        "trimmed_mean",
        format!(
            "needs n ≥ 2f + 1 updates per round; f = {f} needs {} but a round has {n}",
            2 * f + 1
        ),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrimmedMean {
    f: usize,
}

impl RuleConfig for TrimmedMean {
    fn validate(&self, per_round: usize) -> Result<()> {
        precondition(per_round, self.f)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl TrimmedMean {
    pub fn new(f: usize) -> Self {
        TrimmedMean { f }
    }
}

impl RobustRule for TrimmedMean {
    fn name(&self) -> String {
        format!("trimmed_mean(f={})", self.f)
    }

    fn aggregate(&self, _ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let n = updates.len();
        precondition(n, self.f)?;
        let vs: Vec<&[f32]> = updates.iter().map(|u| u.params.as_slice()).collect();
        let f = self.f;
        Ok(Aggregate::plain(vector::coordinatewise(&vs, |col| {
            vector::mean(&col[f..n - f])
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, updates};

    #[test]
    fn drops_extremes_per_coordinate() {
        let v: [&[f32]; 5] = [
            &[1.0, 10.0],
            &[2.0, -50.0],
            &[3.0, 20.0],
            &[4.0, 30.0],
            &[90.0, 0.0],
        ];
        let out = run(
            &TrimmedMean::new(1),
            &[0.0, 0.0],
            updates(&v),
        );
        // [1, 2, 3, 4, 90] → mean(2, 3, 4) = 3; [−50, 0, 10, 20, 30] → mean(0, 10, 20) = 10.
        assert_eq!(out.params, vec![3.0, 10.0]);
    }

    #[test]
    fn precondition_bounds() {
        assert!(precondition(3, 1).is_ok());
        let e = precondition(2, 1).unwrap_err().to_string();
        assert!(e.contains("2f + 1"), "{e}");
    }
}
