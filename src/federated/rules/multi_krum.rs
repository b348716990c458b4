//! Multi-Krum (Blanchard et al., NeurIPS 2017): the average of the m models with the best Krum
//! scores (m = n − f unless set). Requires n ≥ 2f + 3 and 1 ≤ m ≤ n.

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::krum::{self, best, flag_others, scores};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, RobustRule, RoundContext};
use crate::vector;

pub fn precondition(n: usize, f: usize, m: Option<usize>) -> Result<()> {
    krum::precondition(n, f)?;
    let m = m.unwrap_or(n - f);
    require(
        (1..=n).contains(&m),
        "multi_krum",
        format!("`m` = {m} must be within 1..={n} (the updates per round)"),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MultiKrum {
    f: usize,
    /// How many of the best Krum scores are averaged (default n − f).
    #[serde(default)]
    m: Option<usize>,
}

impl RuleConfig for MultiKrum {
    fn validate(&self, per_round: usize) -> Result<()> {
        precondition(per_round, self.f, self.m)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl MultiKrum {
    pub fn new(f: usize, m: Option<usize>) -> Self {
        MultiKrum { f, m }
    }
}

impl RobustRule for MultiKrum {
    fn name(&self) -> String {
        match self.m {
            Some(m) => format!("multi_krum(f={},m={m})", self.f),
            None => format!("multi_krum(f={})", self.f),
        }
    }

    fn aggregate(&self, _ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let n = updates.len();
        precondition(n, self.f, self.m)?;
        let vs: Vec<&[f32]> = updates.iter().map(|u| u.params.as_slice()).collect();
        let s = scores(&vs, self.f);
        let mut chosen = best(&s, self.m.unwrap_or(n - self.f));
        chosen.sort_unstable();
        let picked: Vec<&[f32]> = chosen.iter().map(|&i| vs[i]).collect();
        let params = vector::weighted_mean(&picked, &vec![1.0; picked.len()])
            .expect("m ≥ 1 models selected");
        Ok(Aggregate::flagged(
            params,
            flag_others("multi-krum", &updates, &s, &chosen),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, updates};

    #[test]
    fn averages_the_best_scores() {
        // Scores as in Krum's test: 5, 2, 2, 5, 19013. m = n − f = 4 drops the outlier.
        let v: [&[f32]; 5] = [&[0.0], &[1.0], &[2.0], &[3.0], &[100.0]];
        let out = run(
            &MultiKrum::new(1, None),
            &[0.0],
            updates(&v),
        );
        assert_eq!(out.params, vec![1.5]);
        assert_eq!(out.flags.len(), 1);
        assert_eq!(out.flags[0].client, 4);
        // m = 2: the two tied best, clients 1 and 2.
        let out = run(
            &MultiKrum::new(1, Some(2)),
            &[0.0],
            updates(&v),
        );
        assert_eq!(out.params, vec![1.5]);
        assert_eq!(out.flags.len(), 3);
    }

    #[test]
    fn m_out_of_range_is_an_error() {
        assert!(precondition(5, 1, Some(6)).is_err());
        assert!(precondition(5, 1, Some(0)).is_err());
        assert!(precondition(5, 1, None).is_ok());
    }
}
