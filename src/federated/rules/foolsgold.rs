//! FoolsGold (Fung et al., RAID 2020): sybils that push the same poisoned objective have
//! unusually similar update histories. Each client's weight falls with the largest cosine
//! similarity between its accumulated updates and another client's (with "pardoning" of honest
//! clients that merely resemble a more similar pair), passed through the paper's logit with
//! confidence κ. The global model moves by the weighted mean of this round's updates.

use super::{RuleConfig, require};
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use crate::error::Result;
use crate::federated::strategy::{
    Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, };
use crate::vector;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// `rule = "foolsgold"`: the confidence κ of the paper's logit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FoolsGoldConfig {
    #[serde(default = "one")]
    pub kappa: f64,
}

fn one() -> f64 {
    1.0
}

impl RuleConfig for FoolsGoldConfig {
    fn validate(&self, _per_round: usize) -> Result<()> {
        require(
            self.kappa.is_finite() && self.kappa > 0.0,
            "foolsgold",
            format!("`kappa` must be > 0, got {}", self.kappa),
        )
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(FoolsGold::new(self.kappa))
    }
}

pub struct FoolsGold {
    kappa: f64,
    /// Σ of each client's past updates.
    history: Mutex<BTreeMap<usize, Vec<f32>>>,
}

impl FoolsGold {
    pub fn new(kappa: f64) -> Self {
        FoolsGold {
            kappa,
            history: Mutex::new(BTreeMap::new()),
        }
    }
}

/// FoolsGold weights (Algorithm 1 of the paper) from the clients' update histories, with the
/// largest similarity of each.
pub fn weights(histories: &[&[f32]], kappa: f64) -> (Vec<f64>, Vec<f64>) {
    let n = histories.len();
    let mut cs = vec![vec![f64::NEG_INFINITY; n]; n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                cs[i][j] = vector::cosine(histories[i], histories[j]);
            }
        }
    }
    let max_of = |row: &[f64]| row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let v: Vec<f64> = cs.iter().map(|r| max_of(r)).collect();
    // Pardoning: an honest client similar to a sybil is not punished as hard as the sybil.
    for i in 0..n {
        for j in 0..n {
            if i != j && v[j] > v[i] {
                cs[i][j] *= v[i] / v[j];
            }
        }
    }
    let maxcs: Vec<f64> = cs
        .iter()
        .map(|r| {
            let m = max_of(r);
            if m.is_finite() { m } else { 0.0 }
        })
        .collect();
    let mut a: Vec<f64> = maxcs.iter().map(|m| (1.0 - m).clamp(0.0, 1.0)).collect();
    let top = a.iter().copied().fold(0.0, f64::max);
    if top > 0.0 {
        a.iter_mut().for_each(|x| *x /= top);
    }
    for x in a.iter_mut() {
        let p = if *x >= 1.0 { 0.99 } else { *x };
        let logit = kappa * ((p / (1.0 - p)).ln() + 0.5);
        *x = if logit.is_nan() {
            0.0
        } else {
            logit.clamp(0.0, 1.0)
        };
    }
    (a, maxcs)
}

impl RobustRule for FoolsGold {
    fn name(&self) -> String {
        format!("foolsgold(kappa={})", self.kappa)
    }

    fn state(&self) -> Option<serde_json::Value> {
        let h = self.history.lock().expect("FoolsGold history lock");
        Some(serde_json::to_value(&*h).expect("serializable"))
    }

    fn restore(&self, state: serde_json::Value) -> Result<()> {
        *self.history.lock().expect("FoolsGold history lock") =
            super::state_from("foolsgold", state)?;
        Ok(())
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        require(
            !updates.is_empty(),
            "foolsgold",
            "received no update".into(),
        )?;
        let ds = vector::deltas(&updates, ctx.global);
        let mut hist = self.history.lock().expect("FoolsGold history lock");
        for (u, d) in updates.iter().zip(&ds) {
            let h = hist.entry(u.client).or_insert_with(|| vec![0.0; d.len()]);
            h.iter_mut().zip(d).for_each(|(h, x)| *h += x);
        }
        let hs: Vec<&[f32]> = updates.iter().map(|u| hist[&u.client].as_slice()).collect();
        let (w, maxcs) = weights(&hs, self.kappa);
        drop(hs);
        let flags = updates
            .iter()
            .zip(w.iter().zip(&maxcs))
            .filter(|(_, (w, _))| **w < 1.0)
            .map(|(u, (&w, &m))| {
                let why = format!("weight {w:.4}; history cosine similarity {m:.4}");
                if w == 0.0 {
                    Flag::excluded(u.client, why)
                } else {
                    Flag::downweighted(u.client, w, why)
                }
            })
            .collect();
        let params = vector::step(ctx.global, &ds, &w);
        Ok(Aggregate::flagged(params, flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{run, updates};

    #[test]
    fn sybils_get_zero_weight() {
        // Two identical histories (sybils) and one orthogonal honest client.
        let (w, m) = weights(&[&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0]], 1.0);
        assert_eq!(m, vec![1.0, 1.0, 0.0]);
        // α = (0, 0, 1) → the honest 1 → 0.99 → ln(99) + 0.5 > 1 → 1; sybils ln(0) → 0.
        assert_eq!(w, vec![0.0, 0.0, 1.0]);
        let v: [&[f32]; 3] = [&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0]];
        let out = run(
            &FoolsGold::new(1.0),
            &[0.0, 0.0],
            updates(&v),
        );
        assert_eq!(out.params, vec![0.0, 1.0]);
        assert_eq!(out.flags.iter().filter(|f| f.is_exclusion()).count(), 2);
    }

    #[test]
    fn pardoning_by_hand() {
        // cos(h0,h1) = 1/√2 ≈ 0.7071, cos(h0,h2) = 0, cos(h1,h2) = 1/√2.
        // v = (0.7071, 0.7071, 0.7071): nobody is pardoned; α = 1 − 0.7071 for all → normalized
        // to 1 → 0.99 → clipped logit 1.
        let (w, _) = weights(&[&[1.0, 0.0], &[1.0, 1.0], &[0.0, 1.0]], 1.0);
        assert_eq!(w, vec![1.0, 1.0, 1.0]);
        // Two sybil pairs: everyone has a perfect twin, so every weight is 0.
        let (w, _) = weights(&[&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0], &[0.0, 1.0]], 1.0);
        assert_eq!(w, vec![0.0; 4]);
    }
}
