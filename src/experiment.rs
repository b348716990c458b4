//! The centralized study, one cell of an experiment file at a time:
//! config → dataset → (trusted backbone) → clean baseline → poisoned run → evaluation → report.
//!
//! Finished cells (and cached baselines and backbones) are reused when an experiment runs again
//! with the same configuration, so an interrupted grid resumes where it stopped.

use crate::attacks::PoisonReport;
use crate::attacks::backdoor::Backdoor;
use crate::config::{self, Cell, Experiment, Init};
use crate::data::{self, Dataset, ImageSet};
use crate::error::{Error, Result};
use crate::federated;
use crate::metrics::{self, ClassificationReport};
use crate::models::Net;
use crate::progress;
use crate::report;
use crate::train::{self, EpochRecord, normalize::Normalizer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    pub data_root: Option<PathBuf>,
    /// Recompute cells even when a finished result exists.
    pub force: bool,
    /// Cells run at once (`--jobs`); 1 runs them one after another. Results do not depend on it.
    pub jobs: usize,
}

/// What one cell reports (`<out>/<cell>/summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub cell: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub model: String,
    pub fine_tune: String,
    pub frozen_fraction: f64,
    pub dataset: String,
    pub train_size: usize,
    pub val_size: usize,
    pub test_size: usize,
    pub attack: Option<String>,
    /// Poisoned training samples, "hits/total".
    pub poisoned: Option<String>,
    pub poisoned_per_class: Option<Vec<usize>>,
    pub clean_accuracy: f64,
    pub baseline_accuracy: Option<f64>,
    /// Clean-accuracy drop in percentage points against the clean baseline.
    pub clean_accuracy_drop: Option<f64>,
    /// ASR as configured (by default thesis eq. 4.1: target-class inputs left out).
    pub asr: Option<f64>,
    /// ASR over every triggered test input (target predictions / total).
    pub asr_all: Option<f64>,
    pub asr_fraction: Option<String>,
    /// The clean baseline model's ASR: how often the trigger alone moves a clean model.
    pub baseline_asr: Option<f64>,
    pub f1_macro: f64,
    /// Federated runs: strategy, partition, malicious clients, poisoned samples per client.
    #[serde(default)]
    pub federation: Option<FedSummary>,
    /// The clean-accuracy check's verdict (with `metrics.clean_check_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_check_flagged: Option<bool>,
    /// Grad-CAM trigger detection and localization (with `[gradcam]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradcam: Option<crate::gradcam::GradCamSummary>,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub test_loss: f64,
    pub notes: Vec<String>,
    pub config: Experiment,
    pub seed: u64,
    pub elapsed_s: f64,
    /// Seconds spent training this cell's model (not its baseline or backbone).
    #[serde(default)]
    pub train_s: f64,
    pub fingerprint: String,
    /// The CPU kernels the run used (crate::numerics); absent in older summaries.
    #[serde(default)]
    pub numerics: crate::numerics::Numerics,
}

/// Result of training one model and evaluating it.
struct Outcome {
    /// The trained model and the normalization it sees inputs with.
    net: Net,
    norm: Normalizer,
    /// Centralized: per-epoch history; federated: empty (see `federated`).
    history: Vec<EpochRecord>,
    federated: Option<FedOutcome>,
    clean: ClassificationReport,
    test_loss: f64,
    triggered_pred: Option<Vec<i64>>,
    frozen_fraction: f64,
    poison: Option<PoisonReport>,
    train_size: usize,
    val_size: usize,
    /// Seconds spent training (centralized epochs or federated rounds), without evaluation.
    train_s: f64,
}

/// Loaded datasets shared by the cells of one invocation.
#[derive(Default, Clone)]
pub struct Context {
    datasets: HashMap<String, std::sync::Arc<Dataset>>,
    /// Backbones and clean baselines made by this invocation (reused even under `--force`).
    made: std::collections::HashSet<PathBuf>,
}

impl Context {
    pub fn dataset(
        &mut self,
        cfg: &config::DataConfig,
        data_root: Option<&Path>,
        seed: u64,
    ) -> Result<std::sync::Arc<Dataset>> {
        let key = format!("{}-{seed}-{:?}", config::fingerprint(cfg), data_root);
        if let Some(d) = self.datasets.get(&key) {
            return Ok(d.clone());
        }
        let start = Instant::now();
        let d = std::sync::Arc::new(data::load(cfg, data_root, seed)?);
        progress::status(format!(
            "data: {} — {} train / {} test images, {} classes ({:.1}s)",
            d.name,
            d.train.len(),
            d.test.len(),
            d.train.num_classes(),
            start.elapsed().as_secs_f64()
        ));
        for n in &d.notes {
            progress::status(format!("data: {n}"));
        }
        self.datasets.insert(key, d.clone());
        Ok(d)
    }
}

/// What a federated run adds to an `Outcome`.
struct FedOutcome {
    rounds: Vec<federated::RoundRecord>,
    clients: Vec<federated::ClientRecord>,
    defense: Vec<federated::detection::DefenseRecord>,
    scores: Vec<federated::detection::ScoreRecord>,
    /// Each client's validation indices into the training set.
    client_val: Vec<Vec<usize>>,
    partition_counts: Vec<Vec<usize>>,
    summary: FedSummary,
}

/// The federation part of a cell's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FedSummary {
    pub strategy: String,
    pub partition: String,
    pub clients: usize,
    pub rounds: usize,
    pub malicious_clients: Vec<usize>,
    /// Poison rate of the malicious clients (the first one's, when they differ).
    pub poison_rate: Option<f64>,
    /// "poisoned/training samples" per client, e.g. "342/1140" (honest: "0/1142").
    pub poisoned_per_client: Vec<String>,
    /// (train, validation) samples per client.
    pub client_sizes: Vec<(usize, usize)>,
    /// The malicious clients' update manipulation, if any (e.g. `scaling`).
    #[serde(default)]
    pub model_poisoning: Option<String>,
    /// Exclusions by the defense scored against the malicious ids.
    #[serde(default)]
    pub detection: federated::detection::Detection,
    /// Privacy spent (ε) after the last round, with a DP rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Why the run ended early (e.g. privacy budget reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Evasion examples crafted by each client, tried on every client (`[evasion]`), per attack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evasion: Vec<crate::evasion::transfer::TransferReport>,
}

fn pretrain_seed(exp: &Experiment) -> u64 {
    exp.pretrain
        .as_ref()
        .and_then(|p| p.seed)
        .unwrap_or(exp.seed)
}

/// Trains a backbone on trusted data and saves it (safetensors); returns the file.
pub fn pretrain(
    exp: &Experiment,
    ctx: &mut Context,
    opts: &RunOptions,
    path: &Path,
) -> Result<PathBuf> {
    let p = exp
        .pretrain
        .as_ref()
        .ok_or_else(|| Error::Invalid("the experiment has no `[pretrain]` table".into()))?;
    let device = exp.device.device()?;
    let seed = pretrain_seed(exp);
    let ds = if p.exclude_experiment_images {
        trusted_without_experiment(exp, p, ctx, opts, seed)?
    } else {
        ctx.dataset(&p.data, opts.data_root.as_deref(), seed)?
    };
    let net = crate::models::with_torch_rng(Some(seed ^ 0x7072), || {
        exp.model.recipe().build(
            ds.train.num_classes(),
            ds.train.channels,
            p.data.size,
            device,
        )
    })?;
    let norm = Normalizer::new(p.data.normalize, &ds.train);
    let label = format!("pretrain {}", exp.model.arch.name());
    let hist = fit_with_bar(
        &net,
        &ds.train,
        None,
        &norm,
        &p.train,
        &p.data.augment,
        seed,
        &label,
    )?;
    let (_, pred) = train::evaluate(&net, &ds.test, &norm);
    let acc = metrics::accuracy(&pred, &ds.test.labels);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    net.save(path)?;
    progress::status(format!(
        "{label}: test accuracy {:.2}% on the trusted data after {} epochs → {}",
        100.0 * acc,
        hist.len(),
        path.display()
    ));
    Ok(path.to_path_buf())
}

/// The backbone's trusted data less every image of the experiment's training split
/// (`pretrain.exclude_experiment_images`); the per-class cap applies to what is left.
fn trusted_without_experiment(
    exp: &Experiment,
    p: &config::PretrainConfig,
    ctx: &mut Context,
    opts: &RunOptions,
    seed: u64,
) -> Result<std::sync::Arc<Dataset>> {
    let root = opts.data_root.as_deref();
    let own = ctx.dataset(&exp.data, root, exp.seed)?;
    let uncapped = config::DataConfig {
        max_train_per_class: 0,
        ..p.data.clone()
    };
    let all = ctx.dataset(&uncapped, root, seed)?;
    let shared = data::duplicates::shared_with(&all.train, &own.train, all.name == own.name);
    let rest = data::duplicates::drop_indices(&all.train, &shared);
    if rest.is_empty() {
        return Err(Error::Invalid(
            "`pretrain.exclude_experiment_images` leaves no trusted training image: every one is \
             also in the experiment's training split; give `[pretrain.data]` other images"
                .into(),
        ));
    }
    let train = data::cap_per_class(&rest, p.data.max_train_per_class, seed);
    progress::status(format!(
        "pretrain: left out {} images that the experiment trains on; {} trusted training images",
        shared.len(),
        train.len()
    ));
    Ok(std::sync::Arc::new(Dataset {
        name: all.name.clone(),
        train,
        test: all.test.clone(),
        notes: all.notes.clone(),
    }))
}

#[allow(clippy::too_many_arguments)]
fn fit_with_bar(
    net: &Net,
    train_set: &ImageSet,
    val: Option<&ImageSet>,
    norm: &Normalizer,
    cfg: &config::TrainConfig,
    augment: &crate::data::augment::AugmentConfig,
    seed: u64,
    label: &str,
) -> Result<Vec<EpochRecord>> {
    let per_epoch = train_set.len().div_ceil(cfg.batch_size) as u64;
    let pb = progress::bar(per_epoch * cfg.epochs as u64, label.to_string());
    let start = Instant::now();
    let hist = train::fit(
        net,
        train_set,
        val,
        norm,
        cfg,
        augment,
        seed,
        &train::Objective::default(),
        &mut |_, loss| {
            pb.inc(1);
            pb.set_message(format!("loss {loss:.4}"));
        },
    )?;
    pb.finish_and_clear();
    let last = hist.last().expect("at least one epoch");
    progress::status(format!(
        "{label}: {} epochs in {:.1}s, train loss {:.4}, train acc {:.2}%{}",
        hist.len(),
        start.elapsed().as_secs_f64(),
        last.train_loss,
        100.0 * last.train_accuracy,
        last.val_accuracy
            .map(|a| format!(", val acc {:.2}%", 100.0 * a))
            .unwrap_or_default()
    ));
    Ok(hist)
}

/// The backbone file for `exp`, pretraining (once, cached by configuration) when needed.
fn backbone(exp: &Experiment, ctx: &mut Context, opts: &RunOptions) -> Result<Option<PathBuf>> {
    if exp.model.init != Init::Pretrained {
        return Ok(None);
    }
    if let Some(w) = exp.model.weights_path() {
        let w = data::resolve(&w, opts.data_root.as_deref());
        if !w.is_file() {
            return Err(Error::data(&w, "`model.weights` file not found"));
        }
        return Ok(Some(w));
    }
    let seed = pretrain_seed(exp);
    // A TorchScript model's file is part of what the backbone is.
    let mut key = match &exp.model.script {
        None => config::fingerprint(&(exp.model.arch, &exp.pretrain, seed)),
        Some(script) => config::fingerprint(&(exp.model.arch, &exp.pretrain, seed, script)),
    };
    // So are the experiment's images when they are left out of the trusted data.
    if exp
        .pretrain
        .as_ref()
        .is_some_and(|p| p.exclude_experiment_images)
    {
        key = config::fingerprint(&(key, &exp.data, exp.seed));
    }
    let path = opts
        .out
        .join("pretrained")
        .join(format!("{}-{key}.safetensors", exp.model.arch.name()));
    if path.is_file() && (!opts.force || ctx.made.contains(&path)) {
        return Ok(Some(path));
    }
    pretrain(exp, ctx, opts, &path)?;
    ctx.made.insert(path.clone());
    Ok(Some(path))
}

/// The model a run starts from: seeded random init, the backbone's features when given, and
/// the fine-tuning strategy's frozen layers. Returns it with the frozen parameter share.
fn initial_net(exp: &Experiment, ds: &Dataset, backbone: Option<&Path>) -> Result<(Net, f64)> {
    let device = exp.device.device()?;
    // The backbone's head is re-initialized from the same seeded draws.
    crate::models::with_torch_rng(Some(exp.seed), || {
        let net = exp.model.recipe().build(
            ds.train.num_classes(),
            ds.train.channels,
            exp.data.size,
            device,
        )?;
        if let Some(path) = backbone {
            crate::models::weights::load(&net, path, crate::models::weights::Head::Reinit)?;
        }
        let frozen_fraction = net.apply_fine_tune(exp.model.fine_tune()?)?;
        Ok((net, frozen_fraction))
    })
}

/// Trains one model (poisoned when `exp.attack` is set) and evaluates it on the clean test set
/// and, when `probe` is given, on the fully triggered one.
fn train_and_evaluate(
    exp: &Experiment,
    ds: &Dataset,
    backbone: Option<&Path>,
    probe: Option<&Backdoor>,
    label: &str,
) -> Result<Outcome> {
    if exp.federation.is_some() {
        return federated_train_and_evaluate(exp, ds, backbone, probe, label);
    }
    let (train_idx, val_idx) = data::stratified_split(&ds.train, exp.data.val_fraction, exp.seed);
    let mut train_set = ds.train.subset(&train_idx);
    let val_set = ds.train.subset(&val_idx);
    // The validation split is the defender's clean hold-out; only training images are poisoned.
    let poison = match &exp.attack {
        Some(a) => Some(a.poison(&mut train_set, exp.seed ^ crate::seed::stream::POISON)?),
        None => None,
    };
    let (net, frozen_fraction) = initial_net(exp, ds, backbone)?;
    let norm = Normalizer::new(exp.data.normalize, &train_set);
    let start = Instant::now();
    let history = fit_with_bar(
        &net,
        &train_set,
        Some(&val_set),
        &norm,
        &exp.train,
        &exp.data.augment,
        exp.seed,
        label,
    )?;
    let train_s = start.elapsed().as_secs_f64();
    let (test_loss, pred) = train::evaluate(&net, &ds.test, &norm);
    let clean = ClassificationReport::new(&pred, &ds.test.labels, ds.test.num_classes());
    let triggered_pred =
        probe.map(|b| train::evaluate(&net, &b.trigger.apply_all(&ds.test), &norm).1);
    Ok(Outcome {
        net,
        norm,
        history,
        federated: None,
        clean,
        test_loss,
        triggered_pred,
        frozen_fraction,
        poison,
        train_size: train_set.len(),
        val_size: val_set.len(),
        train_s,
    })
}

/// The federated counterpart of `train_and_evaluate`: clients train the model together over
/// rounds; the final global model is evaluated as a centralized one would be.
fn federated_train_and_evaluate(
    exp: &Experiment,
    ds: &Dataset,
    backbone: Option<&Path>,
    probe: Option<&Backdoor>,
    label: &str,
) -> Result<Outcome> {
    let fed = exp.federation.as_ref().expect("federated experiment");
    // The server's own images are set aside before the clients partition the rest.
    let reserved;
    let (ds, server_set) = if fed.server_images > 0 {
        let (clients_ds, server) = federated::server_data::split(
            ds,
            fed.server_images,
            crate::seed::mix(exp.seed, crate::seed::stream::SERVER_IMAGES, 0),
        )?;
        reserved = clients_ds;
        (&reserved, Some(server))
    } else {
        (ds, None)
    };
    let (net, frozen_fraction) = initial_net(exp, ds, backbone)?;
    let initial = federated::params::flatten(&net);
    drop(net);
    let (clients, counts) = federated::make_clients(fed, ds, exp.attack.as_ref(), exp.seed)?;
    // One normalization for the federation, from the training data as a whole.
    let norm = Normalizer::new(exp.data.normalize, &ds.train);
    let strategy = federated::strategy::build(&fed.strategy, fed.sampling());
    let setup = federated::Setup {
        fed,
        shared: federated::client::Shared {
            data: ds,
            model: exp.model.recipe(),
            size: exp.data.size,
            fine_tune: exp.model.fine_tune()?,
            device: exp.device.device()?,
            norm,
            train: &exp.train,
            augment: &exp.data.augment,
            attack: exp.attack.as_ref(),
            proximal_mu: strategy.proximal_mu(),
            seed: exp.seed,
            threads: fed.threads_per_client,
            adversarial: fed.adversarial_training.as_ref(),
        },
        strategy,
        initial,
        probe,
        asr_exclude_target: exp.metrics.asr_exclude_target,
    };
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
            let sim = train_federation(&setup, &clients, counts, label)?;
            // Only cells with an evasion scenario can share a federation with another cell.
            if exp.evasion.is_some() {
                lock_federations().insert(key, sim.clone());
            }
            sim
        }
    };
    federated_outcome(
        exp,
        ds,
        &setup,
        clients,
        server_set,
        frozen_fraction,
        sim,
        label,
    )
}

/// Runs the rounds with a progress bar and a closing status line.
fn train_federation(
    setup: &federated::Setup,
    clients: &[federated::client::Client],
    counts: Vec<Vec<usize>>,
    label: &str,
) -> Result<federated::Simulation> {
    let fed = setup.fed;
    let start = Instant::now();
    let pb = progress::bar_of(fed.rounds as u64, label.to_string(), "rounds");
    let prev_threads = tch::get_num_threads();
    let sim = federated::simulate(setup, clients, counts, &mut |r| {
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
        clients.len(),
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
fn lock_federations() -> std::sync::MutexGuard<'static, HashMap<String, federated::Simulation>> {
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
fn federated_outcome(
    exp: &Experiment,
    ds: &Dataset,
    setup: &federated::Setup,
    clients: Vec<federated::client::Client>,
    server_set: Option<ImageSet>,
    frozen_fraction: f64,
    sim: federated::Simulation,
    label: &str,
) -> Result<Outcome> {
    let fed = setup.fed;
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
        .zip(&clients)
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
        for (r, c) in sim.poisoned.iter().zip(&clients) {
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
    let net = setup.shared.new_net()?;
    federated::params::load(&net, &sim.final_params)?;
    if let Some(ev) = &exp.evasion {
        summary.evasion = evasion_between_clients(
            ev,
            setup,
            &clients,
            server_set.as_ref(),
            &sim.final_params,
            label,
        )?;
    }
    Ok(Outcome {
        net,
        norm: setup.shared.norm.clone(),
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
        frozen_fraction,
        poison,
        train_size,
        val_size,
        train_s,
    })
}

/// The models the clients hold after training (global, one more local round, or a noisy
/// copy) and the evasion attack between them.
fn evasion_between_clients(
    ev: &crate::evasion::transfer::TransferConfig,
    setup: &federated::Setup,
    clients: &[federated::client::Client],
    server_set: Option<&ImageSet>,
    global: &[f32],
    label: &str,
) -> Result<Vec<crate::evasion::transfer::TransferReport>> {
    use crate::evasion::transfer::Holds;
    let sh = &setup.shared;
    let rounds = setup.fed.rounds;
    let adapted;
    let global = match &ev.adapt {
        Some(a) => {
            let server = server_set.ok_or_else(|| {
                Error::Invalid("`evasion.adapt` needs `federation.server_images` > 0".into())
            })?;
            let net = sh.new_net()?;
            federated::params::load(&net, global)?;
            let start = Instant::now();
            crate::evasion::adaptation::adapt(
                &net,
                server,
                &sh.norm,
                a,
                sh.train,
                crate::seed::mix(sh.seed, crate::seed::stream::ADAPTATION, 0),
            )?;
            progress::status(format!(
                "{label}: server adapted the global model for {} epoch(s) on {:.0}% of its {} own images, {}, in {:.1}s",
                a.epochs,
                100.0 * a.fraction,
                server.len(),
                a.method.describe(&a.attack.attack().name()),
                start.elapsed().as_secs_f64()
            ));
            adapted = federated::params::flatten(&net);
            adapted.as_slice()
        }
        None => global,
    };
    // Noisy copies: weights and biases only (noise on running variances breaks batch norm).
    let trainable = federated::params::trainable_ranges(&sh.new_net()?);
    let mut models = Vec::with_capacity(clients.len());
    for c in clients {
        let params = match ev.holds {
            Holds::Global => global.to_vec(),
            Holds::Local => sh.fit(c, global, rounds + 1)?.update.params,
            Holds::Noisy => {
                let mut p = global.to_vec();
                federated::rules::vector::add_gaussian_to(
                    &mut p,
                    ev.noise_sigma,
                    crate::seed::mix(sh.seed, crate::seed::stream::HELD_NOISE, c.id as u64),
                    Some(&trainable),
                );
                p
            }
        };
        let net = sh.new_net()?;
        federated::params::load(&net, &params)?;
        models.push(net);
    }
    let sets: Vec<_> = clients
        .iter()
        .map(|c| sh.data.train.subset(&c.val))
        .collect();
    let test_accuracy: Vec<f64> = models
        .iter()
        .map(|m| {
            let (_, pred) = train::evaluate(m, &sh.data.test, &sh.norm);
            metrics::accuracy(&pred, &sh.data.test.labels)
        })
        .collect();
    let start = Instant::now();
    let mut reports = crate::evasion::transfer::run(
        &models,
        &sets,
        &sh.norm,
        ev,
        sh.seed ^ crate::seed::stream::EVASION,
    );
    for r in &mut reports {
        r.test_accuracy = test_accuracy.clone();
        r.mean_test_accuracy =
            test_accuracy.iter().sum::<f64>() / test_accuracy.len().max(1) as f64;
    }
    progress::status(format!(
        "{label}: the models the clients hold score {} on the test set",
        test_accuracy
            .iter()
            .map(|a| format!("{:.2}%", 100.0 * a))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for r in &reports {
        progress::status(format!(
            "{label}: {} from each client: self ASR {:.2}%, AASR (all clients) {:.2}%, other clients {:.2}%, AETR {}, AA {:.2}%, {:.1} ms per batch",
            r.attack,
            100.0 * r.mean_self_asr,
            100.0 * r.mean_aasr,
            100.0 * r.mean_aasr_others,
            r.mean_aetr
                .map(|e| format!("{:.2}%", 100.0 * e))
                .unwrap_or_else(|| "-".into()),
            100.0 * r.mean_aa,
            r.ms_per_batch
        ));
    }
    progress::status(format!(
        "{label}: evasion between clients in {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    Ok(reports)
}

/// history.csv (epochs or rounds), clients.csv and the partition report, and the clean
/// confusion matrix.
fn write_outcome(dir: &Path, ds: &Dataset, out: &Outcome) -> Result<()> {
    match &out.federated {
        Some(f) => {
            report::write_rows(&dir.join("history.csv"), &f.rounds)?;
            report::write_rows(&dir.join("clients.csv"), &f.clients)?;
            report::write_defense(dir, &f.rounds, &f.defense, &f.scores)?;
            if !f.summary.evasion.is_empty() {
                report::write_evasion(dir, &f.summary.evasion)?;
            }
            report::write_partition(
                dir,
                &ds.train.classes,
                &f.partition_counts,
                &f.summary.malicious_clients,
            )?;
        }
        None => report::write_history(&dir.join("history.csv"), &out.history)?,
    }
    report::write_confusion(
        &dir.join("confusion_clean.csv"),
        &ds.test.classes,
        &out.clean.confusion,
    )
}

fn asr_of(b: &Backdoor, ds: &Dataset, pred: &[i64], exclude: bool) -> Result<metrics::AsrCounts> {
    Ok(metrics::attack_success_rate(
        pred,
        &ds.test.labels,
        b.target_id(&ds.test.classes)?,
        exclude,
    ))
}

fn params_json(cell: &Cell) -> serde_json::Map<String, serde_json::Value> {
    cell.params
        .iter()
        .map(|(k, v)| {
            let json = match v {
                toml::Value::Table(_) | toml::Value::Array(_) => {
                    serde_json::Value::String(config::value_label(v))
                }
                other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
            };
            (k.clone(), json)
        })
        .collect()
}

/// The clean baseline accuracy (and its ASR) for CAD: given, cached, or computed now.
fn baseline(
    exp: &Experiment,
    ds: &Dataset,
    backbone: Option<&Path>,
    ctx: &mut Context,
    opts: &RunOptions,
    label: &str,
) -> Result<(f64, Option<f64>)> {
    if let Some(path) = &exp.baseline {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a summary.json: {e}")))?;
        let acc = s["clean_accuracy"]
            .as_f64()
            .ok_or_else(|| Error::data(path, "has no numeric `clean_accuracy`"))?;
        return Ok((acc, None));
    }
    let clean = exp.clean();
    let key = config::fingerprint(&clean);
    let dir = opts.out.join("baselines").join(&key);
    let file = dir.join("summary.json");
    if file.is_file()
        && (!opts.force || ctx.made.contains(&file))
        && let Ok(text) = std::fs::read_to_string(&file)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(acc) = v["clean_accuracy"].as_f64()
    {
        return Ok((acc, v["trigger_asr"].as_f64()));
    }
    let start = Instant::now();
    let probe = exp.attack.as_ref().and_then(|a| a.as_backdoor());
    let out = train_and_evaluate(
        &clean,
        ds,
        backbone,
        probe,
        &format!("{label} · clean baseline"),
    )?;
    // The trigger on a clean model: how much of the ASR the trigger causes without poisoning.
    let trigger_asr = match (probe, &out.triggered_pred) {
        (Some(b), Some(p)) => Some(asr_of(b, ds, p, exp.metrics.asr_exclude_target)?.rate()),
        _ => None,
    };
    write_outcome(&dir, ds, &out)?;
    report::write_json(
        &file,
        &serde_json::json!({
            "clean_accuracy": out.clean.accuracy,
            "f1_macro": out.clean.f1_macro,
            "test_loss": out.test_loss,
            "trigger_asr": trigger_asr,
            "config": clean,
            "seed": clean.seed,
            "elapsed_s": start.elapsed().as_secs_f64(),
        }),
    )?;
    ctx.made.insert(file);
    Ok((out.clean.accuracy, trigger_asr))
}

/// A cell's finished result from an earlier run with the same configuration (not under
/// `--force`).
fn finished_earlier(cell: &Cell, opts: &RunOptions) -> Option<Summary> {
    let file = opts.out.join(cell.id()).join("summary.json");
    if opts.force {
        return None;
    }
    let s: Summary = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    (s.fingerprint == config::fingerprint(&cell.experiment)).then_some(s)
}

/// What a cell needs before it trains, and may share with other cells: its backbone, its
/// dataset and its clean baseline (accuracy, trigger ASR).
struct Prepared {
    backbone: Option<PathBuf>,
    ds: std::sync::Arc<Dataset>,
    baseline: Option<(f64, Option<f64>)>,
}

fn prepare(cell: &Cell, ctx: &mut Context, opts: &RunOptions, label: &str) -> Result<Prepared> {
    let exp = &cell.experiment;
    // A missing GPU or weights file is reported before any data is loaded.
    exp.device.device()?;
    let backbone = backbone(exp, ctx, opts)?;
    let ds = ctx.dataset(&exp.data, opts.data_root.as_deref(), exp.seed)?;
    if let Some(a) = &exp.attack {
        a.validate(&ds.train.classes)?;
    }
    let baseline = match &exp.attack {
        Some(_) => Some(baseline(exp, &ds, backbone.as_deref(), ctx, opts, label)?),
        None => None,
    };
    Ok(Prepared {
        backbone,
        ds,
        baseline,
    })
}

/// Runs one cell and writes `<out>/<cell>/…`; reuses a finished result with the same config.
pub fn run_cell(cell: &Cell, ctx: &mut Context, opts: &RunOptions, label: &str) -> Result<Summary> {
    let exp = &cell.experiment;
    let fp = config::fingerprint(exp);
    let dir = opts.out.join(cell.id());
    let file = dir.join("summary.json");
    if let Some(s) = finished_earlier(cell, opts) {
        progress::status(format!(
            "{label}: finished earlier, reusing {}",
            file.display()
        ));
        return Ok(s);
    }
    let start = Instant::now();
    let Prepared {
        backbone,
        ds,
        baseline,
    } = prepare(cell, ctx, opts, label)?;
    let baseline_accuracy = baseline.map(|b| b.0);
    let baseline_asr = baseline.and_then(|b| b.1);
    let run_label = if exp.attack.is_some() {
        format!("{label} · poisoned")
    } else {
        label.to_string()
    };
    let probe = exp.attack.as_ref().and_then(|a| a.as_backdoor());
    let out = train_and_evaluate(exp, &ds, backbone.as_deref(), probe, &run_label)?;
    let excl = exp.metrics.asr_exclude_target;
    let (asr, asr_all) = match (probe, &out.triggered_pred) {
        (Some(b), Some(p)) => (
            Some(asr_of(b, &ds, p, excl)?),
            Some(asr_of(b, &ds, p, false)?),
        ),
        _ => (None, None),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_outcome(&dir, &ds, &out)?;
    if let Some(p) = &out.triggered_pred {
        let m = metrics::confusion_matrix(p, &ds.test.labels, ds.test.num_classes());
        report::write_confusion(&dir.join("confusion_triggered.csv"), &ds.test.classes, &m)?;
    }
    let gradcam = match (&exp.gradcam, probe) {
        (Some(g), Some(b)) => {
            let client_sets: Vec<_> = out
                .federated
                .iter()
                .flat_map(|f| f.client_val.iter())
                .map(|v| ds.train.subset(v))
                .collect();
            Some(crate::gradcam::inspect(
                &out.net,
                &ds.test,
                &client_sets,
                b,
                &out.norm,
                g,
                &dir,
            )?)
        }
        _ => None,
    };
    let summary = Summary {
        name: exp.name.clone(),
        cell: cell.id(),
        params: params_json(cell),
        model: exp.model.arch.name().into(),
        fine_tune: exp.model.fine_tune()?.label(),
        frozen_fraction: out.frozen_fraction,
        dataset: ds.name.clone(),
        train_size: out.train_size,
        val_size: out.val_size,
        test_size: ds.test.len(),
        attack: exp.attack.as_ref().map(|a| a.kind().to_string()),
        poisoned: out.poison.as_ref().map(PoisonReport::fraction),
        poisoned_per_class: out.poison.as_ref().map(|p| p.per_class.clone()),
        clean_accuracy: out.clean.accuracy,
        baseline_accuracy,
        clean_accuracy_drop: baseline_accuracy
            .map(|b| metrics::clean_accuracy_drop(b, out.clean.accuracy)),
        asr: asr.map(|a| a.rate()),
        asr_all: asr_all.map(|a| a.rate()),
        asr_fraction: asr.map(|a| a.fraction()),
        baseline_asr,
        f1_macro: out.clean.f1_macro,
        federation: out.federated.as_ref().map(|f| f.summary.clone()),
        clean_check_flagged: exp
            .metrics
            .clean_check_threshold
            .zip(baseline_accuracy)
            .map(|(t, b)| metrics::clean_check(b, out.clean.accuracy, t)),
        gradcam,
        precision_macro: out.clean.precision_macro,
        recall_macro: out.clean.recall_macro,
        test_loss: out.test_loss,
        notes: ds.notes.clone(),
        config: exp.clone(),
        seed: exp.seed,
        elapsed_s: start.elapsed().as_secs_f64(),
        train_s: out.train_s,
        fingerprint: fp,
        numerics: crate::numerics::current(),
    };
    report::write_json(&file, &summary)?;
    Ok(summary)
}

/// Runs every cell of an experiment file; writes `<out>/summary.json` and `<out>/results.csv`.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<Vec<Summary>> {
    let cells = config::load(path)?;
    run_cells(&cells, opts)
}

pub fn run_cells(cells: &[Cell], opts: &RunOptions) -> Result<Vec<Summary>> {
    let start = Instant::now();
    let n = crate::numerics::current();
    progress::status(format!(
        "CPU kernels: {} (ATen {}, oneDNN {}, MKL {})",
        n.cpu_kernels.label(),
        n.aten_cpu_capability
            .as_deref()
            .unwrap_or("chosen by the CPU"),
        n.onednn_max_cpu_isa
            .as_deref()
            .unwrap_or("chosen by the CPU"),
        n.mkl_cbwr.as_deref().unwrap_or("chosen by the CPU"),
    ));
    let mut ctx = Context::default();
    let cells: Vec<Cell> = cells
        .iter()
        .map(|c| c.resolved(opts.data_root.as_deref()))
        .collect();
    let labels: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| format!("[{}/{}] {}", i + 1, cells.len(), c.id()))
        .collect();
    let jobs = opts.jobs.clamp(1, cells.len().max(1));
    if jobs == 1 {
        let mut done = Vec::with_capacity(cells.len());
        for (cell, label) in cells.iter().zip(&labels) {
            let s = run_cell(cell, &mut ctx, opts, label)?;
            progress::status(format!("{label}: {}", one_line(&s)));
            done.push(s);
            // Keep the tables current so an interrupted grid leaves its finished rows behind.
            write_results(&opts.out, &done, start.elapsed().as_secs_f64())?;
        }
        return Ok(done);
    }
    // What cells share is made first, one at a time, so no two cells train the same backbone
    // or baseline.
    for (cell, label) in cells.iter().zip(&labels) {
        if finished_earlier(cell, opts).is_none() {
            prepare(cell, &mut ctx, opts, label)?;
        }
    }
    run_in_parallel(&cells, &labels, &ctx, opts, jobs, start)
}

/// Runs the cells `jobs` at a time, splitting the CPU cores between them; the tables are
/// rewritten (in grid order) whenever a cell finishes. After a failure no new cell starts, the
/// running ones finish and are kept, and the first error is returned.
fn run_in_parallel(
    cells: &[Cell],
    labels: &[String],
    ctx: &Context,
    opts: &RunOptions,
    jobs: usize,
    start: Instant,
) -> Result<Vec<Summary>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    // Federated cells that would take every core for their clients get their share.
    let cells: Vec<Cell> = cells
        .iter()
        .cloned()
        .map(|mut c| {
            if let Some(f) = &mut c.experiment.federation
                && f.workers == 0
            {
                f.workers = threads;
            }
            c
        })
        .collect();
    let slots: Mutex<Vec<Option<Summary>>> = Mutex::new(vec![None; cells.len()]);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let next = AtomicUsize::new(0);
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                tch::set_num_threads(threads as i32);
                let mut ctx = ctx.clone();
                while lock(&failed).is_none() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(cell) = cells.get(i) else { break };
                    let outcome = run_cell(cell, &mut ctx, opts, &labels[i]).and_then(|s| {
                        progress::status(format!("{}: {}", labels[i], one_line(&s)));
                        let mut slots = lock(&slots);
                        slots[i] = Some(s);
                        let done: Vec<Summary> = slots.iter().flatten().cloned().collect();
                        write_results(&opts.out, &done, start.elapsed().as_secs_f64())
                    });
                    if let Err(e) = outcome {
                        lock(&failed).get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(slots
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|s| s.expect("every cell ran"))
        .collect())
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

fn one_line(s: &Summary) -> String {
    // A missing value prints as a bare "-", without its unit.
    let cad = s
        .clean_accuracy_drop
        .map_or("-".into(), |c| format!("{c:.2} pts"));
    let asr = s.asr.map_or("-".into(), |a| format!("{}%", pct(Some(a))));
    format!(
        "clean acc {}%, CAD {cad}, ASR {asr}",
        pct(Some(s.clean_accuracy))
    )
}

// No timings here: a resumed sweep must write the same table as an uninterrupted one
// (`elapsed_s` stays in each cell's summary.json).
const RESULT_COLUMNS: [&str; 23] = [
    "cell",
    "model",
    "fine_tune",
    "partition",
    "strategy",
    "malicious",
    "poison_rate",
    "poisoned_per_client",
    "clean_accuracy",
    "baseline_accuracy",
    "clean_accuracy_drop",
    "asr",
    "asr_all",
    "asr_fraction",
    "f1_macro",
    "model_poisoning",
    "excluded_clients",
    "detection_tpr",
    "detection_fpr",
    "first_exclusion_round",
    "gradcam_auroc",
    "clean_check_flagged",
    "seed",
];

pub fn write_results(out: &Path, cells: &[Summary], elapsed: f64) -> Result<()> {
    let param_keys = report::param_keys(cells.iter().map(|s| &s.params));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let header = report::header(&param_keys, &RESULT_COLUMNS);
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            let mut r = report::param_values(&param_keys, &s.params);
            let fed = s.federation.as_ref();
            r.extend([
                s.cell.clone(),
                s.model.clone(),
                s.fine_tune.clone(),
                fed.map(|f| f.partition.clone()).unwrap_or_default(),
                fed.map(|f| f.strategy.clone()).unwrap_or_default(),
                fed.map(|f| f.malicious_clients.len().to_string())
                    .unwrap_or_default(),
                f(fed.and_then(|f| f.poison_rate)),
                fed.map(|f| f.poisoned_per_client.join(" "))
                    .unwrap_or_default(),
                f(Some(s.clean_accuracy)),
                f(s.baseline_accuracy),
                f(s.clean_accuracy_drop),
                f(s.asr),
                f(s.asr_all),
                s.asr_fraction.clone().unwrap_or_default(),
                f(Some(s.f1_macro)),
                fed.and_then(|f| f.model_poisoning.clone())
                    .unwrap_or_default(),
                fed.map(|f| {
                    f.detection
                        .flagged_clients
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
                f(fed.and_then(|f| f.detection.tpr)),
                f(fed.and_then(|f| f.detection.fpr)),
                fed.and_then(|f| f.detection.first_correct_round)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                f(s.gradcam.as_ref().and_then(|g| g.test.auroc)),
                s.clean_check_flagged
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                s.seed.to_string(),
            ]);
            r
        })
        .collect();
    report::write_csv(&out.join("results.csv"), &header, &rows)?;
    crate::figures::sweep_figures(out, cells)?;
    crate::evasion::sweep::write(out, cells)?;
    crate::rounds_figure::write(out, cells)?;
    let settings = crate::repetitions::settings(cells);
    if crate::repetitions::repeated(&settings) {
        crate::repetitions::write_csv(&out.join("mean_std.csv"), &settings)?;
    }
    crate::figures::freeze_figure(out, &settings)?;
    report::write_json(
        &out.join("summary.json"),
        &serde_json::json!({ "elapsed_s": elapsed, "cells": cells }),
    )
}

/// The model × strategy table printed at the end of a run (federated runs add partition,
/// malicious clients and their poison rate).
pub fn results_table(cells: &[Summary]) -> String {
    let federated = cells.iter().any(|s| s.federation.is_some());
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            let fed = s.federation.as_ref();
            let mut row = vec![s.model.clone(), s.fine_tune.clone()];
            if federated {
                row.extend([
                    fed.map(|f| f.partition.clone()).unwrap_or_default(),
                    fed.map(|f| f.strategy.clone()).unwrap_or_default(),
                    fed.map(|f| f.malicious_clients.len().to_string())
                        .unwrap_or_default(),
                    fed.and_then(|f| f.poison_rate)
                        .map(|r| format!("{r}"))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            row.extend([
                pct(Some(s.clean_accuracy)),
                pct(s.baseline_accuracy),
                s.clean_accuracy_drop
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "-".into()),
                pct(s.asr),
                s.asr_fraction.clone().unwrap_or_else(|| "-".into()),
                pct(Some(s.f1_macro)),
            ]);
            if federated {
                let d = fed.map(|f| &f.detection);
                row.extend([pct(d.and_then(|d| d.tpr)), pct(d.and_then(|d| d.fpr))]);
            }
            row
        })
        .collect();
    let mut header = vec!["model", "strategy"];
    if federated {
        header.extend(["partition", "rule", "malicious", "rate"]);
    }
    header.extend([
        "clean acc %",
        "baseline %",
        "CAD pts",
        "ASR %",
        "ASR hits",
        "F1 %",
    ]);
    if federated {
        header.extend(["excl. TPR %", "excl. FPR %"]);
    }
    report::table(&header, &rows)
}
