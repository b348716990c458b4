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
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub test_loss: f64,
    pub notes: Vec<String>,
    pub config: Experiment,
    pub seed: u64,
    pub elapsed_s: f64,
    pub fingerprint: String,
}

/// Result of training one model and evaluating it.
struct Outcome {
    history: Vec<EpochRecord>,
    clean: ClassificationReport,
    test_loss: f64,
    triggered_pred: Option<Vec<i64>>,
    frozen_fraction: f64,
    poison: Option<PoisonReport>,
    train_size: usize,
    val_size: usize,
}

/// Loaded datasets shared by the cells of one invocation.
#[derive(Default)]
pub struct Context {
    datasets: HashMap<String, std::sync::Arc<Dataset>>,
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

fn seed_all(seed: u64) {
    tch::manual_seed(seed as i64);
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
    let ds = ctx.dataset(&p.data, opts.data_root.as_deref(), exp.seed)?;
    seed_all(exp.seed ^ 0x7072);
    let net = Net::new(
        exp.model.arch,
        ds.train.num_classes(),
        ds.train.channels,
        p.data.size,
        device,
    )?;
    let norm = Normalizer::new(p.data.normalize, &ds.train);
    let label = format!("pretrain {}", exp.model.arch.name());
    let hist = fit_with_bar(
        &net,
        &ds.train,
        None,
        &norm,
        &p.train,
        &p.data.augment,
        exp.seed,
        &label,
    )?;
    let (_, pred) = train::evaluate(&net, &ds.test, &norm);
    let acc = metrics::accuracy(&pred, &ds.test.labels);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    net.vs.save(path)?;
    progress::status(format!(
        "{label}: test accuracy {:.2}% on the trusted data after {} epochs → {}",
        100.0 * acc,
        hist.len(),
        path.display()
    ));
    Ok(path.to_path_buf())
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
    if let Some(w) = &exp.model.weights {
        let w = data::resolve(w, opts.data_root.as_deref());
        if !w.is_file() {
            return Err(Error::data(&w, "`model.weights` file not found"));
        }
        return Ok(Some(w));
    }
    let key = config::fingerprint(&(exp.model.arch, &exp.pretrain, exp.seed));
    let path = opts
        .out
        .join("pretrained")
        .join(format!("{}-{key}.safetensors", exp.model.arch.name()));
    if path.is_file() && !opts.force {
        return Ok(Some(path));
    }
    pretrain(exp, ctx, opts, &path).map(Some)
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
    let device = exp.device.device()?;
    let (train_idx, val_idx) = data::stratified_split(&ds.train, exp.data.val_fraction, exp.seed);
    let mut train_set = ds.train.subset(&train_idx);
    let val_set = ds.train.subset(&val_idx);
    // The validation split is the defender's clean hold-out; only training images are poisoned.
    let poison = match &exp.attack {
        Some(a) => Some(a.poison(&mut train_set, exp.seed ^ 0x706f_6973)?),
        None => None,
    };
    seed_all(exp.seed);
    let mut net = Net::new(
        exp.model.arch,
        ds.train.num_classes(),
        ds.train.channels,
        exp.data.size,
        device,
    )?;
    if let Some(path) = backbone {
        // Load into a model of the backbone's own head size, then copy only the features.
        let classes = head_classes(&safetensor_names(path)?).unwrap_or(ds.train.num_classes());
        let mut donor = Net::new(
            exp.model.arch,
            classes,
            ds.train.channels,
            exp.data.size,
            device,
        )?;
        donor
            .vs
            .load(path)
            .map_err(|e| Error::data(path, format!("cannot load backbone weights: {e}")))?;
        net.copy_from(&donor, "features.")?;
    }
    let frozen_fraction = net.apply_fine_tune(exp.model.fine_tune()?)?;
    let norm = Normalizer::new(exp.data.normalize, &train_set);
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
    let (test_loss, pred) = train::evaluate(&net, &ds.test, &norm);
    let clean = ClassificationReport::new(&pred, &ds.test.labels, ds.test.num_classes());
    let triggered_pred =
        probe.map(|b| train::evaluate(&net, &b.trigger.apply_all(&ds.test), &norm).1);
    Ok(Outcome {
        history,
        clean,
        test_loss,
        triggered_pred,
        frozen_fraction,
        poison,
        train_size: train_set.len(),
        val_size: val_set.len(),
    })
}

fn safetensor_names(path: &Path) -> Result<Vec<(String, Vec<i64>)>> {
    let tensors = tch::Tensor::read_safetensors(path)
        .map_err(|e| Error::data(path, format!("not a safetensors file: {e}")))?;
    Ok(tensors.into_iter().map(|(n, t)| (n, t.size())).collect())
}

/// Number of classes of a saved model: rows of its last classifier weight.
fn head_classes(names: &[(String, Vec<i64>)]) -> Option<usize> {
    names
        .iter()
        .filter(|(n, s)| n.starts_with("classifier.") && n.ends_with(".weight") && s.len() == 2)
        .max_by(|a, b| crate::models::layer_order(&a.0).cmp(&crate::models::layer_order(&b.0)))
        .map(|(_, s)| s[0] as usize)
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
            (
                k.clone(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

/// The clean baseline accuracy (and its ASR) for CAD: given, cached, or computed now.
fn baseline(
    exp: &Experiment,
    ds: &Dataset,
    backbone: Option<&Path>,
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
        && !opts.force
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
    report::write_history(&dir.join("history.csv"), &out.history)?;
    report::write_confusion(
        &dir.join("confusion_clean.csv"),
        &ds.test.classes,
        &out.clean.confusion,
    )?;
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
    Ok((out.clean.accuracy, trigger_asr))
}

/// Runs one cell and writes `<out>/<cell>/…`; reuses a finished result with the same config.
pub fn run_cell(cell: &Cell, ctx: &mut Context, opts: &RunOptions, label: &str) -> Result<Summary> {
    let exp = &cell.experiment;
    let fp = config::fingerprint(exp);
    let dir = opts.out.join(cell.id());
    let file = dir.join("summary.json");
    if !opts.force
        && let Ok(text) = std::fs::read_to_string(&file)
        && let Ok(s) = serde_json::from_str::<Summary>(&text)
        && s.fingerprint == fp
    {
        progress::status(format!(
            "{label}: finished earlier, reusing {}",
            file.display()
        ));
        return Ok(s);
    }
    let start = Instant::now();
    let ds = ctx.dataset(&exp.data, opts.data_root.as_deref(), exp.seed)?;
    if let Some(a) = &exp.attack {
        a.validate(&ds.train.classes)?;
    }
    let backbone = backbone(exp, ctx, opts)?;
    let (baseline_accuracy, baseline_asr) = match &exp.attack {
        Some(_) => {
            let (a, b) = baseline(exp, &ds, backbone.as_deref(), opts, label)?;
            (Some(a), b)
        }
        None => (None, None),
    };
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
    report::write_history(&dir.join("history.csv"), &out.history)?;
    report::write_confusion(
        &dir.join("confusion_clean.csv"),
        &ds.test.classes,
        &out.clean.confusion,
    )?;
    if let Some(p) = &out.triggered_pred {
        let m = metrics::confusion_matrix(p, &ds.test.labels, ds.test.num_classes());
        report::write_confusion(&dir.join("confusion_triggered.csv"), &ds.test.classes, &m)?;
    }
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
        attack: exp.attack.as_ref().map(|a| match a {
            crate::attacks::Poisoning::Backdoor(_) => "backdoor".to_string(),
            crate::attacks::Poisoning::LabelFlip(_) => "label_flip".to_string(),
        }),
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
        precision_macro: out.clean.precision_macro,
        recall_macro: out.clean.recall_macro,
        test_loss: out.test_loss,
        notes: ds.notes.clone(),
        config: exp.clone(),
        seed: exp.seed,
        elapsed_s: start.elapsed().as_secs_f64(),
        fingerprint: fp,
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
    let mut ctx = Context::default();
    let mut done = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, cells.len(), cell.id());
        let s = run_cell(cell, &mut ctx, opts, &label)?;
        progress::status(format!("{label}: {}", one_line(&s)));
        done.push(s);
        // Keep the tables current so an interrupted grid leaves its finished rows behind.
        write_results(&opts.out, &done, start.elapsed().as_secs_f64())?;
    }
    Ok(done)
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

fn one_line(s: &Summary) -> String {
    format!(
        "clean acc {}%, CAD {}, ASR {}%",
        pct(Some(s.clean_accuracy)),
        s.clean_accuracy_drop
            .map(|c| format!("{c:.2} pts"))
            .unwrap_or_else(|| "-".into()),
        pct(s.asr)
    )
}

const RESULT_COLUMNS: [&str; 12] = [
    "cell",
    "model",
    "fine_tune",
    "clean_accuracy",
    "baseline_accuracy",
    "clean_accuracy_drop",
    "asr",
    "asr_all",
    "asr_fraction",
    "f1_macro",
    "seed",
    "elapsed_s",
];

pub fn write_results(out: &Path, cells: &[Summary], elapsed: f64) -> Result<()> {
    let param_keys: Vec<String> = {
        let mut keys: Vec<String> = Vec::new();
        for s in cells {
            for k in s.params.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    };
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut header: Vec<String> = param_keys.clone();
    header.extend(RESULT_COLUMNS.iter().map(|s| s.to_string()));
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            let mut r: Vec<String> = param_keys
                .iter()
                .map(|k| match s.params.get(k) {
                    Some(serde_json::Value::String(v)) => v.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect();
            r.extend([
                s.cell.clone(),
                s.model.clone(),
                s.fine_tune.clone(),
                f(Some(s.clean_accuracy)),
                f(s.baseline_accuracy),
                f(s.clean_accuracy_drop),
                f(s.asr),
                f(s.asr_all),
                s.asr_fraction.clone().unwrap_or_default(),
                f(Some(s.f1_macro)),
                s.seed.to_string(),
                format!("{:.1}", s.elapsed_s),
            ]);
            r
        })
        .collect();
    report::write_csv(&out.join("results.csv"), &header, &rows)?;
    report::write_json(
        &out.join("summary.json"),
        &serde_json::json!({ "elapsed_s": elapsed, "cells": cells }),
    )
}

/// The model × strategy table printed at the end of a run.
pub fn results_table(cells: &[Summary]) -> String {
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            vec![
                s.model.clone(),
                s.fine_tune.clone(),
                pct(Some(s.clean_accuracy)),
                pct(s.baseline_accuracy),
                s.clean_accuracy_drop
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "-".into()),
                pct(s.asr),
                s.asr_fraction.clone().unwrap_or_else(|| "-".into()),
                pct(Some(s.f1_macro)),
            ]
        })
        .collect();
    report::table(
        &[
            "model",
            "strategy",
            "clean acc %",
            "baseline %",
            "CAD pts",
            "ASR %",
            "ASR hits",
            "F1 %",
        ],
        &rows,
    )
}
