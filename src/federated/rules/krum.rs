//! Krum (Blanchard et al., NeurIPS 2017): each model is scored by the sum of squared distances
//! to its n − f − 2 nearest neighbours; the model with the lowest score becomes the global model.
//! Requires n ≥ 2f + 3.

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{
    Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, };
use crate::vector;

pub fn precondition(n: usize, f: usize) -> Result<()> {
    require(
        n >= 2 * f + 3,
        "krum",
        format!(
            "needs n ≥ 2f + 3 updates per round; f = {f} needs {} but a round has {n}",
            2 * f + 3
        ),
    )
}

/// Krum scores of `vectors` tolerating `f` Byzantine ones.
pub fn scores(vectors: &[&[f32]], f: usize) -> Vec<f64> {
    scores_with(vectors, vectors.len().saturating_sub(f + 2))
}

/// Sum of squared distances to the `k` nearest other vectors (at most all of them).
pub fn scores_with(vectors: &[&[f32]], k: usize) -> Vec<f64> {
    let n = vectors.len();
    let d = vector::sq_distances(vectors);
    (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| d[i][j]).collect();
            row.sort_unstable_by(f64::total_cmp);
            row.iter().take(k).sum()
        })
        .collect()
}

/// Indices of the `m` lowest scores (ties broken by position), ascending by score.
pub fn best(scores: &[f64], m: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(m);
    order
}

/// Flags for the clients not among `chosen`, with their scores.
pub fn flag_others(
    rule: &str,
    updates: &[ClientUpdate],
    scores: &[f64],
    chosen: &[usize],
) -> Vec<Flag> {
    (0..updates.len())
        .filter(|i| !chosen.contains(i))
        .map(|i| {
            Flag::excluded(
                updates[i].client,
                format!(
                    "{rule} score {:.4e} not among the {} selected",
                    scores[i],
                    chosen.len()
                ),
            )
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Krum {
    f: usize,
}

impl RuleConfig for Krum {
    fn validate(&self, per_round: usize) -> Result<()> {
        precondition(per_round, self.f)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl Krum {
    pub fn new(f: usize) -> Self {
        Krum { f }
    }
}

impl RobustRule for Krum {
    fn name(&self) -> String {
        format!("krum(f={})", self.f)
    }

    fn aggregate(&self, _ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        precondition(updates.len(), self.f)?;
        let vs: Vec<&[f32]> = updates.iter().map(|u| u.params.as_slice()).collect();
        let s = scores(&vs, self.f);
        let chosen = best(&s, 1);
        Ok(Aggregate::flagged(
            updates[chosen[0]].params.clone(),
            flag_others("krum", &updates, &s, &chosen),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{ctx, run, run_with, updates};

    #[test]
    fn scores_by_hand() {
        // n = 5, f = 1: each score sums the n − f − 2 = 2 smallest squared distances.
        let v: [&[f32]; 5] = [&[0.0], &[1.0], &[2.0], &[3.0], &[100.0]];
        let s = scores(&v, 1);
        // 0: {1, 4} → 5; 1: {1, 1} → 2; 2: {1, 1} → 2; 3: {1, 4} → 5; 4: {97², 98²}.
        assert_eq!(s, vec![5.0, 2.0, 2.0, 5.0, 9409.0 + 9604.0]);
        let k = Krum::new(1);
        let out = run(&k, &[0.0], updates(&v));
        assert_eq!(out.params, vec![1.0]); // first of the tied best
        let excluded: Vec<usize> = out.flags.iter().map(|f| f.client).collect();
        assert_eq!(excluded, vec![0, 2, 3, 4]);
    }

    #[test]
    fn too_few_clients_is_an_error_not_a_fallback() {
        let v: [&[f32]; 4] = [&[0.0], &[1.0], &[2.0], &[3.0]];
        let err = run_with(&Krum::new(1), ctx(&[0.0]), updates(&v))
            .unwrap_err()
            .to_string();
        assert!(err.contains("n ≥ 2f + 3") && err.contains("has 4"), "{err}");
    }
}
