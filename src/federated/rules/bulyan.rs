//! Bulyan (El Mhamdi et al., ICML 2018) over Krum: θ = n − 2f models are selected by applying
//! Krum repeatedly (each winner removed from the pool); then, per coordinate, the β = θ − 2f
//! selected values closest to their median are averaged. Requires n ≥ 4f + 3.

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::krum::{best, scores_with};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{
    Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, };
use crate::vector;

pub fn precondition(n: usize, f: usize) -> Result<()> {
    require(
        n >= 4 * f + 3,
        "bulyan",
        format!(
            "needs n ≥ 4f + 3 updates per round; f = {f} needs {} but a round has {n}",
            4 * f + 3
        ),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bulyan {
    f: usize,
}

impl RuleConfig for Bulyan {
    fn validate(&self, per_round: usize) -> Result<()> {
        precondition(per_round, self.f)
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl Bulyan {
    pub fn new(f: usize) -> Self {
        Bulyan { f }
    }
}

/// Indices chosen by θ successive Krum selections. Every selection scores with the
/// n − f − 2 neighbours of the full round (fewer only when the pool has fewer): with the pool's
/// own n' − f − 2, the last picks (pool 2f + 1) would score every candidate 0 and take the
/// first one, Byzantine or not.
fn select(vs: &[&[f32]], f: usize, theta: usize) -> Vec<usize> {
    let k = vs.len().saturating_sub(f + 2);
    let mut pool: Vec<usize> = (0..vs.len()).collect();
    let mut chosen = Vec::with_capacity(theta);
    while chosen.len() < theta {
        let sub: Vec<&[f32]> = pool.iter().map(|&i| vs[i]).collect();
        let w = best(&scores_with(&sub, k.min(sub.len() - 1)), 1)[0];
        chosen.push(pool.remove(w));
    }
    chosen
}

/// Mean of the β values of a sorted column closest to its median.
fn closest_to_median(col: &[f32], beta: usize) -> f32 {
    let med = vector::median_sorted(col) as f64;
    // The β closest values form a contiguous window of the sorted column.
    let mut lo = 0;
    for s in 1..=col.len() - beta {
        let cost = |start: usize| {
            (col[start] as f64 - med)
                .abs()
                .max((col[start + beta - 1] as f64 - med).abs())
        };
        if cost(s) < cost(lo) {
            lo = s;
        }
    }
    vector::mean(&col[lo..lo + beta])
}

impl RobustRule for Bulyan {
    fn name(&self) -> String {
        format!("bulyan(f={})", self.f)
    }

    fn aggregate(&self, _ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let n = updates.len();
        precondition(n, self.f)?;
        let theta = n - 2 * self.f;
        let beta = theta - 2 * self.f;
        let vs: Vec<&[f32]> = updates.iter().map(|u| u.params.as_slice()).collect();
        let mut chosen = select(&vs, self.f, theta);
        chosen.sort_unstable();
        let sel: Vec<&[f32]> = chosen.iter().map(|&i| vs[i]).collect();
        let params = vector::coordinatewise(&sel, |col| closest_to_median(col, beta));
        let flags = (0..n)
            .filter(|i| !chosen.contains(i))
            .map(|i| {
                Flag::excluded(
                    updates[i].client,
                    format!("not among Bulyan's {theta} Krum selections"),
                )
            })
            .collect();
        Ok(Aggregate::flagged(params, flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, updates};

    #[test]
    fn by_hand_with_one_outlier() {
        // n = 7, f = 1: θ = 5 Krum selections, β = 3 values nearest the median per coordinate.
        let v: [&[f32]; 7] = [&[0.0], &[1.0], &[2.0], &[3.0], &[4.0], &[5.0], &[1000.0]];
        let out = run(&Bulyan::new(1), &[0.0], updates(&v));
        // Krum (k = 4 neighbours) over the shrinking pool picks 2, 3, 5, 4, then 1 (once the
        // outlier is among everyone's 4 nearest, the points farthest from it win):
        // {1,2,3,4,5} → median 3 → mean(2,3,4) = 3; clients 0 and 6 are left out.
        assert_eq!(out.params, vec![3.0]);
        let dropped: Vec<usize> = out.flags.iter().map(|f| f.client).collect();
        assert_eq!(dropped, vec![0, 6]);
    }

    #[test]
    fn window_nearest_the_median() {
        assert_eq!(closest_to_median(&[0.0, 9.0, 10.0, 11.0, 50.0], 3), 10.0);
        assert_eq!(closest_to_median(&[1.0, 2.0, 3.0], 1), 2.0);
    }

    #[test]
    fn precondition_bounds() {
        assert!(precondition(7, 1).is_ok());
        assert!(
            precondition(6, 1)
                .unwrap_err()
                .to_string()
                .contains("4f + 3")
        );
    }
}
