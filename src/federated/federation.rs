//! One federation, driven round by round. This is the library's public round API: the
//! in-process simulation ([`super::simulate`]) is built from these calls, and so is any external
//! driver — a Flower server calling [`Federation::aggregate`], a Flower client calling
//! [`Federation::fit`]. Every call is deterministic from the run's seed, the client and the
//! round, never from what the process did before, so a driver that makes the same calls gets
//! the same numbers bit for bit.
//!
//! A round, as the simulation runs it:
//! 1. [`Federation::configure`] — which clients train, and the rule's round configuration
//!    (FedProx's μ, FLTrust's root set, a DP budget that stops the run);
//! 2. [`Federation::fit`] for each selected client, from the global parameters;
//! 3. [`Federation::poison_updates`] — malicious clients' model poisoning, if configured;
//! 4. [`Federation::aggregate`] (or [`Federation::begin_round`] to fold updates in as they
//!    arrive) — the next global parameters and who was accepted, flagged or excluded, and why;
//! 5. [`Federation::evaluate`] and [`Federation::evaluate_client`] on the new parameters.
//!
//! Stateful rules (MAD's trust, FoolsGold's history, DP accountants) expose their state through
//! [`Federation::rule_state`] and take it back with [`Federation::restore_rule_state`].
//!
//! About 500 lines on purpose: the whole round API, with its documentation, in one place.

use super::client::{Client, FitResult, Shared};
use super::sampling::Sampling;
use super::strategy::{
    Action, Aggregation, ClientUpdate, Flag, RoundConfig, RoundContext, Score, Strategy, malformed,
};
use super::{FederationConfig, make_clients};
use crate::attacks::PoisonReport;
use crate::attacks::backdoor::Backdoor;
use crate::data::ImageSet;
use crate::error::Result;
use crate::metrics;
use crate::models::{Net, params};
use crate::seed::{mix, stream};
use crate::train;
use rand::{SeedableRng, rngs::StdRng, seq::index};
use std::ops::Range;

/// A federation ready for its first round: clients with their (poisoned) data, the shared
/// model recipe and local training, the aggregation rule, the server's test sets.
pub struct Federation {
    config: FederationConfig,
    shared: Shared,
    strategy: Box<dyn Strategy>,
    sampling: Sampling,
    clients: Vec<Client>,
    partition_counts: Vec<Vec<usize>>,
    poisoned: Vec<Option<PoisonReport>>,
    initial: Vec<f32>,
    probe: Option<Probe>,
    asr_exclude_target: bool,
    trainable: Vec<Range<usize>>,
}

/// The backdoor the server measures ASR with: its target and the fully triggered test set.
struct Probe {
    target: i64,
    triggered: ImageSet,
}

/// What one round asks: who trains, and the rule's configuration for them.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    pub round: usize,
    /// Clients that train this round, ascending.
    pub clients: Vec<usize>,
    pub config: RoundConfig,
}

/// The outcome of aggregating one round.
#[derive(Debug, Clone)]
pub struct RoundAggregate {
    /// The next global parameters (the previous ones when every update was rejected).
    pub params: Vec<f32>,
    /// Clients whose update was aggregated (possibly down-weighted or excluded by the rule).
    pub accepted: Vec<usize>,
    /// Every rejection, exclusion and down-weighting with its reason, by client.
    pub flags: Vec<Flag>,
    /// The rule's per-client scores (e.g. MAD's trust).
    pub scores: Vec<Score>,
}

/// A model evaluated on the server's clean test set (and its triggered copy, backdoor runs).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub pred: Vec<i64>,
    /// Predictions on the fully triggered test set.
    pub triggered_pred: Option<Vec<i64>>,
    /// ASR as configured (`metrics.asr_exclude_target`) and over every triggered input.
    pub asr: Option<f64>,
    pub asr_all: Option<f64>,
}

/// One round's evaluations of the new global model (see [`Federation::evaluate_round`]).
#[derive(Debug, Clone)]
pub struct RoundEvaluation {
    /// The clients that hold a validation share, with their scores, in the order asked.
    pub clients: Vec<(usize, ClientEvaluation)>,
    /// The server's, in rounds that evaluate.
    pub server: Option<Evaluation>,
}

/// A client's validation of a global model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientEvaluation {
    pub examples: usize,
    pub loss: f64,
    pub accuracy: f64,
}

impl Federation {
    /// Partitions the data, marks the malicious clients and poisons their shares, and builds
    /// the rule. `initial` is the first global model (random or a backbone, fine-tuning
    /// applied); `probe` is the backdoor whose ASR the server measures.
    pub fn new(
        config: FederationConfig,
        shared: Shared,
        initial: Vec<f32>,
        probe: Option<&Backdoor>,
        asr_exclude_target: bool,
    ) -> Result<Federation> {
        let data = &shared.data;
        let (clients, partition_counts) =
            make_clients(&config, data, shared.attack.as_ref(), shared.seed)?;
        // Poisoning is decided up front (and re-done identically inside each client's training).
        let poisoned = clients
            .iter()
            .map(|c| shared.local_train(c).map(|(_, r)| r))
            .collect::<Result<_>>()?;
        let probe = match probe {
            Some(b) => Some(Probe {
                target: b.target_id(&data.test.classes)?,
                triggered: b.trigger.apply_all(&data.test),
            }),
            None => None,
        };
        let trainable = params::trainable_ranges(&shared.new_net()?);
        Ok(Federation {
            strategy: config.strategy.build(),
            sampling: config.sampling(),
            config,
            shared,
            clients,
            partition_counts,
            poisoned,
            initial,
            probe,
            asr_exclude_target,
            trainable,
        })
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    /// What every client shares: data, model recipe, normalization, local training settings.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The clients, by id: their training and validation indices and whether they are malicious.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// Samples per class for each client.
    pub fn partition_counts(&self) -> &[Vec<usize>] {
        &self.partition_counts
    }

    /// What each client's data poisoning touched (None for honest clients).
    pub fn poisoned(&self) -> &[Option<PoisonReport>] {
        &self.poisoned
    }

    /// Client `id`'s training set as it trains on it: poisoned when it is malicious.
    pub fn client_data(&self, id: usize) -> Result<ImageSet> {
        Ok(self.shared.local_train(self.client(id)?)?.0)
    }

    /// The first global model.
    pub fn initial_params(&self) -> &[f32] {
        &self.initial
    }

    /// The rule's name for reports, e.g. `krum(f=1)`.
    pub fn strategy_name(&self) -> String {
        self.strategy.name()
    }

    /// Privacy spent so far (ε at the rule's δ), for rules with an accountant.
    pub fn epsilon(&self) -> Option<f64> {
        self.strategy.status().epsilon
    }

    /// Clients the rule has excluded for good, ascending.
    pub fn excluded(&self) -> Vec<usize> {
        self.strategy.status().excluded
    }

    /// The rule's state between rounds (None for stateless rules).
    pub fn rule_state(&self) -> Option<serde_json::Value> {
        self.strategy.state()
    }

    /// Resumes the rule from a saved [`Federation::rule_state`].
    pub fn restore_rule_state(&self, state: serde_json::Value) -> Result<()> {
        self.strategy.restore(state)
    }

    fn client(&self, id: usize) -> Result<&Client> {
        self.clients.get(id).ok_or_else(|| {
            crate::Error::param(
                "client",
                format!("no client {id}: the federation has {}", self.clients.len()),
            )
        })
    }

    /// Step 1: the clients that train in `round` and the rule's configuration for them. The
    /// run ends before this round when `config.stop` says so.
    pub fn configure(&self, round: usize) -> RoundPlan {
        let n = self.clients.len();
        let clients = self
            .sampling
            .fit_clients(self.shared.seed, round, n, &self.excluded());
        let config = self.strategy.configure(round, clients.len(), n);
        RoundPlan {
            round,
            clients,
            config,
        }
    }

    /// Step 2: client `id` trains from `global` for one round. Deterministic from the run's
    /// seed, the client and the round, whichever thread calls it.
    pub fn fit(
        &self,
        id: usize,
        global: &[f32],
        round: usize,
        config: &RoundConfig,
    ) -> Result<FitResult> {
        let c = self.client(id)?;
        on_fresh_thread(|| self.shared.fit(c, global, round, config))
    }

    /// Step 3: the malicious clients rewrite their updates (model poisoning) once they have
    /// seen the round's updates. Nothing happens without `federation.malicious.model_poisoning`.
    pub fn poison_updates(&self, round: usize, global: &[f32], updates: &mut [ClientUpdate]) {
        let Some(mp) = self.model_poisoning() else {
            return;
        };
        let malicious: Vec<bool> = updates
            .iter()
            .map(|u| self.clients.get(u.client).is_some_and(|c| c.malicious))
            .collect();
        mp.apply(
            global,
            updates,
            &malicious,
            mix(self.shared.seed, round as u64, stream::MODEL_POISONING),
        );
    }

    /// Whether the malicious clients poison their updates: their round's updates must then be
    /// collected before aggregation instead of folded in as they arrive.
    pub fn model_poisoning(&self) -> Option<&crate::attacks::model::ModelPoisoning> {
        self.config
            .malicious
            .as_ref()
            .and_then(|m| m.model_poisoning.as_ref())
    }

    /// FLTrust's server model: the global model trained on the root set this round, when the
    /// round's configuration asks for one. The root set is drawn once per run from the clean
    /// training data.
    pub fn server_model(
        &self,
        round: usize,
        global: &[f32],
        config: &RoundConfig,
    ) -> Result<Option<Vec<f32>>> {
        let Some(k) = config.root_size else {
            return Ok(None);
        };
        let n = self.shared.data.train.len();
        let mut train = index::sample(
            &mut StdRng::seed_from_u64(mix(self.shared.seed, stream::ROOT_SET, 0)),
            n,
            k.min(n),
        )
        .into_vec();
        train.sort_unstable();
        let root = Client {
            id: self.clients.len(),
            train,
            val: Vec::new(),
            malicious: false,
            poison_rate: None,
        };
        let fit = on_fresh_thread(|| self.shared.fit(&root, global, round, config))?;
        Ok(Some(fit.update.params))
    }

    /// Step 4, streaming: folds updates in as they arrive (FedAvg keeps a running sum, so a
    /// thousand clients cost one model's memory). `server_model` is [`Federation::server_model`].
    pub fn begin_round<'a>(
        &'a self,
        round: usize,
        global: &'a [f32],
        server_model: Option<&'a [f32]>,
    ) -> RoundAggregator<'a> {
        let ctx = RoundContext {
            round,
            rounds: self.config.rounds,
            global,
            server_model,
            seed: mix(self.shared.seed, round as u64, stream::AGGREGATION),
            clients: self.clients.len(),
            trainable: Some(&self.trainable),
        };
        RoundAggregator::new(self.strategy.as_ref(), ctx)
    }

    /// Step 4: the next global parameters from a round's updates, with every decision.
    pub fn aggregate(
        &self,
        round: usize,
        global: &[f32],
        updates: Vec<ClientUpdate>,
        config: &RoundConfig,
    ) -> Result<RoundAggregate> {
        let server = self.server_model(round, global, config)?;
        let mut agg = self.begin_round(round, global, server.as_deref());
        for u in updates {
            agg.add(u)?;
        }
        agg.finish()
    }

    /// A model holding `params`.
    pub fn model(&self, params: &[f32]) -> Result<Net> {
        let net = self.shared.new_net()?;
        params::load(&net, params)?;
        Ok(net)
    }

    /// Step 5: `params` on the server's clean test set, and the backdoor's ASR.
    pub fn evaluate(&self, params: &[f32]) -> Result<Evaluation> {
        on_fresh_thread(|| Ok(self.evaluate_model(&self.model(params)?)))
    }

    /// Client `id` validates `params` on its own held-out share (None when it holds none).
    pub fn evaluate_client(&self, id: usize, params: &[f32]) -> Result<Option<ClientEvaluation>> {
        let c = self.client(id)?;
        on_fresh_thread(|| self.validate_on(&self.model(params)?, c))
    }

    /// Step 5 as the simulation runs it, on one model: `clients` validate `params`, then the
    /// server evaluates them when `central` is set.
    pub fn evaluate_round(
        &self,
        params: &[f32],
        clients: &[usize],
        central: bool,
    ) -> Result<RoundEvaluation> {
        let chosen: Vec<&Client> = clients
            .iter()
            .map(|&id| self.client(id))
            .collect::<Result<_>>()?;
        on_fresh_thread(|| {
            let net = self.model(params)?;
            let mut by_client = Vec::new();
            for c in chosen {
                if let Some(e) = self.validate_on(&net, c)? {
                    by_client.push((c.id, e));
                }
            }
            Ok(RoundEvaluation {
                clients: by_client,
                server: central.then(|| self.evaluate_model(&net)),
            })
        })
    }

    fn evaluate_model(&self, net: &Net) -> Evaluation {
        let test = &self.shared.data.test;
        let norm = &self.shared.norm;
        let (loss, pred) = train::evaluate(net, test, norm);
        let accuracy = metrics::accuracy(&pred, &test.labels);
        let (mut asr, mut asr_all, mut triggered_pred) = (None, None, None);
        if let Some(p) = &self.probe {
            let tp = train::evaluate(net, &p.triggered, norm).1;
            let labels = &test.labels;
            asr = Some(
                metrics::attack_success_rate(&tp, labels, p.target, self.asr_exclude_target).rate(),
            );
            asr_all = Some(metrics::attack_success_rate(&tp, labels, p.target, false).rate());
            triggered_pred = Some(tp);
        }
        Evaluation {
            loss,
            accuracy,
            pred,
            triggered_pred,
            asr,
            asr_all,
        }
    }

    fn validate_on(&self, net: &Net, c: &Client) -> Result<Option<ClientEvaluation>> {
        if c.val.is_empty() {
            return Ok(None);
        }
        let val = self.shared.data.train.subset(&c.val);
        let (loss, pred) = train::evaluate(net, &val, &self.shared.norm);
        Ok(Some(ClientEvaluation {
            examples: val.len(),
            loss,
            accuracy: metrics::accuracy(&pred, &val.labels),
        }))
    }

    /// Clients that evaluate the new global model of `round` on their validation sets.
    pub fn evaluate_clients(&self, round: usize) -> Vec<usize> {
        self.sampling.evaluate_clients(
            self.shared.seed,
            round,
            self.clients.len(),
            &self.excluded(),
        )
    }
}

/// One round's aggregation in progress (see [`Federation::begin_round`]).
pub struct RoundAggregator<'a> {
    aggregation: Box<dyn Aggregation + 'a>,
    global: &'a [f32],
    accepted: Vec<usize>,
    flags: Vec<Flag>,
}

impl<'a> RoundAggregator<'a> {
    /// `strategy`'s aggregation of one round.
    pub fn new(strategy: &'a dyn Strategy, ctx: RoundContext<'a>) -> RoundAggregator<'a> {
        let global = ctx.global;
        RoundAggregator {
            aggregation: strategy.begin(ctx),
            global,
            accepted: Vec::new(),
            flags: Vec::new(),
        }
    }

    /// Adds an update unless it is malformed (wrong length, NaN/Inf): that one is rejected with
    /// a flag and never aggregated. Updates must arrive in ascending client order.
    pub fn add(&mut self, update: ClientUpdate) -> Result<()> {
        if let Some(why) = malformed(&update, self.global.len()) {
            self.flags.push(Flag {
                client: update.client,
                action: Action::Rejected,
                weight: None,
                reason: why,
            });
            return Ok(());
        }
        self.accepted.push(update.client);
        self.aggregation.add(update)
    }

    /// The next global parameters; a round whose every update was rejected leaves them as
    /// they were.
    pub fn finish(self) -> Result<RoundAggregate> {
        let RoundAggregator {
            aggregation,
            global,
            accepted,
            mut flags,
        } = self;
        let (params, scores) = if accepted.is_empty() {
            (global.to_vec(), Vec::new())
        } else {
            let out = aggregation.finish()?;
            flags.extend(out.flags);
            (out.params, out.scores)
        };
        flags.sort_by_key(|f| f.client);
        Ok(RoundAggregate {
            params,
            accepted,
            flags,
            scores,
        })
    }
}

/// Runs `f` on a thread of its own and waits for it. libtorch keeps per-thread state (its
/// OpenMP thread count among it) that changes floating-point summation order; a fresh thread
/// starts from the process defaults, so a result never depends on what the calling thread did
/// before — the simulation's worker pool and an external driver's main thread get the same
/// numbers.
fn on_fresh_thread<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
