//! Aggregation rules, one file each under the paper's name, all behind the `Strategy` interface.
//! `Rule` is what `[federation.strategy]` holds (`rule = "krum"`, `f = 1`, …). Each rule's
//! file defines its settings type and implements [`RuleConfig`] for it (check, build); the
//! `registry!` below lists every rule once, so adding one means one file and one line there.
//!
//! A rule whose precondition does not hold for the number of updates it receives (Krum needs
//! n ≥ 2f + 3, Bulyan n ≥ 4f + 3, …) fails the round with an error naming it; none falls back
//! to another rule.

use super::strategy::Strategy;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A `[federation.strategy]` entry: settings that check themselves and build their rule.
pub trait RuleConfig {
    /// Checks the settings, and the rule's precondition for `per_round` updates per round (the
    /// fewest a round can have under the configured sampling).
    fn validate(&self, per_round: usize) -> Result<()>;
    fn build(&self) -> Box<dyn Strategy>;
}

/// Declares every rule's module and [`Rule`] from one line per rule: its name in experiment
/// files, and its module with its settings type.
macro_rules! registry {
    ($($(#[doc = $doc:literal])* $name:literal => $variant:ident($module:ident::$config:ident),)*) => {
        $(pub mod $module;)*


        /// The aggregation rule of `[federation.strategy]`, tagged by `rule`.
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(tag = "rule")]
        pub enum Rule {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant($module::$config),)*
        }

        impl Rule {
            fn config(&self) -> &dyn RuleConfig {
                match self {
                    $(Rule::$variant(c) => c,)*
                }
            }

            /// Short name for grid labels and tables.
            pub fn label(&self) -> String {
                match self {
                    $(Rule::$variant(_) => $name,)*
                }
                .into()
            }
        }
    };
}

registry! {
    /// FedAvg (McMahan et al. 2017); `weighted = false` averages clients equally.
    "fedavg" => Fedavg(fedavg::FedAvg),
    /// FedProx (Li et al. 2020): FedAvg aggregation, proximal term μ in local training.
    "fedprox" => Fedprox(fedprox::FedProx),
    /// Krum (Blanchard et al. 2017) tolerating `f` Byzantine clients.
    "krum" => Krum(krum::Krum),
    /// Multi-Krum: the mean of the `m` best Krum scores (default n − f).
    "multi_krum" => MultiKrum(multi_krum::MultiKrum),
    /// Coordinate-wise median (Yin et al. 2018).
    "median" => Median(median::Median),
    /// Coordinate-wise trimmed mean (Yin et al. 2018): drops the `f` largest and `f` smallest
    /// values of every coordinate.
    "trimmed_mean" => TrimmedMean(trimmed_mean::TrimmedMean),
    /// Bulyan (El Mhamdi et al. 2018) over Krum.
    "bulyan" => Bulyan(bulyan::Bulyan),
    /// Norm-difference clipping (Sun et al. 2019): each update Δ = w − w_global clipped to
    /// `max_norm`, weighted FedAvg, optional Gaussian noise of deviation `noise_sigma`.
    "norm_clipping" => NormClipping(norm_clipping::NormClipping),
    /// FLTrust (Cao et al. 2021): the server trains on `root_size` clean samples each round.
    "fltrust" => Fltrust(fltrust::FlTrust),
    /// FoolsGold (Fung et al. 2020), confidence κ.
    "foolsgold" => Foolsgold(foolsgold::FoolsGoldConfig),
    /// FLAME (Nguyen et al. 2022): HDBSCAN on cosine distances, median-norm clipping, noise λ·S.
    "flame" => Flame(flame::Flame),
    /// MAD, trust-based model anomaly detection (K-means, reputation, trust), over FedAvg.
    "mad" => Mad(mad::MadConfig),
    /// Client-level DP-FedAvg (McMahan et al. 2018) with a Rényi-DP accountant.
    "dp_fedavg" => DpFedavg(dp_fedavg::DpConfig),
    /// NbAFL (Wei et al. 2020): uplink and downlink noise calibrated to a target (ε, δ).
    "nbafl" => Nbafl(nbafl::NbaflConfig),
}

impl Default for Rule {
    fn default() -> Self {
        Rule::Fedavg(fedavg::FedAvg::new(true))
    }
}

impl Rule {
    /// Checks settings, and the rule's precondition for `per_round` updates per round.
    pub fn validate(&self, per_round: usize) -> Result<()> {
        self.config().validate(per_round)
    }

    /// The rule, ready for its first round.
    pub fn build(&self) -> Box<dyn Strategy> {
        self.config().build()
    }
}

fn yes() -> bool {
    true
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

/// A rule's saved state, read back (an error names the rule when it does not fit).
fn state_from<T: serde::de::DeserializeOwned>(rule: &str, state: serde_json::Value) -> Result<T> {
    serde_json::from_value(state)
        .map_err(|e| Error::Invalid(format!("{rule}: saved state does not fit the rule: {e}")))
}

/// A setting that must be a finite number ≥ 0.
fn non_negative(rule: &str, key: &str, x: f64) -> Result<()> {
    require(
        x.is_finite() && x >= 0.0,
        rule,
        format!("`{key}` must be a finite number ≥ 0, got {x}"),
    )
}

/// Helpers for the rules' tests: updates from literal vectors, one round run to the end.
#[cfg(test)]
pub mod testing {
    use crate::federated::strategy::{Aggregate, ClientUpdate, RoundContext, Strategy};

    pub use crate::vector::unit_updates as updates;

    pub fn update(client: usize, params: Vec<f32>, n: usize) -> ClientUpdate {
        ClientUpdate::new(client, params, n)
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

#[cfg(test)]
mod tests {
    use super::testing::{ctx, run_with, updates};
    use super::*;

    /// Round r's updates: four honest clients near (r, −r, 1) and one far outlier.
    fn round_updates(r: usize) -> Vec<crate::vector::ClientUpdate> {
        let r = r as f32;
        let v: Vec<Vec<f32>> = (0..5)
            .map(|c| {
                let c = c as f32;
                if c == 4.0 {
                    vec![40.0, 40.0, -40.0]
                } else {
                    vec![r + 0.1 * c, -r - 0.05 * c, 1.0 + 0.02 * c]
                }
            })
            .collect();
        updates(&v.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    fn round(s: &dyn Strategy, r: usize) -> crate::federated::strategy::Aggregate {
        let global = [0.0f32; 3];
        let mut c = ctx(&global);
        (c.round, c.rounds) = (r, 3);
        run_with(s, c, round_updates(r)).unwrap()
    }

    #[test]
    fn a_saved_rule_state_resumes_the_run_exactly() {
        for text in [
            "rule = \"mad\"\nactivation_round = 1",
            "rule = \"foolsgold\"",
            "rule = \"dp_fedavg\"\nclip = 1.0\nnoise_multiplier = 0.5",
            "rule = \"nbafl\"\nclip = 1.0\nepsilon = 10.0",
        ] {
            let rule: Rule = toml::from_str(text).unwrap();
            let (a, b) = (rule.build(), rule.build());
            round(&*a, 1);
            round(&*a, 2);
            // Through text, as a server would keep it between rounds.
            let saved = serde_json::to_string(&a.state().expect("a stateful rule")).unwrap();
            b.restore(serde_json::from_str(&saved).unwrap()).unwrap();
            assert_eq!(a.status(), b.status(), "{text}");
            let (x, y) = (round(&*a, 3), round(&*b, 3));
            assert_eq!(x.params, y.params, "{text}");
            assert_eq!(x.flags, y.flags, "{text}");
            assert_eq!(a.status(), b.status(), "{text}");
            // A fresh rule, not restored, decides differently somewhere for MAD and FoolsGold
            // (their history matters) or reports less privacy spent (the accountants).
            let fresh = rule.build();
            let z = round(&*fresh, 3);
            assert!(
                z.params != x.params || z.flags != x.flags || fresh.status() != a.status(),
                "{text}: the state made no difference"
            );
            assert!(
                b.restore(serde_json::json!({"nonsense": 1})).is_err(),
                "{text}"
            );
        }
        let stateless = Rule::default().build();
        assert!(stateless.state().is_none());
        let err = stateless.restore(serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("keeps no state"), "{err}");
    }
}
