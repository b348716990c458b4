//! The server-side `Strategy` interface (after Flower's): what a round asks of the clients, and
//! how their updates become the next global model. Each rule lives in its own file under
//! [`super::rules`] and is listed once in its registry. Rule specifics travel as data — a
//! [`RoundConfig`] before the round, a [`RuleStatus`] after it — never as interface methods.
//!
//! Models travel as flat `f32` vectors: every variable of the model (weights, biases and
//! batch-norm running statistics) in layer order, as `params::flatten` writes them.

use crate::error::{Error, Result};
use serde::Serialize;

pub use crate::vector::ClientUpdate;

/// What the server knows when a round's aggregation starts.
#[derive(Debug, Clone, Copy)]
pub struct RoundContext<'a> {
    pub round: usize,
    /// Rounds the run is configured for (noise calibrated to a whole training needs it).
    pub rounds: usize,
    pub global: &'a [f32],
    /// The server's own model trained on its root dataset this round (FLTrust).
    pub server_model: Option<&'a [f32]>,
    /// Seed for the rule's random draws this round (noise, cluster initialization).
    pub seed: u64,
    /// Clients in the federation (the sampling rate's denominator for privacy accounting).
    pub clients: usize,
    /// Where the trainable values lie in the flat vector; rules that add noise add it only
    /// there (noise on batch-norm running variances can make them negative). `None`: everywhere.
    pub trainable: Option<&'a [std::ops::Range<usize>]>,
}

/// Why a client's update did not count fully this round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Left out of this round's aggregate.
    Excluded,
    /// Counted with a reduced weight (`weight` in 0..1) or after clipping.
    Downweighted,
    /// Malformed (non-finite values, wrong length): never aggregated.
    Rejected,
}

/// A defense's decision about one client in one round, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub client: usize,
    pub action: Action,
    pub weight: Option<f64>,
    pub reason: String,
}

impl Flag {
    pub fn excluded(client: usize, reason: impl Into<String>) -> Self {
        Flag {
            client,
            action: Action::Excluded,
            weight: Some(0.0),
            reason: reason.into(),
        }
    }

    pub fn downweighted(client: usize, weight: f64, reason: impl Into<String>) -> Self {
        Flag {
            client,
            action: Action::Downweighted,
            weight: Some(weight),
            reason: reason.into(),
        }
    }

    /// Excluded and rejected clients count as detected; down-weighting does not.
    pub fn is_exclusion(&self) -> bool {
        self.action != Action::Downweighted
    }
}

/// A defense's per-client score in one round (e.g. MAD's trust), for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub client: usize,
    pub name: &'static str,
    pub value: f64,
}

/// The next global model and the decisions behind it.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub params: Vec<f32>,
    pub flags: Vec<Flag>,
    pub scores: Vec<Score>,
}

impl Aggregate {
    pub fn plain(params: Vec<f32>) -> Self {
        Aggregate::flagged(params, Vec::new())
    }

    pub fn flagged(params: Vec<f32>, flags: Vec<Flag>) -> Self {
        Aggregate {
            params,
            flags,
            scores: Vec::new(),
        }
    }
}

/// Folds the updates of one round, in ascending client order, into the next global model.
/// FedAvg keeps only a running sum, so a round with a thousand clients holds one model's worth
/// of memory; robust rules collect every update (see [`Collected`]).
pub trait Aggregation {
    fn add(&mut self, update: ClientUpdate) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Aggregate>;
}

/// What a rule asks of one round before anyone trains (Flower's `configure_fit` config): it
/// travels with the round to the clients and the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundConfig {
    /// FedProx: weight μ of the proximal term μ/2·‖w − w_global‖² in local training (0: none).
    pub proximal_mu: f64,
    /// FLTrust: the server trains on this many clean root samples this round.
    pub root_size: Option<usize>,
    /// The rule ends the run before this round, and why (e.g. its privacy budget).
    pub stop: Option<String>,
}

/// What a rule reports between rounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleStatus {
    /// Clients excluded from this and all later rounds (trust-based defenses), ascending.
    pub excluded: Vec<usize>,
    /// Privacy spent so far (ε at the rule's δ), for rules with an accountant.
    pub epsilon: Option<f64>,
}

pub trait Strategy: Send + Sync {
    /// Name for reports, e.g. `fedavg` or `krum(f=1)`.
    fn name(&self) -> String;

    /// The configuration of `round`, in which `selected` of `clients` are about to train.
    fn configure(&self, _round: usize, _selected: usize, _clients: usize) -> RoundConfig {
        RoundConfig::default()
    }

    /// Starts aggregating a round.
    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's>;

    /// Exclusions and privacy spent so far.
    fn status(&self) -> RuleStatus {
        RuleStatus::default()
    }

    /// What the rule carries from round to round (trust, update history, privacy accountant),
    /// so that a run can be saved between rounds and resumed; `None` when it carries nothing.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Resumes from what [`Strategy::state`] returned.
    fn restore(&self, _state: serde_json::Value) -> Result<()> {
        Err(Error::Invalid(format!(
            "{} keeps no state between rounds; there is nothing to restore",
            self.name()
        )))
    }
}

/// A rule that needs all of a round's updates at once. Every such rule is a [`Strategy`]
/// (the blanket impl below collects its updates); the optional methods are [`Strategy`]'s.
pub trait RobustRule: Send + Sync {
    fn name(&self) -> String;
    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate>;
    fn configure(&self, _round: usize, _selected: usize, _clients: usize) -> RoundConfig {
        RoundConfig::default()
    }
    fn status(&self) -> RuleStatus {
        RuleStatus::default()
    }
    fn state(&self) -> Option<serde_json::Value> {
        None
    }
    fn restore(&self, _state: serde_json::Value) -> Result<()> {
        Err(Error::Invalid(format!(
            "{} keeps no state between rounds; there is nothing to restore",
            self.name()
        )))
    }
}

impl<T: RobustRule> Strategy for T {
    fn name(&self) -> String {
        RobustRule::name(self)
    }
    fn configure(&self, round: usize, selected: usize, clients: usize) -> RoundConfig {
        RobustRule::configure(self, round, selected, clients)
    }
    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's> {
        Collected::new(self, ctx)
    }
    fn status(&self) -> RuleStatus {
        RobustRule::status(self)
    }
    fn state(&self) -> Option<serde_json::Value> {
        RobustRule::state(self)
    }
    fn restore(&self, state: serde_json::Value) -> Result<()> {
        RobustRule::restore(self, state)
    }
}

/// Collects a round's updates for a [`RobustRule`].
pub struct Collected<'s> {
    rule: &'s dyn RobustRule,
    ctx: RoundContext<'s>,
    updates: Vec<ClientUpdate>,
}

impl<'s> Collected<'s> {
    pub fn new(rule: &'s dyn RobustRule, ctx: RoundContext<'s>) -> Box<Self> {
        Box::new(Collected {
            rule,
            ctx,
            updates: Vec::new(),
        })
    }
}

impl Aggregation for Collected<'_> {
    fn add(&mut self, update: ClientUpdate) -> Result<()> {
        check_len(&update, self.ctx.global.len())?;
        self.updates.push(update);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Aggregate> {
        let Collected { rule, ctx, updates } = *self;
        rule.aggregate(&ctx, updates)
    }
}

/// Why an update cannot be aggregated, if it cannot: wrong length, or a non-finite value.
pub fn malformed(update: &ClientUpdate, len: usize) -> Option<String> {
    if update.params.len() != len {
        return Some(format!(
            "sent {} parameters, the global model has {len}",
            update.params.len()
        ));
    }
    let bad = update.params.iter().filter(|x| !x.is_finite()).count();
    (bad > 0).then(|| format!("{bad} non-finite parameter values (NaN/Inf)"))
}

/// Checks that an update fits the global model.
pub fn check_len(update: &ClientUpdate, len: usize) -> Result<()> {
    if update.params.len() != len {
        return Err(Error::Invalid(format!(
            "client {} sent {} parameters, the global model has {len}",
            update.client,
            update.params.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_updates_are_named() {
        let u = |p: Vec<f32>| ClientUpdate {
            client: 0,
            params: p,
            num_examples: 1,
        };
        assert_eq!(malformed(&u(vec![1.0, 2.0]), 2), None);
        assert!(
            malformed(&u(vec![1.0]), 2)
                .unwrap()
                .contains("sent 1 parameters")
        );
        assert!(
            malformed(&u(vec![f32::NAN, 1.0]), 2)
                .unwrap()
                .contains("1 non-finite")
        );
        assert!(
            malformed(&u(vec![f32::INFINITY, f32::NEG_INFINITY]), 2)
                .unwrap()
                .contains("2 non-finite")
        );
    }
}
