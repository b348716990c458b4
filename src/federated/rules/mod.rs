//! Aggregation rules, one file each under the paper's name, all behind the `Strategy` interface.
//! `Rule` is what `[federation.strategy]` holds (`rule = "krum"`, `f = 1`, …) and is the
//! registry: adding a rule means one file, one variant, one line in [`Rule::build`].
//!
//! A rule whose precondition does not hold for the number of updates it receives (Krum needs
//! n ≥ 2f + 3, Bulyan n ≥ 4f + 3, …) fails the round with an error naming it; none falls back
//! to another rule.

pub mod bulyan;
pub mod dp_fedavg;
pub mod fedavg;
pub mod fedprox;
pub mod flame;
pub mod fltrust;
pub mod foolsgold;
pub mod kmeans;
pub mod krum;
pub mod mad;
pub mod median;
pub mod multi_krum;
pub mod nbafl;
pub mod norm_clipping;
pub mod trimmed_mean;
pub mod vector;

use super::strategy::{Sampling, Strategy};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// FedAvg (McMahan et al. 2017); `weighted = false` averages clients equally.
    Fedavg {
        #[serde(default = "yes")]
        weighted: bool,
    },
    /// FedProx (Li et al. 2020): FedAvg aggregation, proximal term μ in local training.
    Fedprox {
        mu: f64,
        #[serde(default = "yes")]
        weighted: bool,
    },
    /// Krum (Blanchard et al. 2017) tolerating `f` Byzantine clients.
    Krum { f: usize },
    /// Multi-Krum: the mean of the `m` best Krum scores (default n − f).
    MultiKrum {
        f: usize,
        #[serde(default)]
        m: Option<usize>,
    },
    /// Coordinate-wise median (Yin et al. 2018).
    Median {},
    /// Coordinate-wise trimmed mean (Yin et al. 2018): drops the `f` largest and `f` smallest
    /// values of every coordinate.
    TrimmedMean { f: usize },
    /// Bulyan (El Mhamdi et al. 2018) over Krum.
    Bulyan { f: usize },
    /// Norm-difference clipping (Sun et al. 2019): each update Δ = w − w_global clipped to
    /// `max_norm`, weighted FedAvg, optional Gaussian noise of deviation `noise_sigma`.
    NormClipping {
        max_norm: f64,
        #[serde(default)]
        noise_sigma: f64,
    },
    /// FLTrust (Cao et al. 2021): the server trains on `root_size` clean samples each round.
    Fltrust {
        #[serde(default = "default_root")]
        root_size: usize,
    },
    /// FoolsGold (Fung et al. 2020), confidence κ.
    Foolsgold {
        #[serde(default = "one")]
        kappa: f64,
    },
    /// FLAME (Nguyen et al. 2022): HDBSCAN on cosine distances, median-norm clipping, noise
    /// λ·S.
    Flame {
        #[serde(default = "default_lambda")]
        lambda: f64,
    },
    /// MAD, trust-based model anomaly detection (K-means, reputation, trust), over FedAvg.
    Mad(mad::MadConfig),
    /// Client-level DP-FedAvg (McMahan et al. 2018) with a Rényi-DP accountant.
    DpFedavg(dp_fedavg::DpConfig),
    /// NbAFL (Wei et al. 2020): uplink and downlink noise calibrated to a target (ε, δ).
    Nbafl(nbafl::NbaflConfig),
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn default_root() -> usize {
    100
}
fn default_lambda() -> f64 {
    0.001
}

impl Default for Rule {
    fn default() -> Self {
        Rule::Fedavg { weighted: true }
    }
}

/// A precondition of a rule, as an error naming the rule and the paper's bound.
pub fn require(ok: bool, rule: &str, what: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::param(
            "federation.strategy",
            format!("{rule}: {what}"),
        ))
    }
}

impl Rule {
    /// Checks settings, and the rule's precondition for `per_round` updates per round (the
    /// fewest a round can have under the configured sampling).
    pub fn validate(&self, per_round: usize) -> Result<()> {
        let n = per_round;
        let finite = |x: f64, key: &str| {
            require(
                x.is_finite() && x >= 0.0,
                "federation.strategy",
                format!("`{key}` must be a finite number ≥ 0, got {x}"),
            )
        };
        match self {
            Rule::Fedavg { .. } | Rule::Median {} => Ok(()),
            Rule::Fedprox { mu, .. } => finite(*mu, "mu"),
            Rule::Krum { f } => krum::precondition(n, *f),
            Rule::MultiKrum { f, m } => multi_krum::precondition(n, *f, *m),
            Rule::TrimmedMean { f } => trimmed_mean::precondition(n, *f),
            Rule::Bulyan { f } => bulyan::precondition(n, *f),
            Rule::NormClipping {
                max_norm,
                noise_sigma,
            } => {
                finite(*noise_sigma, "noise_sigma")?;
                require(
                    max_norm.is_finite() && *max_norm > 0.0,
                    "norm_clipping",
                    format!("`max_norm` must be > 0, got {max_norm}"),
                )
            }
            Rule::Fltrust { root_size } => require(
                *root_size > 0,
                "fltrust",
                "`root_size` must be at least 1".into(),
            ),
            Rule::Foolsgold { kappa } => require(
                kappa.is_finite() && *kappa > 0.0,
                "foolsgold",
                format!("`kappa` must be > 0, got {kappa}"),
            ),
            Rule::Flame { lambda } => finite(*lambda, "lambda"),
            Rule::Mad(c) => c.validate(),
            Rule::DpFedavg(c) => c.validate(),
            Rule::Nbafl(c) => c.validate(),
        }
    }

    /// The registry.
    pub fn build(&self, sampling: Sampling) -> Box<dyn Strategy> {
        match self {
            Rule::Fedavg { weighted } => Box::new(fedavg::FedAvg::new(*weighted, sampling)),
            Rule::Fedprox { mu, weighted } => {
                Box::new(fedprox::FedProx::new(*mu, *weighted, sampling))
            }
            Rule::Krum { f } => Box::new(krum::Krum::new(*f, sampling)),
            Rule::MultiKrum { f, m } => Box::new(multi_krum::MultiKrum::new(*f, *m, sampling)),
            Rule::Median {} => Box::new(median::Median::new(sampling)),
            Rule::TrimmedMean { f } => Box::new(trimmed_mean::TrimmedMean::new(*f, sampling)),
            Rule::Bulyan { f } => Box::new(bulyan::Bulyan::new(*f, sampling)),
            Rule::NormClipping {
                max_norm,
                noise_sigma,
            } => Box::new(norm_clipping::NormClipping::new(
                *max_norm,
                *noise_sigma,
                sampling,
            )),
            Rule::Fltrust { root_size } => Box::new(fltrust::FlTrust::new(*root_size, sampling)),
            Rule::Foolsgold { kappa } => Box::new(foolsgold::FoolsGold::new(*kappa, sampling)),
            Rule::Flame { lambda } => Box::new(flame::Flame::new(*lambda, sampling)),
            Rule::Mad(c) => Box::new(mad::Mad::new(c.clone(), sampling)),
            Rule::DpFedavg(c) => Box::new(dp_fedavg::DpFedAvg::new(c.clone(), sampling)),
            Rule::Nbafl(c) => Box::new(nbafl::Nbafl::new(c.clone(), sampling)),
        }
    }

    /// Short name for grid labels and tables.
    pub fn label(&self) -> String {
        match self {
            Rule::Fedavg { .. } => "fedavg",
            Rule::Fedprox { .. } => "fedprox",
            Rule::Krum { .. } => "krum",
            Rule::MultiKrum { .. } => "multi_krum",
            Rule::Median {} => "median",
            Rule::TrimmedMean { .. } => "trimmed_mean",
            Rule::Bulyan { .. } => "bulyan",
            Rule::NormClipping { .. } => "norm_clipping",
            Rule::Fltrust { .. } => "fltrust",
            Rule::Foolsgold { .. } => "foolsgold",
            Rule::Flame { .. } => "flame",
            Rule::Mad(_) => "mad",
            Rule::DpFedavg(_) => "dp_fedavg",
            Rule::Nbafl(_) => "nbafl",
        }
        .into()
    }
}

/// Helpers for the rules' tests: updates from literal vectors, one round run to the end.
#[cfg(test)]
pub mod testing {
    use crate::federated::strategy::{Aggregate, ClientUpdate, RoundContext, Strategy};

    pub fn update(client: usize, params: Vec<f32>, n: usize) -> ClientUpdate {
        ClientUpdate {
            client,
            params,
            num_examples: n,
        }
    }

    /// Updates with 1 example each, ids 0, 1, 2, …
    pub fn updates(vectors: &[&[f32]]) -> Vec<ClientUpdate> {
        vectors
            .iter()
            .enumerate()
            .map(|(i, v)| update(i, v.to_vec(), 1))
            .collect()
    }

    pub fn ctx(global: &[f32]) -> RoundContext<'_> {
        RoundContext {
            round: 1,
            rounds: 1,
            global,
            server_model: None,
            seed: 7,
            clients: 10,
            trainable: None,
        }
    }

    pub fn run(s: &dyn Strategy, global: &[f32], updates: Vec<ClientUpdate>) -> Aggregate {
        run_with(s, ctx(global), updates).unwrap()
    }

    pub fn run_with(
        s: &dyn Strategy,
        ctx: RoundContext,
        updates: Vec<ClientUpdate>,
    ) -> crate::error::Result<Aggregate> {
        let mut agg = s.begin(ctx);
        for u in updates {
            agg.add(u)?;
        }
        agg.finish()
    }

    /// Clients a round excluded or rejected, in flag order.
    pub fn excluded(out: &Aggregate) -> Vec<usize> {
        out.flags
            .iter()
            .filter(|f| f.is_exclusion())
            .map(|f| f.client)
            .collect()
    }

    pub fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }
}
