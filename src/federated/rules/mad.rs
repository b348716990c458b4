//! MAD, trust-based model anomaly detection over FedAvg (Korobeinikov, Chuprov, Reznik, §II,
//! eqs (1)–(7)). From the activation round on, every round, for every client still taking part:
//! 1. K-means (k clusters) over the clients' model parameters (or their updates); the main
//!    cluster is the largest.
//! 2. dᵢ = 1 − ‖pᵢ − c‖ / D, one minus the normalized Euclidean distance to the main cluster's
//!    center c, clipped to [0, 1] (the normalizer D: see [`Normalization`]).
//! 3. Reputation. (1) In MAD's first round R = d. Afterwards
//!    (2) R̃ = (R⁻ + d) + R⁻/t if d ≥ α, else (R⁻ + d) − exp(−(1 − d)·R⁻/t), t the round;
//!    (3) R̃ clipped to [0, 1]; (4) R = β_R·R̃ + (1 − β_R)·R⁻, β_R = 0.75.
//! 4. Trust. (5) T̃ = √(R² + d²) − √((1 − R)² + (1 − d)²); (6) T = β_T·T̃ + (1 − β_T)·T⁻,
//!    β_T = 0.85, T⁻ = 0 before the first round ("starting at 0 for all clients");
//!    (7) T clipped to [0, 1].
//! 5. A client whose trust falls below the threshold is left out of this round's average and
//!    excluded for good: it is never again asked to train or to evaluate, so it no longer
//!    receives the global model (§V).
//!
//! In (4) and (6) β weighs the value just computed and 1 − β the previous round's, as the paper
//! writes them. `smoothing = "previous_weighted"` puts β on the previous value instead: a slower
//! filter that needs several bad rounds before trust falls, kept for comparison with earlier runs
//! of this rule (which also started trust at 1: `initial_trust = 1.0`).
//!
//! The paper is silent on k, on how the distance is normalized and on the threshold (it calls
//! the threshold β, like the smoothing factors); the defaults here are k = 2, the radius
//! normalization and 0.5, all configurable. Scores before the activation round are not
//! accumulated: "detection and exclusion … is initiated" at that round.
//!
//! Over 500 lines on purpose: the paper's seven equations with their hand-computed tests; the last 145 lines are its tests.

use super::fedavg::WeightedMean;
use super::require;
use crate::cluster as kmeans;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, Aggregation, ClientUpdate, Flag, RobustRule, RoundContext, RuleStatus, Score};
use crate::vector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What K-means clusters. Distances are the same either way (the global model is a common
/// offset); only `normalize = "center"` differs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum MadInput {
    #[default]
    Parameters,
    Updates,
}

/// Which value β weighs in the smoothing steps (4) and (6).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Smoothing {
    /// x = β·x̃ + (1 − β)·x⁻: the paper's equations (4) and (6).
    #[default]
    CurrentWeighted,
    /// x = β·x⁻ + (1 − β)·x̃: β on the previous value (this rule's earlier behaviour).
    PreviousWeighted,
}

impl Smoothing {
    fn apply(self, beta: f64, current: f64, previous: f64) -> f64 {
        match self {
            Smoothing::CurrentWeighted => beta * current + (1.0 - beta) * previous,
            Smoothing::PreviousWeighted => beta * previous + (1.0 - beta) * current,
        }
    }
}

/// The divisor D in dᵢ = 1 − distᵢ / D. The paper says only "normalized".
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// D = `radius_scale` × the main cluster's radius (its largest member distance): with the
    /// default 4, members keep d ≥ 0.75 and clients four radii out get d = 0. Scale-free, and it
    /// never forces an honest client to 0 once the outliers are gone (K-means still splits the
    /// honest clients in two, so the minority half must not look like attackers).
    #[default]
    Radius,
    /// D = the largest distance this round: the farthest client always gets d = 0, even when
    /// every client is honest.
    Max,
    /// D = ‖c‖, the norm of the main center (a relative distance; meaningful with
    /// `on = "updates"`).
    Center,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MadConfig {
    /// First round that scores clients (earlier rounds are plain FedAvg).
    #[serde(default = "one")]
    pub activation_round: usize,
    #[serde(default = "two")]
    pub k: usize,
    #[serde(default)]
    pub on: MadInput,
    #[serde(default)]
    pub normalize: Normalization,
    #[serde(default = "four")]
    pub radius_scale: f64,
    #[serde(default = "half")]
    pub alpha: f64,
    #[serde(default = "beta_r")]
    pub beta_reputation: f64,
    #[serde(default = "beta_t")]
    pub beta_trust: f64,
    #[serde(default = "half")]
    pub threshold: f64,
    /// T⁻ of the first round: 0 in the paper.
    #[serde(default)]
    pub initial_trust: f64,
    #[serde(default)]
    pub smoothing: Smoothing,
    #[serde(default = "yes")]
    pub weighted: bool,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn four() -> f64 {
    4.0
}
fn half() -> f64 {
    0.5
}
fn beta_r() -> f64 {
    0.75
}
fn beta_t() -> f64 {
    0.85
}
fn yes() -> bool {
    true
}

impl Default for MadConfig {
    fn default() -> Self {
        toml::from_str("").expect("every MAD setting has a default")
    }
}

impl MadConfig {
    pub fn validate(&self) -> Result<()> {
        require(
            self.k >= 2,
            "mad",
            format!("`k` must be at least 2, got {}", self.k),
        )?;
        require(
            self.radius_scale.is_finite() && self.radius_scale >= 1.0,
            "mad",
            format!("`radius_scale` must be ≥ 1, got {}", self.radius_scale),
        )?;
        require(
            self.activation_round >= 1,
            "mad",
            "`activation_round` counts from 1".into(),
        )?;
        for (key, v) in [
            ("alpha", self.alpha),
            ("beta_reputation", self.beta_reputation),
            ("beta_trust", self.beta_trust),
            ("threshold", self.threshold),
            ("initial_trust", self.initial_trust),
        ] {
            require(
                (0.0..=1.0).contains(&v),
                "mad",
                format!("`{key}` must be within 0..=1, got {v}"),
            )?;
        }
        Ok(())
    }
}

/// A client's reputation and trust.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    pub reputation: f64,
    pub trust: f64,
}

impl MadConfig {
    /// One round of equations (1)–(7) for a client at distance score `d` in round `t`, from its
    /// standing after the previous round (`None` in MAD's first round).
    pub fn step(&self, prev: Option<Standing>, d: f64, t: usize) -> Standing {
        let t = t.max(1) as f64;
        let (reputation, trust_prev) = match prev {
            // (1)
            None => (d, self.initial_trust),
            Some(p) => {
                let r = p.reputation;
                // (2)
                let raw = if d >= self.alpha {
                    (r + d) + r / t
                } else {
                    (r + d) - (-(1.0 - d) * r / t).exp()
                };
                // (3), then (4)
                let raw = raw.clamp(0.0, 1.0);
                (self.smoothing.apply(self.beta_reputation, raw, r), p.trust)
            }
        };
        let r = reputation;
        // (5)
        let raw_t = (r * r + d * d).sqrt() - ((1.0 - r).powi(2) + (1.0 - d).powi(2)).sqrt();
        // (6), then (7)
        let trust = self
            .smoothing
            .apply(self.beta_trust, raw_t, trust_prev)
            .clamp(0.0, 1.0);
        Standing { reputation, trust }
    }

    /// dᵢ for each point from its distance to the main center.
    pub fn distance_scores(&self, points: &[&[f32]], seed: u64) -> Vec<f64> {
        let c = kmeans::kmeans(points, self.k, seed, 100);
        let main = c.largest();
        let center = &c.centers[main];
        let dist: Vec<f64> = points
            .iter()
            .map(|p| vector::sq_dist(p, center).sqrt())
            .collect();
        let scale = match self.normalize {
            Normalization::Max => dist.iter().copied().fold(0.0, f64::max),
            Normalization::Center => vector::norm(center),
            Normalization::Radius => {
                self.radius_scale
                    * (0..points.len())
                        .filter(|&i| c.labels[i] == main)
                        .map(|i| dist[i])
                        .fold(0.0, f64::max)
            }
        };
        dist.iter()
            .map(|&x| {
                if scale > 0.0 {
                    (1.0 - x / scale).clamp(0.0, 1.0)
                } else {
                    1.0
                }
            })
            .collect()
    }
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    standing: BTreeMap<usize, Standing>,
    /// Excluded client → round of exclusion.
    excluded: BTreeMap<usize, usize>,
}

pub struct Mad {
    cfg: MadConfig,
    state: Mutex<State>,
}

impl Mad {
    pub fn new(cfg: MadConfig) -> Self {
        Mad {
            cfg,
            state: Mutex::new(State::default()),
        }
    }
}

impl RobustRule for Mad {
    fn name(&self) -> String {
        format!("mad(from={})", self.cfg.activation_round)
    }
    fn status(&self) -> RuleStatus {
        let st = self.state.lock().expect("MAD state lock");
        RuleStatus {
            excluded: st.excluded.keys().copied().collect(),
            ..Default::default()
        }
    }

    fn state(&self) -> Option<serde_json::Value> {
        let st = self.state.lock().expect("MAD state lock");
        Some(serde_json::to_value(&*st).expect("serializable"))
    }

    fn restore(&self, state: serde_json::Value) -> Result<()> {
        *self.state.lock().expect("MAD state lock") = super::state_from("mad", state)?;
        Ok(())
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let mut st = self.state.lock().expect("MAD state lock");
        let mut flags: Vec<Flag> = st
            .excluded
            .iter()
            .map(|(&c, &r)| Flag::excluded(c, format!("trust below threshold since round {r}")))
            .collect();
        let mut scores = Vec::new();
        let mut keep: Vec<bool> = updates
            .iter()
            .map(|u| !st.excluded.contains_key(&u.client))
            .collect();
        let active: Vec<usize> = (0..updates.len()).filter(|&i| keep[i]).collect();
        if ctx.round >= self.cfg.activation_round && active.len() >= 2 {
            let owned: Vec<Vec<f32>>;
            let points: Vec<&[f32]> = match self.cfg.on {
                MadInput::Parameters => active
                    .iter()
                    .map(|&i| updates[i].params.as_slice())
                    .collect(),
                MadInput::Updates => {
                    owned = active
                        .iter()
                        .map(|&i| vector::delta(&updates[i].params, ctx.global))
                        .collect();
                    owned.iter().map(|d| d.as_slice()).collect()
                }
            };
            let d = self.cfg.distance_scores(&points, ctx.seed);
            for (k, &i) in active.iter().enumerate() {
                let client = updates[i].client;
                let s = self
                    .cfg
                    .step(st.standing.get(&client).copied(), d[k], ctx.round);
                st.standing.insert(client, s);
                scores.extend([
                    Score {
                        client,
                        name: "distance_score",
                        value: d[k],
                    },
                    Score {
                        client,
                        name: "reputation",
                        value: s.reputation,
                    },
                    Score {
                        client,
                        name: "trust",
                        value: s.trust,
                    },
                ]);
                if s.trust < self.cfg.threshold {
                    st.excluded.insert(client, ctx.round);
                    keep[i] = false;
                    flags.push(Flag::excluded(
                        client,
                        format!(
                            "trust {:.4} < threshold {} (d = {:.4}, R = {:.4})",
                            s.trust, self.cfg.threshold, d[k], s.reputation
                        ),
                    ));
                }
            }
        }
        flags.sort_by_key(|f| f.client);
        let mut mean = WeightedMean::new(ctx.global.len(), self.cfg.weighted);
        let mut any = false;
        for (u, k) in updates.into_iter().zip(keep) {
            if k {
                mean.add(u)?;
                any = true;
            }
        }
        let params = if any {
            Box::new(mean).finish()?.params
        } else {
            ctx.global.to_vec()
        };
        Ok(Aggregate {
            params,
            flags,
            scores,
        })
    }
}

impl super::RuleConfig for MadConfig {
    fn validate(&self, _per_round: usize) -> Result<()> {
        self.validate()
    }
    fn build(&self) -> Box<dyn crate::federated::strategy::Strategy> {
        Box::new(Mad::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{ctx, run_with, updates};
    use crate::federated::strategy::Strategy;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn equations_by_hand_in_the_papers_order() {
        let cfg = MadConfig::default();
        // Round 1, d = 0.8: (1) R = 0.8; (5) T̃ = √(0.64 + 0.64) − √(0.04 + 0.04) = 0.6√2
        // ≈ 0.848528; (6) T = 0.85·0.848528 + 0.15·0 ≈ 0.721249 (trust starts at 0).
        let s1 = cfg.step(None, 0.8, 1);
        assert!(close(s1.reputation, 0.8));
        assert!(close(s1.trust, 0.85 * 0.6 * 2f64.sqrt()));
        assert!((s1.trust - 0.721249).abs() < 1e-6);
        // Round 2, d = 0.2 < α: (2) R̃ = (0.8 + 0.2) − exp(−0.8·0.8/2) = 1 − e^{−0.32}
        // ≈ 0.273851; (4) R = 0.75·0.273851 + 0.25·0.8 ≈ 0.405388; (5) T̃ = √(R² + 0.04)
        // − √((1 − R)² + 0.64) ≈ −0.544737; (6) T = 0.85·T̃ + 0.15·0.721249 ≈ −0.354839;
        // (7) clipped to 0.
        let s2 = cfg.step(Some(s1), 0.2, 2);
        let r_raw = 1.0 - (-0.32f64).exp();
        let r = 0.75 * r_raw + 0.25 * 0.8;
        assert!(close(s2.reputation, r));
        assert!((s2.reputation - 0.405388).abs() < 1e-6);
        assert_eq!(s2.trust, 0.0);
        // Round 3, d = 0.9 ≥ α: (2) R̃ = (R + 0.9) + R/3 > 1, (3) clipped to 1;
        // (4) R = 0.75 + 0.25·0.405388 ≈ 0.851347; T = 0.85·T̃ + 0.15·0 ≈ 0.900753.
        let s3 = cfg.step(Some(s2), 0.9, 3);
        assert!(close(s3.reputation, 0.75 + 0.25 * r));
        assert!((s3.trust - 0.900753).abs() < 1e-6);
    }

    #[test]
    fn previous_weighted_smoothing_puts_beta_on_the_previous_value() {
        let cfg = MadConfig {
            smoothing: Smoothing::PreviousWeighted,
            initial_trust: 1.0,
            ..Default::default()
        };
        // T = 0.85·1 + 0.15·0.6√2; then R = 0.75·0.8 + 0.25·(1 − e^{−0.32}).
        let s1 = cfg.step(None, 0.8, 1);
        assert!(close(s1.trust, 0.85 + 0.15 * 0.6 * 2f64.sqrt()));
        let s2 = cfg.step(Some(s1), 0.2, 2);
        assert!(close(
            s2.reputation,
            0.75 * 0.8 + 0.25 * (1.0 - (-0.32f64).exp())
        ));
        assert!(MadConfig::default().validate().is_ok());
        let named: MadConfig = toml::from_str("smoothing = \"previous_weighted\"").unwrap();
        assert_eq!(named.smoothing, Smoothing::PreviousWeighted);
    }

    fn trust_of(out: &Aggregate, c: usize) -> f64 {
        out.scores
            .iter()
            .find(|s| s.client == c && s.name == "trust")
            .unwrap()
            .value
    }

    const SPREAD: [&[f32]; 5] = [
        &[1.0, 0.0],
        &[1.1, 0.1],
        &[0.9, -0.1],
        &[-5.0, 5.0],
        &[-5.2, 5.1],
    ];

    #[test]
    fn excludes_the_outliers_for_good() {
        let mad = Mad::new(MadConfig::default());
        let global = [0.0, 0.0];
        // Main cluster: clients 0–2 around (1, 0), radius 0.1√2, so D = 4·0.1√2 and clients 1
        // and 2 score d = 0.75: R = 0.75, T = 0.85·(0.75√2 − 0.25√2) ≈ 0.601 ≥ 0.5.
        // Clients 3 and 4 lie beyond D: d = 0, R = 0, T̃ = −√2, T = 0 < 0.5, excluded at once.
        let out = run_with(&mad, ctx(&global), updates(&SPREAD)).unwrap();
        let excluded: Vec<usize> = out.flags.iter().map(|f| f.client).collect();
        assert_eq!(excluded, vec![3, 4]);
        assert!((trust_of(&out, 1) - 0.85 * 0.5 * 2f64.sqrt()).abs() < 1e-9);
        assert_eq!(trust_of(&out, 3), 0.0);
        assert!(crate::federated::rules::testing::close(
            &out.params,
            &[1.0, 0.0]
        ));
        let excluded = Strategy::status(&mad).excluded;
        assert_eq!(excluded, vec![3, 4]);
        // They are neither asked to train nor sent the model to evaluate again.
        let s = crate::federated::sampling::Sampling::default();
        assert_eq!(s.fit_clients(0, 2, 5, &excluded), vec![0, 1, 2]);
        assert_eq!(s.evaluate_clients(0, 2, 5, &excluded), vec![0, 1, 2]);
    }

    #[test]
    fn previous_weighted_smoothing_from_trust_one_waits_a_round() {
        let mad = Mad::new(
            MadConfig {
                smoothing: Smoothing::PreviousWeighted,
                initial_trust: 1.0,
                ..Default::default()
            },
                    );
        let global = [0.0, 0.0];
        // Round 1: T = 0.85·1 + 0.15·(0 − √2) ≈ 0.638, still above 0.5.
        let out = run_with(&mad, ctx(&global), updates(&SPREAD)).unwrap();
        assert!(out.flags.is_empty());
        assert!(close(trust_of(&out, 3), 0.85 - 0.15 * 2f64.sqrt()));
        // Round 2: T ≈ 0.85·0.638 − 0.212 ≈ 0.330 < 0.5: both are excluded.
        let mut c2 = ctx(&global);
        c2.round = 2;
        let out = run_with(&mad, c2, updates(&SPREAD)).unwrap();
        let excluded: Vec<usize> = out.flags.iter().map(|f| f.client).collect();
        assert_eq!(excluded, vec![3, 4]);
    }

    #[test]
    fn inactive_before_the_activation_round() {
        let mad = Mad::new(
            MadConfig {
                activation_round: 3,
                initial_trust: 0.0,
                ..Default::default()
            },
                    );
        let v: [&[f32]; 3] = [&[1.0], &[1.0], &[-9.0]];
        let global = [0.0];
        let out = run_with(&mad, ctx(&global), updates(&v)).unwrap();
        assert!(out.flags.is_empty() && out.scores.is_empty());
        assert_eq!(out.params, vec![-7.0 / 3.0]);
    }

    #[test]
    fn settings_are_checked() {
        let bad: std::result::Result<crate::federated::rules::Rule, _> =
            toml::from_str("rule = \"mad\"\nthreshold = 2.0");
        assert!(bad.unwrap().validate(10).is_err());
        let unknown: std::result::Result<crate::federated::rules::Rule, _> =
            toml::from_str("rule = \"mad\"\nthreshhold = 0.5");
        assert!(unknown.is_err());
    }
}
