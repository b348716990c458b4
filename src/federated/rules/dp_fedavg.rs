//! Client-level differential privacy, DP-FedAvg (McMahan et al., ICLR 2018): every client update
//! Δᵢ = wᵢ − w_global is clipped to norm C; the mean over the m sampled clients gets Gaussian
//! noise of deviation z·C/m, added by the server, or by each client to its own clipped update
//! (deviation z·C/√m each, the same total). Each round is one step of the sampled Gaussian
//! mechanism with rate q = m/N and noise multiplier z; the Rényi-DP accountant reports ε at δ
//! after every round, and a run with a budget stops before a round would exceed it.

use super::require;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, Flag, RobustRule, RoundConfig, RoundContext, RuleStatus};
use crate::privacy::rdp::Accountant;
use crate::vector;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Where the Gaussian noise is added.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum NoiseAt {
    #[default]
    Server,
    Clients,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    /// Clipping norm C of each client update.
    pub clip: f64,
    /// Noise multiplier z.
    pub noise_multiplier: f64,
    #[serde(default)]
    pub noise_at: NoiseAt,
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Stop before ε would exceed this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

pub(super) fn default_delta() -> f64 {
    1e-5
}

/// The settings every DP rule shares: a clipping bound C > 0 and δ within (0, 1).
pub(super) fn check_clip_and_delta(rule: &str, clip: f64, delta: f64) -> Result<()> {
    require(
        clip.is_finite() && clip > 0.0,
        rule,
        format!("`clip` must be > 0, got {clip}"),
    )?;
    require(
        delta > 0.0 && delta < 1.0,
        rule,
        format!("`delta` must be within (0, 1), got {delta}"),
    )
}

impl DpConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = |c: bool, msg: String| require(c, "dp_fedavg", msg);
        check_clip_and_delta("dp_fedavg", self.clip, self.delta)?;
        ok(
            self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0,
            format!(
                "`noise_multiplier` must be ≥ 0, got {}",
                self.noise_multiplier
            ),
        )?;
        if let Some(b) = self.budget {
            ok(b > 0.0, format!("`budget` must be > 0, got {b}"))?;
            ok(
                self.noise_multiplier > 0.0,
                "a privacy `budget` needs `noise_multiplier` > 0".into(),
            )?;
        }
        Ok(())
    }
}

pub struct DpFedAvg {
    cfg: DpConfig,
    accountant: Mutex<Accountant>,
}

impl DpFedAvg {
    pub fn new(cfg: DpConfig) -> Self {
        DpFedAvg {
            cfg,
            accountant: Mutex::new(Accountant::default()),
        }
    }
}

impl DpFedAvg {
    /// ε spent so far at the rule's δ.
    fn spent(&self) -> f64 {
        self.accountant
            .lock()
            .expect("accountant lock")
            .epsilon(self.cfg.delta)
    }
}

impl RobustRule for DpFedAvg {
    fn name(&self) -> String {
        format!(
            "dp_fedavg(C={},z={})",
            self.cfg.clip, self.cfg.noise_multiplier
        )
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let m = updates.len();
        require(m > 0, "dp_fedavg", "received no update".into())?;
        let (c, z) = (self.cfg.clip, self.cfg.noise_multiplier);
        let mut flags = Vec::new();
        let mut ds = vector::deltas(&updates, ctx.global);
        for (i, (d, u)) in ds.iter_mut().zip(&updates).enumerate() {
            let before = vector::norm(d);
            let s = vector::clip(d, c);
            if s < 1.0 {
                flags.push(Flag::downweighted(
                    u.client,
                    s,
                    format!("update norm {before:.4} clipped to {c}"),
                ));
            }
            if self.cfg.noise_at == NoiseAt::Clients {
                let sigma = z * c / (m as f64).sqrt();
                vector::add_gaussian_to(
                    d,
                    sigma,
                    crate::seed::item(ctx.seed, i as u64 + 1, crate::seed::step::GOLDEN16),
                    ctx.trainable,
                );
            }
        }
        // Fixed denominator m (not the example counts), as the privacy analysis requires.
        let mut params = vector::step(ctx.global, &ds, &vec![1.0; m]);
        if self.cfg.noise_at == NoiseAt::Server {
            let mut noise = vec![0.0f32; params.len()];
            vector::add_gaussian_to(&mut noise, z * c / m as f64, ctx.seed, ctx.trainable);
            params.iter_mut().zip(&noise).for_each(|(p, n)| *p += n);
        }
        self.accountant.lock().expect("accountant lock").step(
            m as f64 / ctx.clients.max(m) as f64,
            z,
            1,
        );
        Ok(Aggregate::flagged(params, flags))
    }

    fn status(&self) -> RuleStatus {
        RuleStatus {
            epsilon: Some(self.spent()),
            ..Default::default()
        }
    }

    /// The budget is a stopping condition: a round that would exceed it does not start.
    fn configure(&self, round: usize, selected: usize, clients: usize) -> RoundConfig {
        let stop = self
            .cfg
            .budget
            .filter(|&budget| {
                let mut next = self.accountant.lock().expect("accountant lock").clone();
                next.step(
                    selected as f64 / clients.max(selected).max(1) as f64,
                    self.cfg.noise_multiplier,
                    1,
                );
                next.epsilon(self.cfg.delta) > budget
            })
            .map(|_| {
                format!(
                    "privacy budget reached: round {round} would exceed it (ε = {:.4} after round {})",
                    self.spent(),
                    round - 1
                )
            });
        RoundConfig {
            stop,
            ..Default::default()
        }
    }

    fn state(&self) -> Option<serde_json::Value> {
        let acc = self.accountant.lock().expect("accountant lock");
        Some(serde_json::to_value(&*acc).expect("serializable"))
    }

    fn restore(&self, state: serde_json::Value) -> Result<()> {
        *self.accountant.lock().expect("accountant lock") = super::state_from("dp_fedavg", state)?;
        Ok(())
    }
}

impl super::RuleConfig for DpConfig {
    fn validate(&self, _per_round: usize) -> Result<()> {
        self.validate()
    }
    fn build(&self) -> Box<dyn crate::federated::strategy::Strategy> {
        Box::new(DpFedAvg::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{close, run, update};
    use crate::federated::strategy::Strategy;

    fn cfg(z: f64, budget: Option<f64>) -> DpConfig {
        DpConfig {
            clip: 1.0,
            noise_multiplier: z,
            noise_at: NoiseAt::Server,
            delta: 1e-5,
            budget,
        }
    }

    #[test]
    fn clipping_bounds_every_update() {
        let dp = DpFedAvg::new(cfg(0.0, None));
        // Δ₀ = (3, 4) → (0.6, 0.8); Δ₁ = (0, 0.5) unchanged; mean over m = 2 (examples ignored).
        let out = run(
            &dp,
            &[0.0, 0.0],
            vec![update(0, vec![3.0, 4.0], 100), update(1, vec![0.0, 0.5], 1)],
        );
        assert!(close(&out.params, &[0.3, 0.65]), "{:?}", out.params);
        assert_eq!(out.flags.len(), 1);
        // Whatever the updates, the aggregate moves at most C from the global model.
        let out = run(
            &dp,
            &[1.0, 1.0],
            vec![
                update(0, vec![100.0, -50.0], 1),
                update(1, vec![-70.0, 9.0], 1),
            ],
        );
        assert!(vector::norm(&vector::delta(&out.params, &[1.0, 1.0])) <= 1.0 + 1e-6);
    }

    #[test]
    fn epsilon_per_round_and_budget() {
        // 10 of 100 clients per round, z = 1: after 1 round ε is that of one sampled step.
        let dp = DpFedAvg::new(cfg(1.0, Some(3.0)));
        let mut ctx = crate::federated::rules::testing::ctx(&[0.0]);
        ctx.clients = 100;
        let ups = || (0..10).map(|i| update(i, vec![0.1], 1)).collect::<Vec<_>>();
        let mut rounds = 0;
        let mut last = 0.0;
        while Strategy::configure(&dp, rounds + 1, 10, 100).stop.is_none() {
            crate::federated::rules::testing::run_with(&dp, ctx, ups()).unwrap();
            let e = Strategy::status(&dp).epsilon.unwrap();
            assert!(e > last && e <= 3.0, "{e}");
            last = e;
            rounds += 1;
            assert!(rounds < 10_000);
        }
        let mut acc = Accountant::default();
        acc.step(0.1, 1.0, rounds);
        assert!((acc.epsilon(1e-5) - last).abs() < 1e-12);
        acc.step(0.1, 1.0, 1);
        assert!(
            acc.epsilon(1e-5) > 3.0,
            "the next round would exceed the budget"
        );
    }

    #[test]
    fn server_and_client_noise_have_the_same_spread() {
        let spread = |at: NoiseAt| {
            let dp = DpFedAvg::new(
                DpConfig {
                    noise_at: at,
                    ..cfg(2.0, None)
                },
                            );
            let zeros = vec![0.0f32; 20_000];
            let ups = (0..4).map(|i| update(i, zeros.clone(), 1)).collect();
            let out = run(&dp, &zeros, ups);
            (vector::norm(&out.params).powi(2) / 20_000.0).sqrt()
        };
        // z·C/m = 2·1/4 = 0.5 either way.
        for at in [NoiseAt::Server, NoiseAt::Clients] {
            let s = spread(at);
            assert!((s - 0.5).abs() < 0.02, "{at:?}: {s}");
        }
    }
}
