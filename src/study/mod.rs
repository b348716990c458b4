//! The study: one cell of an experiment file at a time, centralized or federated:
//! config → dataset → (trusted backbone) → clean baseline → poisoned run → evaluation → report.
//!
//! Finished cells (and cached baselines and backbones) are reused when an experiment runs again
//! with the same configuration, so an interrupted grid resumes where it stopped.

use crate::attacks::PoisonReport;
use crate::attacks::backdoor::Backdoor;
use crate::config::{self, Cell, Experiment, Init};
use crate::data::normalize::Normalizer;
use crate::data::{self, Dataset, ImageSet};
use crate::error::{Error, Result};
use crate::federated::{self, Federation};
use crate::metrics::{self, ClassificationReport};
use crate::models::Net;
use crate::progress;
use crate::report;
use crate::report::results::{one_line, write_results};
use crate::report::summary::{FedSummary, Summary};
use crate::train::{self, EpochRecord};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod backbone;
mod centralized;
mod defense;
mod evasion;
mod federation;
mod schedule;

pub use backbone::pretrain;
use backbone::*;
use centralized::*;
use evasion::*;
use federation::federated_train_and_evaluate;
pub use federation::{FederationSetup, federation, federation_of};
pub use schedule::{collect, run_cells, run_file};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out: PathBuf,
    pub data_root: Option<PathBuf>,
    /// Recompute cells even when a finished result exists.
    pub force: bool,
    /// Cells run at once (`--jobs`); 1 runs them one after another. Results do not depend on it.
    pub jobs: usize,
    /// The command line that started the run, recorded in `<out>/sweep.json` and the report.
    pub command: Option<String>,
    /// The experiment file the cells come from (the report's per-cell rerun commands use it).
    pub experiment: Option<PathBuf>,
    /// Set when these cells are one shard of a grid split over several processes: the cells
    /// still go to `<out>/<cell>`, but the sweep's tables to `<out>/shards/K-of-N/`, so the
    /// shards never overwrite each other's (`collect` then builds the whole sweep's).
    pub shard: Option<config::Shard>,
}

impl RunOptions {
    /// Where the sweep's own files go (results table, summary, record, report).
    pub fn sweep_dir(&self) -> PathBuf {
        match &self.shard {
            Some(s) => self.out.join(s.folder()),
            None => self.out.clone(),
        }
    }
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
    /// Centralized: the (poisoned) training set and the clean validation split, for the
    /// data and input defenses.
    sets: Option<(ImageSet, ImageSet)>,
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

/// history.csv (epochs or rounds), clients.csv and the partition report, and the clean
/// confusion matrix.
fn write_outcome(dir: &Path, ds: &Dataset, out: &Outcome) -> Result<()> {
    match &out.federated {
        Some(f) => {
            crate::io::write_rows(&dir.join("history.csv"), &f.rounds)?;
            crate::io::write_rows(&dir.join("clients.csv"), &f.clients)?;
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
    ds: &Arc<Dataset>,
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
    crate::io::write_json(
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
    let defense = match &exp.defense {
        Some(d) => Some(defense::run(
            exp,
            &ds,
            backbone.as_deref(),
            &out,
            probe,
            d,
            label,
        )?),
        None => None,
    };
    let gradcam = match (&exp.gradcam, probe) {
        (Some(g), Some(b)) => {
            let client_sets: Vec<_> = out
                .federated
                .iter()
                .flat_map(|f| f.client_val.iter())
                .map(|v| ds.train.subset(v))
                .collect();
            Some(crate::defenses::gradcam::inspect(
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
        defense,
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
    crate::io::write_json(&file, &summary)?;
    Ok(summary)
}
