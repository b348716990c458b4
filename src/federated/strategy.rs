//! The server-side `Strategy` interface (after Flower's): which clients train and evaluate each
//! round, and how their updates become the next global model. Each rule lives in its own file
//! and is listed once in [`build`].
//!
//! Models travel as flat `f32` vectors: every variable of the model (weights, biases and
//! batch-norm running statistics) in layer order, as `params::flatten` writes them.

use super::rules::Rule;
use crate::error::{Error, Result};
use rand::{rngs::StdRng, seq::index};
use serde::Serialize;

/// One client's result of local training.
#[derive(Debug, Clone)]
pub struct ClientUpdate {
    pub client: usize,
    pub params: Vec<f32>,
    /// Training examples behind the update (FedAvg's weight).
    pub num_examples: usize,
}

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

pub trait Strategy: Send + Sync {
    /// Name for reports, e.g. `fedavg` or `krum(f=1)`.
    fn name(&self) -> String;

    fn sampling(&self) -> &Sampling;

    /// Clients that train in `round` (ascending ids). Clients a defense has excluded for good
    /// are not asked.
    fn configure_fit(&self, _round: usize, clients: usize, rng: &mut StdRng) -> Vec<usize> {
        let s = self.sampling();
        let excluded = self.excluded();
        sample(clients, s.fraction_fit, s.min_fit_clients, rng)
            .into_iter()
            .filter(|c| !excluded.contains(c))
            .collect()
    }

    /// Clients that evaluate the new global model on their validation sets.
    fn configure_evaluate(&self, _round: usize, clients: usize, rng: &mut StdRng) -> Vec<usize> {
        let s = self.sampling();
        let excluded = self.excluded();
        sample(clients, s.fraction_evaluate, s.min_evaluate_clients, rng)
            .into_iter()
            .filter(|c| !excluded.contains(c))
            .collect()
    }

    /// Starts aggregating a round.
    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's>;

    /// Weight of the proximal term μ/2‖w − w_global‖² in the clients' local loss (FedProx).
    fn proximal_mu(&self) -> f64 {
        0.0
    }

    /// Size of the clean root dataset the server trains on each round (FLTrust).
    fn root_size(&self) -> Option<usize> {
        None
    }

    /// Clients excluded from this and all later rounds (trust-based defenses), ascending.
    fn excluded(&self) -> Vec<usize> {
        Vec::new()
    }

    /// Privacy spent so far (ε at the rule's δ), for rules with a privacy accountant.
    fn epsilon(&self) -> Option<f64> {
        None
    }

    /// Whether one more round with `selected` of `clients` stays within the privacy budget.
    fn allows_round(&self, _selected: usize, _clients: usize) -> bool {
        true
    }
}

/// A rule that needs all of a round's updates at once. Every such rule is a [`Strategy`]
/// (the blanket impl below collects its updates).
pub trait RobustRule: Send + Sync {
    fn name(&self) -> String;
    fn sampling(&self) -> &Sampling;
    fn aggregate(&self, ctx: &RoundContext, updates: Vec<ClientUpdate>) -> Result<Aggregate>;
    /// See [`Strategy::root_size`].
    fn root_size(&self) -> Option<usize> {
        None
    }
    /// See [`Strategy::excluded`].
    fn excluded(&self) -> Vec<usize> {
        Vec::new()
    }
    /// See [`Strategy::epsilon`].
    fn epsilon(&self) -> Option<f64> {
        None
    }
    /// See [`Strategy::allows_round`].
    fn allows_round(&self, _selected: usize, _clients: usize) -> bool {
        true
    }
}

impl<T: RobustRule> Strategy for T {
    fn name(&self) -> String {
        RobustRule::name(self)
    }
    fn sampling(&self) -> &Sampling {
        RobustRule::sampling(self)
    }
    fn begin<'s>(&'s self, ctx: RoundContext<'s>) -> Box<dyn Aggregation + 's> {
        Collected::new(self, ctx)
    }
    fn root_size(&self) -> Option<usize> {
        RobustRule::root_size(self)
    }
    fn excluded(&self) -> Vec<usize> {
        RobustRule::excluded(self)
    }
    fn epsilon(&self) -> Option<f64> {
        RobustRule::epsilon(self)
    }
    fn allows_round(&self, selected: usize, clients: usize) -> bool {
        RobustRule::allows_round(self, selected, clients)
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

/// Client sampling per round (Flower's fraction_fit / min_fit_clients and their evaluate twins).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub fraction_fit: f64,
    pub min_fit_clients: usize,
    pub fraction_evaluate: f64,
    pub min_evaluate_clients: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            fraction_fit: 1.0,
            min_fit_clients: 1,
            fraction_evaluate: 1.0,
            min_evaluate_clients: 0,
        }
    }
}

impl Sampling {
    pub fn validate(&self, clients: usize) -> Result<()> {
        for (key, f) in [
            ("fraction_fit", self.fraction_fit),
            ("fraction_evaluate", self.fraction_evaluate),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::Invalid(format!(
                    "`federation.{key}` must be within 0..=1, got {f}"
                )));
            }
        }
        if self.min_fit_clients > clients || self.min_evaluate_clients > clients {
            return Err(Error::Invalid(format!(
                "`federation.min_fit_clients` ({}) and `min_evaluate_clients` ({}) cannot exceed the {clients} clients",
                self.min_fit_clients, self.min_evaluate_clients
            )));
        }
        if self.fraction_fit == 0.0 && self.min_fit_clients == 0 {
            return Err(Error::Invalid(
                "`federation.fraction_fit` and `min_fit_clients` are both 0: nobody would train"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// max(⌊fraction·n⌋, min) distinct clients drawn uniformly; all of them when that is n.
pub fn sample(n: usize, fraction: f64, min: usize, rng: &mut StdRng) -> Vec<usize> {
    let k = ((fraction * n as f64).floor() as usize).max(min).min(n);
    if k == n {
        return (0..n).collect();
    }
    let mut picked = index::sample(rng, n, k).into_vec();
    picked.sort_unstable();
    picked
}

/// The aggregation rule, as written in `[federation.strategy]` (`rule = "…"`); the rules and
/// their settings live in [`super::rules`].
pub type StrategyConfig = Rule;

/// The registry: one line per rule (in [`Rule::build`]).
pub fn build(cfg: &StrategyConfig, sampling: Sampling) -> Box<dyn Strategy> {
    cfg.build(sampling)
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
    use rand::SeedableRng;

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

    #[test]
    fn sampling_respects_fraction_and_minimum() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample(4, 1.0, 1, &mut rng), vec![0, 1, 2, 3]);
        let s = sample(1000, 0.1, 2, &mut rng);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample(10, 0.05, 3, &mut rng).len(), 3);
        let a = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        let b = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }
}
