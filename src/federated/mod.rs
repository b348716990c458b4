//! Federated simulation: partition → clients → rounds (train on a bounded worker pool, aggregate
//! with a `Strategy`) → centralized and distributed evaluation each round.
//!
//! Clients hold index lists into one shared dataset; a client's model exists only while it
//! trains. Clients are trained in ascending id order in groups of `workers`, and every random
//! draw is seeded by (seed, round, client), so results do not depend on the number of workers.

pub mod client;
pub mod detection;
pub mod params;
pub mod partition;
pub mod rules;
pub mod server_data;
pub mod strategy;

use crate::attacks::backdoor::Backdoor;
use crate::attacks::model::ModelPoisoning;
use crate::attacks::{PoisonReport, Poisoning};
use crate::data::{Dataset, ImageSet};
use crate::error::{Error, Result};
use crate::metrics;
use crate::seed::{mix, stream};
use crate::train::{self, normalize::Normalizer};
use client::{Client, Shared};
use partition::PartitionConfig;
use rand::{SeedableRng, rngs::StdRng, seq::index};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use strategy::{Action, ClientUpdate, RoundContext, Sampling, StrategyConfig};

/// `[federation]` in an experiment file. `[train]` then describes each client's local training
/// (its `epochs` are the local epochs per round).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    pub clients: usize,
    pub rounds: usize,
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// Share of clients that train each round, and the least that do (Flower's names).
    #[serde(default = "one_f")]
    pub fraction_fit: f64,
    #[serde(default = "one")]
    pub min_fit_clients: usize,
    /// Share of clients that evaluate the global model on their validation sets each round.
    #[serde(default = "one_f")]
    pub fraction_evaluate: f64,
    #[serde(default)]
    pub min_evaluate_clients: usize,
    #[serde(default)]
    pub partition: PartitionConfig,
    /// Share of each client's samples held out as its validation set.
    #[serde(default = "default_client_val")]
    pub client_val_fraction: f64,
    #[serde(default)]
    pub malicious: Option<MaliciousConfig>,
    /// Evaluate the global model on the server's test sets every this many rounds (and after
    /// the last round).
    #[serde(default = "one")]
    pub evaluate_every: usize,
    /// Clients trained at once (0 = one per CPU core). Does not change results.
    #[serde(default, skip_serializing)]
    pub workers: usize,
    /// libtorch threads inside one client's training.
    #[serde(default = "one")]
    pub threads_per_client: usize,
    /// Training images the server keeps for itself before the partition (0: none); no client
    /// holds them or a pixel twin of them (see `server_data`). Fed-Safe's adaptation needs them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_images: usize,
    /// Adversarial training: each client adds adversarial copies of its training images, crafted
    /// on the model it received, to every round's local training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversarial_training: Option<crate::evasion::EvasionConfig>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn default_client_val() -> f64 {
    0.2
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}

/// Which clients are malicious: explicit ids, or `count` drawn with the run's seed. They poison
/// their local training data with `[attack]` at the attack's rate, or at `rates[i]` each, and/or
/// manipulate the update they send (`model_poisoning`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaliciousConfig {
    pub clients: Vec<usize>,
    pub count: Option<usize>,
    pub rates: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_poisoning: Option<ModelPoisoning>,
}

impl FederationConfig {
    pub fn validate(&self, has_attack: bool) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        if self.clients == 0 {
            return bad("`federation.clients` must be at least 1".into());
        }
        if self.rounds == 0 {
            return bad("`federation.rounds` must be at least 1".into());
        }
        if self.evaluate_every == 0 {
            return bad("`federation.evaluate_every` must be at least 1".into());
        }
        if self.threads_per_client == 0 {
            return bad("`federation.threads_per_client` must be at least 1".into());
        }
        if !(0.0..0.9).contains(&self.client_val_fraction) {
            return bad(format!(
                "`federation.client_val_fraction` must be within 0..0.9, got {}",
                self.client_val_fraction
            ));
        }
        self.sampling().validate(self.clients)?;
        let s = self.sampling();
        let per_round = ((s.fraction_fit * self.clients as f64).floor() as usize)
            .max(s.min_fit_clients)
            .min(self.clients);
        self.strategy.validate(per_round)?;
        self.partition
            .validate(self.clients, None, "federation.partition")?;
        if let Some(m) = &self.malicious {
            if !has_attack && m.model_poisoning.is_none() && m.count.unwrap_or(m.clients.len()) > 0
            {
                return bad(
                    "`federation.malicious` needs an `[attack]` table or `model_poisoning` to carry out"
                        .into(),
                );
            }
            if let Some(mp) = &m.model_poisoning {
                mp.validate()?;
            }
            if !has_attack && !m.rates.is_empty() {
                return bad("`federation.malicious.rates` needs an `[attack]` table".into());
            }
            if m.count.is_some() && !m.clients.is_empty() {
                return bad(
                    "`federation.malicious`: give either `clients` (ids) or `count`, not both"
                        .into(),
                );
            }
            if let Some(&id) = m.clients.iter().find(|&&id| id >= self.clients) {
                return bad(format!(
                    "`federation.malicious.clients`: client {id} does not exist (ids 0..{})",
                    self.clients
                ));
            }
            if m.count.is_some_and(|c| c > self.clients) {
                return bad(format!(
                    "`federation.malicious.count` {} exceeds the {} clients",
                    m.count.unwrap_or(0),
                    self.clients
                ));
            }
            let n = m.count.unwrap_or(m.clients.len());
            if !m.rates.is_empty() && m.rates.len() != n {
                return bad(format!(
                    "`federation.malicious.rates` has {} entries for {n} malicious clients",
                    m.rates.len()
                ));
            }
            for &r in &m.rates {
                crate::attacks::check_rate(r, "federation.malicious.rates")?;
            }
        }
        Ok(())
    }

    pub fn sampling(&self) -> Sampling {
        Sampling {
            fraction_fit: self.fraction_fit,
            min_fit_clients: self.min_fit_clients,
            fraction_evaluate: self.fraction_evaluate,
            min_evaluate_clients: self.min_evaluate_clients,
        }
    }

    /// Malicious client ids (ascending) with their data-poison rates (none without `[attack]`).
    pub fn malicious_clients(
        &self,
        attack: Option<&Poisoning>,
        seed: u64,
    ) -> Vec<(usize, Option<f64>)> {
        let Some(m) = &self.malicious else {
            return Vec::new();
        };
        if attack.is_none() && m.model_poisoning.is_none() {
            return Vec::new();
        }
        let ids: Vec<usize> = match m.count {
            Some(k) => {
                let mut v = index::sample(
                    &mut StdRng::seed_from_u64(mix(seed, stream::MALICIOUS, 0)),
                    self.clients,
                    k,
                )
                .into_vec();
                v.sort_unstable();
                v
            }
            None => {
                let mut v = m.clients.clone();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        ids.iter()
            .enumerate()
            .map(|(i, &id)| {
                (
                    id,
                    attack.map(|a| m.rates.get(i).copied().unwrap_or(a.rate())),
                )
            })
            .collect()
    }

    /// Worker threads actually used.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

/// The server's state after one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRecord {
    pub round: usize,
    pub clients_fit: usize,
    pub malicious_fit: usize,
    /// Example-weighted mean of the clients' last-epoch training loss and accuracy.
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// Centralized evaluation on the server's clean test set (rounds that evaluate).
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// On the fully triggered test set (backdoor runs).
    pub asr: Option<f64>,
    pub asr_all: Option<f64>,
    /// Distributed evaluation: the clients' validation sets, weighted by their sizes.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// The same over the honest clients only (MAD's Fig 3c: what the attack costs them).
    pub benign_val_loss: Option<f64>,
    pub benign_val_accuracy: Option<f64>,
    /// Privacy spent so far (ε at the rule's δ), for rules with an accountant.
    pub epsilon: Option<f64>,
    pub seconds: f64,
}

/// One client's part of one round (training fields empty when it only evaluated, validation
/// fields empty when it only trained).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientRecord {
    pub round: usize,
    pub client: usize,
    pub malicious: bool,
    pub num_examples: Option<usize>,
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub val_examples: Option<usize>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: Option<f64>,
}

/// Everything a simulation produced.
#[derive(Clone)]
pub struct Simulation {
    pub rounds: Vec<RoundRecord>,
    pub clients: Vec<ClientRecord>,
    /// Per client: samples per class (rows: clients).
    pub partition_counts: Vec<Vec<usize>>,
    pub client_sizes: Vec<(usize, usize)>,
    /// Per client: what its poisoning touched (None for honest clients).
    pub poisoned: Vec<Option<PoisonReport>>,
    pub strategy: String,
    /// Every exclusion, rejection and down-weighting, per round.
    pub defense: Vec<detection::DefenseRecord>,
    /// Defenses' per-client scores (e.g. MAD's trust), per round.
    pub scores: Vec<detection::ScoreRecord>,
    pub detection: detection::Detection,
    /// Why the run ended before `rounds` (privacy budget), if it did.
    pub stopped: Option<String>,
    pub final_params: Vec<f32>,
    pub test_loss: f64,
    pub test_pred: Vec<i64>,
    pub triggered_pred: Option<Vec<i64>>,
}

/// Inputs of one simulation.
pub struct Setup<'a> {
    pub fed: &'a FederationConfig,
    /// The aggregation rule, built once by the caller (its μ is already in `shared`).
    pub strategy: Box<dyn strategy::Strategy>,
    pub shared: Shared<'a>,
    /// The initial global model (random or from a backbone, fine-tune applied).
    pub initial: Vec<f32>,
    pub probe: Option<&'a Backdoor>,
    pub asr_exclude_target: bool,
}

/// Clients with their train/validation splits and poison rates.
pub fn make_clients(
    fed: &FederationConfig,
    data: &Dataset,
    attack: Option<&Poisoning>,
    seed: u64,
) -> Result<(Vec<Client>, Vec<Vec<usize>>)> {
    let parts = fed.partition.split(
        &data.train.labels,
        data.train.num_classes(),
        fed.clients,
        mix(seed, stream::PARTITION, 0),
    )?;
    let counts = partition::class_counts(&parts, &data.train.labels, data.train.num_classes());
    let malicious = fed.malicious_clients(attack, seed);
    let clients = parts
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let (train, val) = partition::train_val_split(
                p,
                fed.client_val_fraction,
                mix(seed, stream::VALIDATION, id as u64),
            );
            let m = malicious.iter().find(|(m, _)| *m == id);
            Client {
                id,
                train,
                val,
                malicious: m.is_some(),
                poison_rate: m.and_then(|(_, r)| *r),
            }
        })
        .collect();
    Ok((clients, counts))
}

/// Runs the rounds. `on_round` sees each finished round (for progress display).
pub fn simulate(
    setup: &Setup,
    clients: &[Client],
    counts: Vec<Vec<usize>>,
    on_round: &mut dyn FnMut(&RoundRecord),
) -> Result<Simulation> {
    let fed = setup.fed;
    let sh = &setup.shared;
    let strategy = &setup.strategy;
    let data = sh.data;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(fed.worker_count())
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start worker threads: {e}")))?;
    // Poisoning is decided up front (and re-done identically inside each client's training).
    let poisoned: Vec<Option<PoisonReport>> = clients
        .iter()
        .map(|c| sh.local_train(c).map(|(_, r)| r))
        .collect::<Result<_>>()?;
    let server = sh.new_net()?;
    let triggered_test = setup.probe.map(|b| b.trigger.apply_all(&data.test));
    let target = match setup.probe {
        Some(b) => Some(b.target_id(&data.test.classes)?),
        None => None,
    };
    let trainable = params::trainable_ranges(&server);
    let mut global = setup.initial.clone();
    let mut rounds = Vec::with_capacity(fed.rounds);
    let mut client_log = Vec::new();
    let mut defense_log = Vec::new();
    let mut score_log = Vec::new();
    let mut decisions = Vec::with_capacity(fed.rounds);
    let mut last_eval = None;
    let mut stopped = None;
    let model_poisoning = fed
        .malicious
        .as_ref()
        .and_then(|m| m.model_poisoning.as_ref());
    // FLTrust's root dataset: clean training samples the server holds, drawn once.
    let root = strategy.root_size().map(|k| Client {
        id: clients.len(),
        train: {
            let mut v = index::sample(
                &mut StdRng::seed_from_u64(mix(sh.seed, stream::ROOT_SET, 0)),
                data.train.len(),
                k.min(data.train.len()),
            )
            .into_vec();
            v.sort_unstable();
            v
        },
        val: Vec::new(),
        malicious: false,
        poison_rate: None,
    });
    for round in 1..=fed.rounds {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix(sh.seed, round as u64, u64::MAX));
        let selected = strategy.configure_fit(round, clients.len(), &mut rng);
        if !strategy.allows_round(selected.len(), clients.len()) {
            stopped = Some(format!(
                "privacy budget reached: round {round} would exceed it (ε = {:.4} after round {})",
                strategy.epsilon().unwrap_or(0.0),
                round - 1
            ));
            break;
        }
        let server_model = match &root {
            Some(r) => Some(sh.fit(r, &global, round)?.update.params),
            None => None,
        };
        let ctx = RoundContext {
            round,
            rounds: fed.rounds,
            global: &global,
            server_model: server_model.as_deref(),
            seed: mix(sh.seed, round as u64, stream::AGGREGATION),
            clients: clients.len(),
            trainable: Some(&trainable),
        };
        let mut agg = strategy.begin(ctx);
        let round_start = client_log.len();
        let (mut loss_sum, mut acc_sum, mut examples) = (0.0, 0.0, 0usize);
        let mut malicious_fit = 0;
        let mut flags = Vec::new();
        let mut accepted = 0usize;
        // With model poisoning the round's updates are held until the attackers have seen
        // them; otherwise each is folded in as soon as its group finishes.
        let mut held: Vec<ClientUpdate> = Vec::new();
        for group in selected.chunks(fed.worker_count()) {
            let results: Vec<Result<client::FitResult>> = pool.install(|| {
                use rayon::prelude::*;
                group
                    .par_iter()
                    .map(|&id| sh.fit(&clients[id], &global, round))
                    .collect()
            });
            // Folded in client order whatever finished first.
            for r in results {
                let r = r?;
                let c = &clients[r.update.client];
                let n = r.update.num_examples;
                loss_sum += r.train_loss * n as f64;
                acc_sum += r.train_accuracy * n as f64;
                examples += n;
                malicious_fit += usize::from(c.malicious);
                client_log.push(ClientRecord {
                    round,
                    client: c.id,
                    malicious: c.malicious,
                    num_examples: Some(n),
                    train_loss: Some(r.train_loss),
                    train_accuracy: Some(r.train_accuracy),
                    seconds: Some(r.seconds),
                    ..Default::default()
                });
                if model_poisoning.is_some() {
                    held.push(r.update);
                } else {
                    accepted += add_checked(&mut *agg, r.update, global.len(), &mut flags)?;
                }
            }
        }
        if let Some(mp) = model_poisoning {
            let mal: Vec<bool> = held.iter().map(|u| clients[u.client].malicious).collect();
            mp.apply(
                &global,
                &mut held,
                &mal,
                mix(sh.seed, round as u64, stream::MODEL_POISONING),
            );
            for u in held {
                accepted += add_checked(&mut *agg, u, global.len(), &mut flags)?;
            }
        }
        // A round whose every update was rejected leaves the global model as it was.
        if accepted > 0 {
            let out = agg.finish()?;
            global = out.params;
            flags.extend(out.flags);
            score_log.extend(out.scores.into_iter().map(|sc| detection::ScoreRecord {
                round,
                client: sc.client,
                malicious: clients.get(sc.client).is_some_and(|c| c.malicious),
                name: sc.name,
                value: sc.value,
            }));
        } else {
            drop(agg);
        }
        flags.sort_by_key(|f| f.client);
        defense_log.extend(flags.iter().map(|f| detection::DefenseRecord {
            round,
            client: f.client,
            malicious: clients.get(f.client).is_some_and(|c| c.malicious),
            action: f.action.clone(),
            weight: f.weight,
            reason: f.reason.clone(),
        }));
        decisions.push((round, selected.clone(), flags));
        params::load(&server, &global)?;

        // Distributed evaluation: chosen clients score the new global model on their own
        // validation sets.
        let eval_ids = strategy.configure_evaluate(round, clients.len(), &mut rng);
        let trained = round_start..client_log.len();
        let (mut vl, mut va, mut vn) = (0.0, 0.0, 0usize);
        let (mut bl, mut ba, mut bn) = (0.0, 0.0, 0usize);
        for &id in &eval_ids {
            let c = &clients[id];
            if c.val.is_empty() {
                continue;
            }
            let val = data.train.subset(&c.val);
            let (loss, pred) = train::evaluate(&server, &val, &sh.norm);
            let acc = metrics::accuracy(&pred, &val.labels);
            vl += loss * val.len() as f64;
            va += acc * val.len() as f64;
            vn += val.len();
            if !c.malicious {
                bl += loss * val.len() as f64;
                ba += acc * val.len() as f64;
                bn += val.len();
            }
            let rec = ClientRecord {
                round,
                client: id,
                malicious: c.malicious,
                val_examples: Some(val.len()),
                val_loss: Some(loss),
                val_accuracy: Some(acc),
                ..Default::default()
            };
            merge_client_record(&mut client_log, trained.clone(), rec);
        }

        let evaluate_now = round % fed.evaluate_every == 0 || round == fed.rounds;
        let (mut test_loss, mut test_accuracy, mut asr, mut asr_all) = (None, None, None, None);
        if evaluate_now {
            let eval = server_eval(&server, &data.test, triggered_test.as_ref(), &sh.norm);
            test_loss = Some(eval.loss);
            test_accuracy = Some(metrics::accuracy(&eval.pred, &data.test.labels));
            if let (Some(t), Some(tp)) = (target, &eval.triggered) {
                let labels = &data.test.labels;
                asr = Some(
                    metrics::attack_success_rate(tp, labels, t, setup.asr_exclude_target).rate(),
                );
                asr_all = Some(metrics::attack_success_rate(tp, labels, t, false).rate());
            }
            last_eval = Some(eval);
        }
        let mean = |s: f64, n: usize| (n > 0).then(|| s / n as f64);
        let rec = RoundRecord {
            round,
            clients_fit: selected.len(),
            malicious_fit,
            train_loss: mean(loss_sum, examples).unwrap_or(f64::NAN),
            train_accuracy: mean(acc_sum, examples).unwrap_or(f64::NAN),
            test_loss,
            test_accuracy,
            asr,
            asr_all,
            val_loss: mean(vl, vn),
            val_accuracy: mean(va, vn),
            benign_val_loss: mean(bl, bn),
            benign_val_accuracy: mean(ba, bn),
            epsilon: strategy.epsilon(),
            seconds: start.elapsed().as_secs_f64(),
        };
        on_round(&rec);
        rounds.push(rec);
    }
    let Some(last) = rounds.last_mut() else {
        return Err(Error::Invalid(format!(
            "{}: no round could run",
            stopped.unwrap_or_else(|| "the federation".into())
        )));
    };
    // A run stopped early (privacy budget) is evaluated after its last round.
    if last.test_accuracy.is_none() {
        let eval = server_eval(&server, &data.test, triggered_test.as_ref(), &sh.norm);
        last.test_loss = Some(eval.loss);
        last.test_accuracy = Some(metrics::accuracy(&eval.pred, &data.test.labels));
        if let (Some(t), Some(tp)) = (target, &eval.triggered) {
            let labels = &data.test.labels;
            last.asr =
                Some(metrics::attack_success_rate(tp, labels, t, setup.asr_exclude_target).rate());
            last.asr_all = Some(metrics::attack_success_rate(tp, labels, t, false).rate());
        }
        last_eval = Some(eval);
    }
    let eval = last_eval.expect("the last round run is evaluated");
    Ok(Simulation {
        rounds,
        clients: client_log,
        partition_counts: counts,
        client_sizes: clients
            .iter()
            .map(|c| (c.train.len(), c.val.len()))
            .collect(),
        poisoned,
        strategy: strategy.name(),
        defense: defense_log,
        scores: score_log,
        detection: detection::score(
            &decisions,
            &clients
                .iter()
                .filter(|c| c.malicious)
                .map(|c| c.id)
                .collect::<Vec<_>>(),
        ),
        stopped,
        final_params: global,
        test_loss: eval.loss,
        test_pred: eval.pred,
        triggered_pred: eval.triggered,
    })
}

/// Adds an update unless it is malformed (wrong length, NaN/Inf), which is rejected with a
/// flag instead and never aggregated. Returns 1 when added.
fn add_checked(
    agg: &mut dyn strategy::Aggregation,
    u: ClientUpdate,
    len: usize,
    flags: &mut Vec<strategy::Flag>,
) -> Result<usize> {
    if let Some(why) = strategy::malformed(&u, len) {
        flags.push(strategy::Flag {
            client: u.client,
            action: Action::Rejected,
            weight: None,
            reason: why,
        });
        return Ok(0);
    }
    agg.add(u)?;
    Ok(1)
}

/// A client that trained and evaluated in the same round gets one record. `log[from..]` holds
/// this round's training records (`trained`) in ascending client order.
fn merge_client_record(
    log: &mut Vec<ClientRecord>,
    trained: std::ops::Range<usize>,
    rec: ClientRecord,
) {
    let from = trained.start;
    match log[trained].binary_search_by_key(&rec.client, |r| r.client) {
        Ok(i) => {
            let r = &mut log[from + i];
            r.val_examples = rec.val_examples;
            r.val_loss = rec.val_loss;
            r.val_accuracy = rec.val_accuracy;
        }
        Err(_) => log.push(rec),
    }
}

struct ServerEval {
    loss: f64,
    pred: Vec<i64>,
    triggered: Option<Vec<i64>>,
}

fn server_eval(
    net: &crate::models::Net,
    test: &ImageSet,
    triggered: Option<&ImageSet>,
    norm: &Normalizer,
) -> ServerEval {
    let (loss, pred) = train::evaluate(net, test, norm);
    ServerEval {
        loss,
        pred,
        triggered: triggered.map(|t| train::evaluate(net, t, norm).1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::backdoor::Trigger;
    use crate::config::TrainConfig;
    use crate::data::augment::AugmentConfig;
    use crate::data::synthetic::{PhantomConfig, generate};
    use crate::models::{Arch, FineTune, Net};

    fn fed_config(workers: usize) -> FederationConfig {
        toml::from_str::<FederationConfig>(&format!(
            "clients = 4\nrounds = 2\nworkers = {workers}\n[malicious]\nclients = [1, 3]\nrates = [0.3, 0.5]\n[partition]\nkind = \"dirichlet\"\nalpha = 1.0\nmin_size = 5"
        ))
        .unwrap()
    }

    fn backdoor() -> Poisoning {
        Poisoning::Backdoor(Backdoor {
            target: "notumor".into(),
            rate: 0.1,
            selection: Default::default(),
            source_classes: vec![],
            exclude_target: false,
            relabel: true,
            trigger: Trigger {
                size: 3,
                margin: 1,
                ..Default::default()
            },
        })
    }

    fn local_training() -> TrainConfig {
        TrainConfig::adam(1, 8)
    }

    fn simulate_with(
        workers: usize,
        data: &Dataset,
        attack: &Poisoning,
        initial: Vec<f32>,
    ) -> Simulation {
        simulate_fed(&fed_config(workers), data, attack, initial)
    }

    fn simulate_fed(
        fed: &FederationConfig,
        data: &Dataset,
        attack: &Poisoning,
        initial: Vec<f32>,
    ) -> Simulation {
        let train = local_training();
        let augment = AugmentConfig::default();
        let (clients, counts) = make_clients(fed, data, Some(attack), 5).unwrap();
        let setup = Setup {
            fed,
            strategy: strategy::build(&fed.strategy, fed.sampling()),
            shared: Shared {
                data,
                model: Arch::DarziCnn.into(),
                size: 32,
                fine_tune: FineTune::Full,
                device: tch::Device::Cpu,
                norm: Normalizer::from_set(&data.train),
                train: &train,
                augment: &augment,
                attack: Some(attack),
                proximal_mu: 0.0,
                seed: 5,
                threads: 1,
                adversarial: None,
            },
            initial,
            probe: attack.as_backdoor(),
            asr_exclude_target: true,
        };
        simulate(&setup, &clients, counts, &mut |_| {}).unwrap()
    }

    #[test]
    fn malformed_updates_are_rejected_not_averaged() {
        let s = strategy::build(&StrategyConfig::default(), Sampling::default());
        let global = [0.0f32; 2];
        let mut agg = s.begin(rules::testing::ctx(&global));
        let mut flags = Vec::new();
        let up = |client, params: Vec<f32>| ClientUpdate {
            client,
            params,
            num_examples: 1,
        };
        assert_eq!(
            add_checked(&mut *agg, up(0, vec![1.0, 2.0]), 2, &mut flags).unwrap(),
            1
        );
        assert_eq!(
            add_checked(&mut *agg, up(1, vec![f32::NAN, 0.0]), 2, &mut flags).unwrap(),
            0
        );
        assert_eq!(
            add_checked(&mut *agg, up(2, vec![3.0]), 2, &mut flags).unwrap(),
            0
        );
        assert_eq!(
            add_checked(&mut *agg, up(3, vec![3.0, 4.0]), 2, &mut flags).unwrap(),
            1
        );
        assert_eq!(agg.finish().unwrap().params, vec![2.0, 3.0]);
        let rejected: Vec<(usize, Action)> =
            flags.iter().map(|f| (f.client, f.action.clone())).collect();
        assert_eq!(rejected, vec![(1, Action::Rejected), (2, Action::Rejected)]);
        assert!(flags[0].reason.contains("non-finite"));
    }

    #[test]
    fn results_do_not_depend_on_worker_count() {
        let data = generate(&PhantomConfig {
            size: 32,
            train_per_class: 20,
            test_per_class: 5,
            ..Default::default()
        });
        let attack = backdoor();
        // One initial model for both runs (libtorch's global generator is shared with tests
        // running beside this one).
        let net = Net::new(Arch::DarziCnn, 4, 1, 32, tch::Device::Cpu).unwrap();
        let initial = params::flatten(&net);
        // The thesis CNN has dropout, so this also covers per-client dropout streams.
        let one = simulate_with(1, &data, &attack, initial.clone());
        let two = simulate_with(2, &data, &attack, initial);
        assert_eq!(one.final_params, two.final_params);
        assert_eq!(one.test_pred, two.test_pred);
        assert_eq!(one.test_loss.to_bits(), two.test_loss.to_bits());
        let losses = |s: &Simulation| s.clients.iter().map(|c| c.train_loss).collect::<Vec<_>>();
        assert_eq!(losses(&one), losses(&two));
    }

    #[test]
    fn an_excluded_client_neither_trains_nor_receives_the_model_again() {
        let data = generate(&PhantomConfig {
            size: 32,
            train_per_class: 20,
            test_per_class: 2,
            ..Default::default()
        });
        // Clients 1 and 3 send pure noise, far outside the honest cluster: MAD (trust starting
        // at 0) excludes them as soon as K-means separates them.
        let fed: FederationConfig = toml::from_str(
            "clients = 5\nrounds = 3\n[strategy]\nrule = \"mad\"\n[malicious]\nclients = [1, 3]\nmodel_poisoning = { kind = \"gaussian_noise\", sigma = 10.0 }\n[partition]\nkind = \"iid\"",
        )
        .unwrap();
        let net = Net::new(Arch::DarziCnn, 4, 1, 32, tch::Device::Cpu).unwrap();
        let sim = simulate_fed(&fed, &data, &backdoor(), params::flatten(&net));
        // Round of exclusion per client (MAD repeats the flag every later round).
        let mut since = std::collections::BTreeMap::new();
        for d in sim.defense.iter().filter(|d| d.action == Action::Excluded) {
            since.entry(d.client).or_insert(d.round);
        }
        // K-means with k = 2 may first pair one noisy client with the honest ones; by round 2
        // both are out.
        assert_eq!(since.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert!(since.values().all(|&r| r <= 2), "{since:?}");
        for r in &sim.clients {
            if let Some(&x) = since.get(&r.client) {
                // It trains in its exclusion round (and is dropped from that average), but is
                // sent no model afterwards: no evaluation then, nothing later.
                assert!(
                    r.round < x || (r.round == x && r.val_accuracy.is_none()),
                    "client {} (excluded in round {x}) active in round {}",
                    r.client,
                    r.round
                );
            }
        }
        let active = |round: usize, trained: bool| -> Vec<usize> {
            sim.clients
                .iter()
                .filter(|r| r.round == round)
                .filter(|r| {
                    if trained {
                        r.train_loss.is_some()
                    } else {
                        r.val_accuracy.is_some()
                    }
                })
                .map(|r| r.client)
                .collect()
        };
        assert_eq!(active(3, true), vec![0, 2, 4]);
        assert_eq!(active(3, false), vec![0, 2, 4]);
        // Benign clients' validation accuracy is the honest-only mean (all honest here).
        let last = sim.rounds.last().unwrap();
        assert_eq!(last.benign_val_accuracy, last.val_accuracy);
        assert_eq!(sim.rounds[2].malicious_fit, 0);
    }

    #[test]
    fn malicious_clients_poison_their_own_share() {
        let data = generate(&PhantomConfig {
            size: 28,
            train_per_class: 50,
            test_per_class: 2,
            ..Default::default()
        });
        let fed = fed_config(1);
        let attack = backdoor();
        let (clients, _) = make_clients(&fed, &data, Some(&attack), 5).unwrap();
        let rates: Vec<Option<f64>> = clients.iter().map(|c| c.poison_rate).collect();
        assert_eq!(rates, vec![None, Some(0.3), None, Some(0.5)]);
        let train = local_training();
        let augment = AugmentConfig::default();
        let shared = Shared {
            data: &data,
            model: Arch::SmallCnn.into(),
            size: 28,
            fine_tune: FineTune::Full,
            device: tch::Device::Cpu,
            norm: Normalizer::identity(),
            train: &train,
            augment: &augment,
            attack: Some(&attack),
            proximal_mu: 0.0,
            seed: 5,
            threads: 1,
            adversarial: None,
        };
        for c in &clients {
            let (set, report) = shared.local_train(c).unwrap();
            assert_eq!(set.len(), c.train.len());
            match c.poison_rate {
                Some(rate) => {
                    let r = report.unwrap();
                    let want = (rate * c.train.len() as f64).round() as usize;
                    assert_eq!(r.fraction(), format!("{want}/{}", c.train.len()));
                    // Poisoned samples carry the target label.
                    assert!(r.indices.iter().all(|&i| set.labels[i] == 2));
                }
                None => assert!(report.is_none()),
            }
        }
        // Validation sets stay clean and disjoint from training.
        for c in &clients {
            assert!(c.val.iter().all(|i| !c.train.contains(i)));
        }
    }
}
