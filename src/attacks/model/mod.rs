//! Model-poisoning attacks: malicious clients manipulate the update they send instead of (or
//! on top of) their training data. Each works on the update Δ = w − w_global and lives in its
//! own file; `ModelPoisoning` is the registry (`[federation.malicious.model_poisoning]`).

pub mod alie;
pub mod gaussian_noise;
pub mod scaling;
pub mod sign_flip;

use crate::error::{Error, Result};
use crate::vector;
use crate::vector::ClientUpdate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelPoisoning {
    /// Update scaling / model replacement (Bagdasaryan et al. 2020): Δ ← λ·Δ. With λ = n/η
    /// the malicious model replaces the global one after averaging.
    Scaling { factor: f64 },
    /// Sign flipping: Δ ← −λ·Δ.
    SignFlip {
        #[serde(default = "one")]
        factor: f64,
    },
    /// The update is replaced by Gaussian noise N(0, σ²) per parameter.
    GaussianNoise { sigma: f64 },
    /// "A little is enough" (Baruch et al. 2019): Δ ← μ − z·σ per coordinate, just inside the
    /// spread of the updates the attackers can see.
    Alie {
        /// Default: the paper's z from n and the number of attackers.
        #[serde(default)]
        z: Option<f64>,
        #[serde(default)]
        knowledge: alie::Knowledge,
    },
}

fn one() -> f64 {
    1.0
}

impl ModelPoisoning {
    pub fn validate(&self) -> Result<()> {
        let (key, v, ok) = match self {
            ModelPoisoning::Scaling { factor } | ModelPoisoning::SignFlip { factor } => {
                ("factor", *factor, factor.is_finite())
            }
            ModelPoisoning::GaussianNoise { sigma } => {
                ("sigma", *sigma, sigma.is_finite() && *sigma >= 0.0)
            }
            ModelPoisoning::Alie { z, .. } => {
                let z = z.unwrap_or(0.0);
                ("z", z, z.is_finite())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::param(
                format!("federation.malicious.model_poisoning.{key}"),
                format!(
                    "must be a finite number{}, got {v}",
                    if key == "sigma" { " ≥ 0" } else { "" }
                ),
            ))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ModelPoisoning::Scaling { .. } => "scaling",
            ModelPoisoning::SignFlip { .. } => "sign_flip",
            ModelPoisoning::GaussianNoise { .. } => "gaussian_noise",
            ModelPoisoning::Alie { .. } => "alie",
        }
    }

    /// Rewrites the updates of the malicious clients (`malicious[i]` for `updates[i]`) of one
    /// round in place.
    pub fn apply(
        &self,
        global: &[f32],
        updates: &mut [ClientUpdate],
        malicious: &[bool],
        seed: u64,
    ) {
        if !malicious.iter().any(|&m| m) {
            return;
        }
        let deltas: Vec<Vec<f32>> = vector::deltas(updates, global);
        let crafted: Vec<Option<Vec<f32>>> = match self {
            ModelPoisoning::Alie { z, knowledge } => {
                let d = alie::craft(&deltas, malicious, *z, *knowledge);
                malicious.iter().map(|&m| m.then(|| d.clone())).collect()
            }
            _ => deltas
                .iter()
                .zip(malicious)
                .enumerate()
                .map(|(i, (d, &m))| {
                    m.then(|| match self {
                        ModelPoisoning::Scaling { factor } => scaling::craft(d, *factor),
                        ModelPoisoning::SignFlip { factor } => sign_flip::craft(d, *factor),
                        ModelPoisoning::GaussianNoise { sigma } => gaussian_noise::craft(
                            d.len(),
                            *sigma,
                            crate::seed::item(
                                seed,
                                updates[i].client as u64,
                                crate::seed::step::GOLDEN32,
                            ),
                        ),
                        ModelPoisoning::Alie { .. } => unreachable!("handled above"),
                    })
                })
                .collect(),
        };
        for (u, c) in updates.iter_mut().zip(crafted) {
            if let Some(d) = c {
                u.params = vector::apply(global, &d);
            }
        }
    }
}
