//! The in-process federation: rounds run on a bounded worker pool, built only from the public
//! round API of [`Federation`] (configure → fit → poison → aggregate → evaluate), with the
//! records the reports need.
//!
//! Clients are trained in ascending id order in groups of `workers` and folded in client
//! order whatever finished first, so results do not depend on the number of workers.

use super::detection;
use super::federation::Federation;
use super::strategy::ClientUpdate;
use crate::attacks::PoisonReport;
use crate::error::{Error, Result};
use serde::Serialize;
use std::time::Instant;

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

/// Runs the rounds. `on_round` sees each finished round (for progress display).
pub fn simulate(fed: &Federation, on_round: &mut dyn FnMut(&RoundRecord)) -> Result<Simulation> {
    let cfg = fed.config();
    let clients = fed.clients();
    let workers = cfg.worker_count();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start worker threads: {e}")))?;
    let mut global = fed.initial_params().to_vec();
    let mut rounds = Vec::with_capacity(cfg.rounds);
    let mut client_log = Vec::new();
    let mut defense_log = Vec::new();
    let mut score_log = Vec::new();
    let mut decisions = Vec::with_capacity(cfg.rounds);
    let mut last_eval = None;
    let mut stopped = None;
    let malicious = |id: usize| clients.get(id).is_some_and(|c| c.malicious);
    for round in 1..=cfg.rounds {
        let start = Instant::now();
        let plan = fed.configure(round);
        if let Some(why) = plan.config.stop {
            stopped = Some(why);
            break;
        }
        let server_model = fed.server_model(round, &global, &plan.config)?;
        let mut agg = fed.begin_round(round, &global, server_model.as_deref());
        let round_start = client_log.len();
        let (mut loss_sum, mut acc_sum, mut examples) = (0.0, 0.0, 0usize);
        let mut malicious_fit = 0;
        // With model poisoning the round's updates are held until the attackers have seen
        // them; otherwise each is folded in as soon as its group finishes.
        let mut held: Vec<ClientUpdate> = Vec::new();
        for group in plan.clients.chunks(workers) {
            let results: Vec<Result<super::client::FitResult>> = pool.install(|| {
                use rayon::prelude::*;
                group
                    .par_iter()
                    .map(|&id| fed.fit(id, &global, round, &plan.config))
                    .collect()
            });
            for r in results {
                let r = r?;
                let id = r.update.client;
                let n = r.update.num_examples;
                loss_sum += r.train_loss * n as f64;
                acc_sum += r.train_accuracy * n as f64;
                examples += n;
                malicious_fit += usize::from(malicious(id));
                client_log.push(ClientRecord {
                    round,
                    client: id,
                    malicious: malicious(id),
                    num_examples: Some(n),
                    train_loss: Some(r.train_loss),
                    train_accuracy: Some(r.train_accuracy),
                    seconds: Some(r.seconds),
                    ..Default::default()
                });
                if fed.model_poisoning().is_some() {
                    held.push(r.update);
                } else {
                    agg.add(r.update)?;
                }
            }
        }
        fed.poison_updates(round, &global, &mut held);
        for u in held {
            agg.add(u)?;
        }
        let out = agg.finish()?;
        global = out.params;
        score_log.extend(out.scores.into_iter().map(|sc| detection::ScoreRecord {
            round,
            client: sc.client,
            malicious: malicious(sc.client),
            name: sc.name,
            value: sc.value,
        }));
        defense_log.extend(out.flags.iter().map(|f| detection::DefenseRecord {
            round,
            client: f.client,
            malicious: malicious(f.client),
            action: f.action.clone(),
            weight: f.weight,
            reason: f.reason.clone(),
        }));
        decisions.push((round, plan.clients.clone(), out.flags));
        // Distributed evaluation (chosen clients score the new global model on their own
        // validation sets), and the server's on its test sets in the rounds that evaluate.
        let trained = round_start..client_log.len();
        let evaluate_now = round % cfg.evaluate_every == 0 || round == cfg.rounds;
        let evaluated = fed.evaluate_round(&global, &fed.evaluate_clients(round), evaluate_now)?;
        let eval = evaluated.server;
        let (mut vl, mut va, mut vn) = (0.0, 0.0, 0usize);
        let (mut bl, mut ba, mut bn) = (0.0, 0.0, 0usize);
        for (id, e) in evaluated.clients {
            let n = e.examples;
            vl += e.loss * n as f64;
            va += e.accuracy * n as f64;
            vn += n;
            if !malicious(id) {
                bl += e.loss * n as f64;
                ba += e.accuracy * n as f64;
                bn += n;
            }
            let rec = ClientRecord {
                round,
                client: id,
                malicious: malicious(id),
                val_examples: Some(n),
                val_loss: Some(e.loss),
                val_accuracy: Some(e.accuracy),
                ..Default::default()
            };
            merge_client_record(&mut client_log, trained.clone(), rec);
        }
        let mean = |s: f64, n: usize| (n > 0).then(|| s / n as f64);
        let rec = RoundRecord {
            round,
            clients_fit: plan.clients.len(),
            malicious_fit,
            train_loss: mean(loss_sum, examples).unwrap_or(f64::NAN),
            train_accuracy: mean(acc_sum, examples).unwrap_or(f64::NAN),
            test_loss: eval.as_ref().map(|e| e.loss),
            test_accuracy: eval.as_ref().map(|e| e.accuracy),
            asr: eval.as_ref().and_then(|e| e.asr),
            asr_all: eval.as_ref().and_then(|e| e.asr_all),
            val_loss: mean(vl, vn),
            val_accuracy: mean(va, vn),
            benign_val_loss: mean(bl, bn),
            benign_val_accuracy: mean(ba, bn),
            epsilon: fed.epsilon(),
            seconds: start.elapsed().as_secs_f64(),
        };
        if eval.is_some() {
            last_eval = eval;
        }
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
        let eval = fed.evaluate(&global)?;
        last.test_loss = Some(eval.loss);
        last.test_accuracy = Some(eval.accuracy);
        last.asr = eval.asr;
        last.asr_all = eval.asr_all;
        last_eval = Some(eval);
    }
    let eval = last_eval.expect("the last round run is evaluated");
    Ok(Simulation {
        rounds,
        clients: client_log,
        partition_counts: fed.partition_counts().to_vec(),
        client_sizes: clients
            .iter()
            .map(|c| (c.train.len(), c.val.len()))
            .collect(),
        poisoned: fed.poisoned().to_vec(),
        strategy: fed.strategy_name(),
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
        triggered_pred: eval.triggered_pred,
    })
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
