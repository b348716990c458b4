//! A federated cell: the federation built from the experiment, trained (or reused from an
//! earlier cell of the same invocation) and summarized.

use super::*;

/// An experiment cell's federation, ready to be driven round by round through
/// [`Federation`]'s API: data loaded (the `[data.real]` set when `opts.data_root` is given),
/// the backbone made or loaded, the clients partitioned and poisoned. `fedsentry run` trains
/// the same federation; `examples/drive_rounds.rs` drives one.
pub fn federation_of(cell: &Cell, ctx: &mut Context, opts: &RunOptions) -> Result<FederationSetup> {
    let cell = cell.resolved(opts.data_root.as_deref());
    let exp = &cell.experiment;
    let backbone = backbone(exp, ctx, opts)?;
    let ds = ctx.dataset(&exp.data, opts.data_root.as_deref(), exp.seed)?;
    let probe = exp.attack.as_ref().and_then(|a| a.as_backdoor());
    federation(exp, &ds, backbone.as_deref(), probe)
}

/// A cell's federation, ready for its first round: the server's own images set aside, the
/// clients' data partitioned (and poisoned), the first global model built. `probe` is the
/// backdoor the server measures ASR with (a clean baseline measures the poisoned run's).
pub fn federation(
    exp: &Experiment,
    ds: &Arc<Dataset>,
    backbone: Option<&Path>,
    probe: Option<&Backdoor>,
) -> Result<FederationSetup> {
    let fed = exp
        .federation
        .as_ref()
        .ok_or_else(|| Error::Invalid("the experiment has no `[federation]` table".into()))?;
    // The server's own images are set aside before the clients partition the rest.
    let (ds, server_images) = if fed.server_images > 0 {
        let (clients_ds, server) = federated::server_data::split(
            ds,
            fed.server_images,
            crate::seed::mix(exp.seed, crate::seed::stream::SERVER_IMAGES, 0),
        )?;
        (Arc::new(clients_ds), Some(server))
    } else {
        (ds.clone(), None)
    };
    let (net, frozen_fraction) = initial_net(exp, &ds, backbone)?;
    let initial = crate::models::params::flatten(&net);
    drop(net);
    // One normalization for the federation, from the training data as a whole.
    let norm = Normalizer::new(exp.data.normalize, &ds.train);
    let shared = federated::client::Shared {
        data: ds,
        model: exp.model.recipe(),
        size: exp.data.size,
        fine_tune: exp.model.fine_tune()?,
        device: exp.device.device()?,
        norm,
        train: exp.train.clone(),
        augment: exp.data.augment.clone(),
        attack: exp.attack.clone(),
        seed: exp.seed,
        threads: fed.threads_per_client,
        adversarial: fed.adversarial_training.clone(),
    };
    Ok(FederationSetup {
        federation: Federation::new(
            fed.clone(),
            shared,
            initial,
            probe,
            exp.metrics.asr_exclude_target,
        )?,
        server_images,
        frozen_fraction,
    })
}

/// A cell's federation with what the study keeps beside it.
pub struct FederationSetup {
    pub federation: Federation,
    /// The server's own training images (`federation.server_images`), if any.
    pub server_images: Option<ImageSet>,
    /// Share of the model's parameters that fine-tuning froze.
    pub frozen_fraction: f64,
}

/// The federated counterpart of `train_and_evaluate`: clients train the model together over
/// rounds; the final global model is evaluated as a centralized one would be.
pub(super) fn federated_train_and_evaluate(
    exp: &Experiment,
    ds: &Arc<Dataset>,
    backbone: Option<&Path>,
    probe: Option<&Backdoor>,
    label: &str,
) -> Result<Outcome> {
    let setup = federation(exp, ds, backbone, probe)?;
    // Cells that differ only in what happens after training (the evasion scenario: adaptation,
    // noise, attacks) share one trained federation within an invocation.
    let key = config::fingerprint(&Experiment {
        evasion: None,
        ..exp.clone()
    });
    let cached = lock_federations().get(&key).cloned();
    let sim = match cached {
        Some(sim) => {
            progress::status(format!(
                "{label}: the same federation was trained for an earlier cell; reusing its {} rounds",
                sim.rounds.len()
            ));
            sim
        }
        None => {
            let sim = train_federation(&setup.federation, label)?;
            // Only cells with an evasion scenario can share a federation with another cell.
            if exp.evasion.is_some() {
                lock_federations().insert(key, sim.clone());
            }
            sim
        }
    };
    federated_outcome(exp, &setup, sim, label)
}

/// Runs the rounds with a progress bar and a closing status line.
pub(super) fn train_federation(
    federation: &Federation,
    label: &str,
) -> Result<federated::Simulation> {
    let fed = federation.config();
    let start = Instant::now();
    let pb = progress::bar_of(fed.rounds as u64, label.to_string(), "rounds");
    let prev_threads = tch::get_num_threads();
    let sim = federated::simulate(federation, &mut |r| {
        pb.inc(1);
        if let Some(a) = r.test_accuracy {
            pb.set_message(format!(
                "acc {:.2}%{}",
                100.0 * a,
                r.asr
                    .map(|x| format!(" ASR {:.2}%", 100.0 * x))
                    .unwrap_or_default()
            ));
        }
    });
    tch::set_num_threads(prev_threads);
    let sim = sim?;
    pb.finish_and_clear();
    let last = sim.rounds.last().expect("at least one round");
    progress::status(format!(
        "{label}: {} rounds of {} ({} clients, {}) in {:.1}s, test acc {:.2}%{}",
        sim.rounds.len(),
        sim.strategy,
        federation.clients().len(),
        fed.partition.label(),
        start.elapsed().as_secs_f64(),
        100.0 * last.test_accuracy.unwrap_or(f64::NAN),
        last.asr
            .map(|a| format!(", ASR {:.2}%", 100.0 * a))
            .unwrap_or_default()
    ));
    if let Some(why) = &sim.stopped {
        progress::status(format!("{label}: stopped early, {why}"));
    }
    Ok(sim)
}

/// Trained federations of this process by configuration (evasion settings left out).
pub(super) fn lock_federations()
-> std::sync::MutexGuard<'static, HashMap<String, federated::Simulation>> {
    static FEDERATIONS: std::sync::OnceLock<
        std::sync::Mutex<HashMap<String, federated::Simulation>>,
    > = std::sync::OnceLock::new();
    FEDERATIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A federated cell's outcome from its trained federation: summary, the evasion scenario.
#[allow(clippy::too_many_arguments)]
pub(super) fn federated_outcome(
    exp: &Experiment,
    setup: &FederationSetup,
    sim: federated::Simulation,
    label: &str,
) -> Result<Outcome> {
    let federation = &setup.federation;
    let fed = federation.config();
    let ds = &federation.shared().data;
    let clients = federation.clients();
    // The federation's wall time (its rounds include the server's per-round evaluation), also
    // when an earlier cell trained it.
    let train_s = sim.rounds.iter().map(|r| r.seconds).sum();
    let clean = ClassificationReport::new(&sim.test_pred, &ds.test.labels, ds.test.num_classes());
    let malicious: Vec<usize> = clients
        .iter()
        .filter(|c| c.malicious)
        .map(|c| c.id)
        .collect();
    let poisoned_per_client = sim
        .poisoned
        .iter()
        .zip(clients)
        .map(|(p, c)| match p {
            Some(r) => r.fraction(),
            None => format!("0/{}", c.train.len()),
        })
        .collect();
    // All poisoned samples together, for the cell's "poisoned" column.
    let poison = (!malicious.is_empty()).then(|| {
        let mut total = PoisonReport {
            per_class: vec![0; ds.train.num_classes()],
            of: clients.iter().map(|c| c.train.len()).sum(),
            ..Default::default()
        };
        for (r, c) in sim.poisoned.iter().zip(clients) {
            if let Some(r) = r {
                total.indices.extend(r.indices.iter().map(|&i| c.train[i]));
                for (t, k) in total.per_class.iter_mut().zip(&r.per_class) {
                    *t += k;
                }
            }
        }
        total.indices.sort_unstable();
        total
    });
    let mut summary = FedSummary {
        strategy: sim.strategy.clone(),
        partition: fed.partition.label(),
        clients: fed.clients,
        rounds: fed.rounds,
        poison_rate: clients.iter().find_map(|c| c.poison_rate),
        malicious_clients: malicious,
        poisoned_per_client,
        client_sizes: sim.client_sizes.clone(),
        model_poisoning: fed
            .malicious
            .as_ref()
            .and_then(|m| m.model_poisoning.as_ref())
            .map(|m| m.name().to_string()),
        detection: sim.detection.clone(),
        epsilon: sim.rounds.last().and_then(|r| r.epsilon),
        stopped: sim.stopped.clone(),
        evasion: Vec::new(),
    };
    let train_size = clients.iter().map(|c| c.train.len()).sum();
    let val_size = clients.iter().map(|c| c.val.len()).sum();
    let net = federation.model(&sim.final_params)?;
    if let Some(ev) = &exp.evasion {
        summary.evasion = evasion_between_clients(
            ev,
            federation,
            setup.server_images.as_ref(),
            &sim.final_params,
            label,
        )?;
    }
    Ok(Outcome {
        net,
        norm: federation.shared().norm.clone(),
        history: Vec::new(),
        federated: Some(FedOutcome {
            client_val: clients.iter().map(|c| c.val.clone()).collect(),
            rounds: sim.rounds,
            clients: sim.clients,
            defense: sim.defense,
            scores: sim.scores,
            partition_counts: sim.partition_counts,
            summary,
        }),
        clean,
        test_loss: sim.test_loss,
        triggered_pred: sim.triggered_pred,
        frozen_fraction: setup.frozen_fraction,
        poison,
        train_size,
        val_size,
        train_s,
        sets: None,
    })
}
