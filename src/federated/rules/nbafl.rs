//! NbAFL, noising before model aggregation (Wei et al., IEEE TIFS 2020): the noise is
//! calibrated to a target (ε, δ) for the whole training instead of being accounted afterwards.
//! Each client bounds its uploaded parameters to norm C and adds Gaussian noise of deviation
//! σ_U = c·L·Δs_U/ε, with c = √(2 ln(1.25/δ)), L the exposures of each client's parameters and
//! Δs_U = 2C/m for the smallest local dataset size m. The server averages (weighted by data
//! size) and, when T > L√N, adds downlink noise σ_D = 2cC·√(T² − L²N)/(m·N·ε) for T rounds and
//! N clients. Each exposure spends ε/L, so after t rounds ε_t = t·ε/L is reported (past L the
//! calibration no longer covers the run, and the report shows it).

use super::dp_fedavg::{check_clip_and_delta, default_delta};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, Flag, RobustRule, RoundContext, RuleStatus};
use crate::vector;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NbaflConfig {
    /// Bound C on the norm of each client's uploaded (trainable) parameters.
    pub clip: f64,
    /// The (ε, δ) guarantee of the whole training that the noise is calibrated to.
    pub epsilon: f64,
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Exposures L of each client's parameters (default: the number of rounds T).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposures: Option<usize>,
    /// Smallest local dataset size m (default: the smallest update of each round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_dataset_size: Option<usize>,
}

impl NbaflConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = |c: bool, msg: String| require(c, "nbafl", msg);
        check_clip_and_delta("nbafl", self.clip, self.delta)?;
        ok(
            self.epsilon.is_finite() && self.epsilon > 0.0,
            format!("`epsilon` must be > 0, got {}", self.epsilon),
        )?;
        ok(
            self.exposures != Some(0),
            "`exposures` must be at least 1".into(),
        )?;
        ok(
            self.min_dataset_size != Some(0),
            "`min_dataset_size` must be at least 1".into(),
        )
    }

    fn c(&self) -> f64 {
        (2.0 * (1.25 / self.delta).ln()).sqrt()
    }

    /// Uplink deviation σ_U for L exposures and smallest dataset m.
    pub fn sigma_up(&self, l: usize, m: usize) -> f64 {
        let sensitivity = 2.0 * self.clip / m as f64;
        self.c() * l as f64 * sensitivity / self.epsilon
    }

    /// Downlink deviation σ_D for T rounds, L exposures, N clients and smallest dataset m.
    pub fn sigma_down(&self, t: usize, l: usize, n: usize, m: usize) -> f64 {
        let (t, l, nf) = (t as f64, l as f64, n as f64);
        if t <= l * nf.sqrt() {
            return 0.0;
        }
        2.0 * self.c() * self.clip * (t * t - l * l * nf).sqrt() / (m as f64 * nf * self.epsilon)
    }
}

pub struct Nbafl {
    cfg: NbaflConfig,
    rounds_done: AtomicUsize,
    exposures: AtomicUsize,
}

impl Nbafl {
    pub fn new(cfg: NbaflConfig) -> Self {
        Nbafl {
            cfg,
            rounds_done: AtomicUsize::new(0),
            exposures: AtomicUsize::new(1),
        }
    }
}

/// Norm of the values inside `ranges` (all values when `None`).
fn norm_in(v: &[f32], ranges: Option<&[Range<usize>]>) -> f64 {
    match ranges {
        None => vector::norm(v),
        Some(rs) => rs
            .iter()
            .map(|r| vector::norm(&v[r.clone()]).powi(2))
            .sum::<f64>()
            .sqrt(),
    }
}

fn scale_in(v: &mut [f32], s: f64, ranges: Option<&[Range<usize>]>) {
    let all = 0..v.len();
    for r in ranges.unwrap_or(std::slice::from_ref(&all)) {
        v[r.clone()]
            .iter_mut()
            .for_each(|x| *x = (*x as f64 * s) as f32);
    }
}

impl RobustRule for Nbafl {
    fn name(&self) -> String {
        format!("nbafl(C={},eps={})", self.cfg.clip, self.cfg.epsilon)
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        require(!updates.is_empty(), "nbafl", "received no update".into())?;
        let c = self.cfg.clip;
        let t = ctx.rounds.max(1);
        let l = self.cfg.exposures.unwrap_or(t);
        let m = self.cfg.min_dataset_size.unwrap_or_else(|| {
            updates
                .iter()
                .map(|u| u.num_examples)
                .min()
                .unwrap_or(1)
                .max(1)
        });
        let sigma_up = self.cfg.sigma_up(l, m);
        let mut flags = Vec::new();
        let mut uploads: Vec<Vec<f32>> = Vec::with_capacity(updates.len());
        for (i, u) in updates.iter().enumerate() {
            let mut w = u.params.clone();
            // The client's own steps: bound ‖w‖ ≤ C, then noise before upload.
            let n = norm_in(&w, ctx.trainable);
            if n > c {
                scale_in(&mut w, c / n, ctx.trainable);
                flags.push(Flag::downweighted(
                    u.client,
                    c / n,
                    format!("parameter norm {n:.4} clipped to {c}"),
                ));
            }
            vector::add_gaussian_to(
                &mut w,
                sigma_up,
                crate::seed::item(ctx.seed, i as u64 + 1, crate::seed::step::GOLDEN16),
                ctx.trainable,
            );
            uploads.push(w);
        }
        let views: Vec<&[f32]> = uploads.iter().map(Vec::as_slice).collect();
        let weights: Vec<f64> = updates.iter().map(|u| u.num_examples as f64).collect();
        let mut params = vector::weighted_mean(&views, &weights)
            .unwrap_or_else(|| vector::weighted_mean(&views, &vec![1.0; views.len()]).unwrap());
        let sigma_down = self.cfg.sigma_down(t, l, ctx.clients, m);
        vector::add_gaussian_to(&mut params, sigma_down, ctx.seed, ctx.trainable);
        self.exposures.store(l, Ordering::Relaxed);
        self.rounds_done.fetch_add(1, Ordering::Relaxed);
        Ok(Aggregate::flagged(params, flags))
    }

    fn status(&self) -> RuleStatus {
        let l = self.exposures.load(Ordering::Relaxed).max(1);
        let t = self.rounds_done.load(Ordering::Relaxed);
        RuleStatus {
            epsilon: Some(self.cfg.epsilon * t as f64 / l as f64),
            ..Default::default()
        }
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "rounds_done": self.rounds_done.load(Ordering::Relaxed),
            "exposures": self.exposures.load(Ordering::Relaxed),
        }))
    }

    fn restore(&self, state: serde_json::Value) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Saved {
            rounds_done: usize,
            exposures: usize,
        }
        let s: Saved = super::state_from("nbafl", state)?;
        self.rounds_done.store(s.rounds_done, Ordering::Relaxed);
        self.exposures.store(s.exposures, Ordering::Relaxed);
        Ok(())
    }
}

impl super::RuleConfig for NbaflConfig {
    fn validate(&self, _per_round: usize) -> Result<()> {
        self.validate()
    }
    fn build(&self) -> Box<dyn crate::federated::strategy::Strategy> {
        Box::new(Nbafl::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{close, ctx, run_with, update};
    use crate::federated::strategy::Strategy;

    fn cfg(clip: f64, epsilon: f64) -> NbaflConfig {
        NbaflConfig {
            clip,
            epsilon,
            delta: 1e-5,
            exposures: None,
            min_dataset_size: None,
        }
    }

    #[test]
    fn noise_follows_the_papers_calibration() {
        let k = cfg(10.0, 2.0);
        let c = (2.0 * (1.25f64 / 1e-5).ln()).sqrt();
        // σ_U = c·L·(2C/m)/ε with L = 20, m = 100.
        assert!((k.sigma_up(20, 100) - c * 20.0 * 0.2 / 2.0).abs() < 1e-12);
        // No downlink noise while T ≤ L√N (every client exposed every round).
        assert_eq!(k.sigma_down(20, 20, 10, 100), 0.0);
        // T = 50, L = 10, N = 4: √(2500 − 400) = √2100.
        let want = 2.0 * c * 10.0 * 2100f64.sqrt() / (100.0 * 4.0 * 2.0);
        assert!((k.sigma_down(50, 10, 4, 100) - want).abs() < 1e-12);
    }

    #[test]
    fn uploads_are_bounded_then_averaged_by_data_size() {
        // ε so large that the noise is negligible: only the bound and the weighting show.
        let rule = Nbafl::new(cfg(1.0, 1e12));
        let mut x = ctx(&[0.0, 0.0]);
        x.rounds = 1;
        let out = run_with(
            &rule,
            x,
            vec![update(0, vec![3.0, 4.0], 30), update(1, vec![0.0, 0.5], 10)],
        )
        .unwrap();
        // (0.6, 0.8)·¾ + (0, 0.5)·¼.
        assert!(close(&out.params, &[0.45, 0.725]), "{:?}", out.params);
        assert_eq!(out.flags.len(), 1);
        assert_eq!(Strategy::status(&rule).epsilon, Some(1e12));
    }

    #[test]
    fn epsilon_grows_with_every_exposure() {
        let mut k = cfg(1.0, 4.0);
        k.exposures = Some(4);
        let rule = Nbafl::new(k);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let mut x = ctx(&[0.0]);
            x.rounds = 4;
            run_with(&rule, x, vec![update(0, vec![0.1], 10)]).unwrap();
            seen.push(Strategy::status(&rule).epsilon.unwrap());
        }
        assert_eq!(seen, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn impossible_settings_are_named() {
        let mut k = cfg(0.0, 1.0);
        assert!(k.validate().unwrap_err().to_string().contains("clip"));
        k.clip = 1.0;
        k.exposures = Some(0);
        assert!(k.validate().unwrap_err().to_string().contains("exposures"));
    }
}
