//! FLTrust (Cao et al., NDSS 2021). The server trains its own update g₀ on a small clean root
//! dataset each round. Client i gets trust TSᵢ = ReLU(cos(Δᵢ, g₀)); its update is rescaled to
//! ‖g₀‖; the global model moves by Σ TSᵢ·Δ̄ᵢ / Σ TSᵢ (not at all when every TSᵢ is 0).
//!
//! The root dataset is drawn from the training set with the run's seed (the paper samples it
//! from the same distribution as the clients' data).

use super::RuleConfig;
use crate::federated::strategy::Strategy;
use serde::{Deserialize, Serialize};
use super::require;
use crate::error::Result;
use crate::federated::strategy::{Aggregate, ClientUpdate, Flag, RobustRule, RoundConfig, RoundContext};
use crate::vector;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlTrust {
    #[serde(default = "default_root")]
    root_size: usize,
}

impl RuleConfig for FlTrust {
    fn validate(&self, _per_round: usize) -> Result<()> {
        require(self.root_size > 0, "fltrust", "`root_size` must be at least 1".into())
    }
    fn build(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

impl FlTrust {
    pub fn new(root_size: usize) -> Self {
        FlTrust {
            root_size,
        }
    }
}

impl RobustRule for FlTrust {
    fn name(&self) -> String {
        format!("fltrust(root={})", self.root_size)
    }
    fn configure(&self, _round: usize, _selected: usize, _clients: usize) -> RoundConfig {
        RoundConfig {
            root_size: Some(self.root_size),
            ..Default::default()
        }
    }

    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate> {
        let server = ctx.server_model.ok_or_else(|| {
            crate::error::Error::Invalid(
                "fltrust: the server's root-dataset model is missing".into(),
            )
        })?;
        require(!updates.is_empty(), "fltrust", "received no update".into())?;
        let g0 = vector::delta(server, ctx.global);
        let g0_norm = vector::norm(&g0);
        let mut flags = Vec::new();
        let mut scaled = Vec::with_capacity(updates.len());
        let mut trust = Vec::with_capacity(updates.len());
        for u in &updates {
            let mut d = vector::delta(&u.params, ctx.global);
            let ts = vector::cosine(&d, &g0).max(0.0);
            let n = vector::norm(&d);
            if n > 0.0 {
                let s = g0_norm / n;
                d.iter_mut().for_each(|x| *x = (*x as f64 * s) as f32);
            }
            if ts == 0.0 {
                flags.push(Flag::excluded(
                    u.client,
                    "cosine with the server update ≤ 0",
                ));
            } else {
                flags.push(Flag::downweighted(
                    u.client,
                    ts,
                    format!("trust score {ts:.4}"),
                ));
            }
            scaled.push(d);
            trust.push(ts);
        }
        let params = vector::step(ctx.global, &scaled, &trust);
        Ok(Aggregate::flagged(params, flags))
    }
}

/// The paper's root dataset: 100 clean samples.
fn default_root() -> usize {
    100
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::rules::testing::{close, ctx, run_with, updates};

    #[test]
    fn by_hand() {
        let global = [0.0, 0.0];
        let server = [1.0, 0.0]; // g₀ = (1, 0), ‖g₀‖ = 1
        let mut c = ctx(&global);
        c.server_model = Some(&server);
        // Δ₀ = (2, 2): cos = 1/√2, rescaled to (1/√2, 1/√2).
        // Δ₁ = (0, 3): cos = 0 → no weight. Δ₂ = (−1, 0): cos = −1 → 0.
        let v: [&[f32]; 3] = [&[2.0, 2.0], &[0.0, 3.0], &[-1.0, 0.0]];
        let out = run_with(&FlTrust::new(10), c, updates(&v)).unwrap();
        let h = 0.5f32.sqrt();
        assert!(close(&out.params, &[h, h]), "{:?}", out.params);
        let excluded = crate::federated::rules::testing::excluded(&out);
        assert_eq!(excluded, vec![1, 2]);
    }

    #[test]
    fn no_trusted_client_keeps_the_global_model() {
        let global = [1.0, 1.0];
        let server = [2.0, 1.0];
        let mut c = ctx(&global);
        c.server_model = Some(&server);
        let v: [&[f32]; 1] = [&[0.0, 1.0]];
        let out = run_with(&FlTrust::new(10), c, updates(&v)).unwrap();
        assert_eq!(out.params, vec![1.0, 1.0]);
    }
}
