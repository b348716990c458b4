//! `[defense]` on a centralized cell, after the (poisoned) model is trained:
//! - data: the detector reads the trained model's representations of its training images,
//!   flags samples (scored against the known poisoned ones: TPR, FPR, AUROC), and the model is
//!   trained again from the same start on the samples kept (clean accuracy, ASR after);
//! - input: STRIP on test images, clean and triggered, with the threshold set on the clean
//!   validation split (the defender's own held-out data).

use super::*;
use crate::defenses::fine_pruning::FinePruning;
use crate::defenses::strip::{Strip, StripReport};
use crate::defenses::{
    DataDefense, DataDefenseReport, DefenseConfig, DefenseSummary, InputDefense, ModelDefense,
    ModelDefenseReport,
};

pub(super) fn run(
    exp: &Experiment,
    ds: &Arc<Dataset>,
    backbone: Option<&Path>,
    out: &Outcome,
    probe: Option<&Backdoor>,
    cfg: &DefenseConfig,
    label: &str,
) -> Result<DefenseSummary> {
    let (train_set, val_set) = out
        .sets
        .as_ref()
        .ok_or_else(|| Error::param("defense", "needs a centralized run"))?;
    let data = match &cfg.data {
        Some(d) => Some(screen(exp, ds, backbone, out, train_set, probe, d, label)?),
        None => None,
    };
    let input = match (&cfg.input, probe) {
        (Some(InputDefense::Strip(s)), Some(b)) => Some(strip(exp, ds, out, val_set, b, s, label)),
        _ => None,
    };
    let model = match &cfg.model {
        Some(ModelDefense::FinePruning(f)) => Some(fine_prune(
            exp, ds, backbone, out, val_set, probe, f, label,
        )?),
        None => None,
    };
    Ok(DefenseSummary { data, input, model })
}

/// Clean accuracy and ASR of a model on the test set.
fn score(
    exp: &Experiment,
    ds: &Dataset,
    net: &Net,
    norm: &Normalizer,
    probe: Option<&Backdoor>,
) -> Result<(f64, Option<f64>)> {
    let (_, pred) = train::evaluate(net, &ds.test, norm);
    let asr = match probe {
        Some(b) => {
            let tp = train::evaluate(net, &b.trigger.apply_all(&ds.test), norm).1;
            Some(asr_of(b, ds, &tp, exp.metrics.asr_exclude_target)?.rate())
        }
        None => None,
    };
    Ok((metrics::accuracy(&pred, &ds.test.labels), asr))
}

/// Fine-Pruning on a copy of the trained model, with the clean validation split as the
/// defender's data (for choosing how far to prune, and for fine-tuning).
#[allow(clippy::too_many_arguments)]
fn fine_prune(
    exp: &Experiment,
    ds: &Arc<Dataset>,
    backbone: Option<&Path>,
    out: &Outcome,
    clean: &ImageSet,
    probe: Option<&Backdoor>,
    f: &FinePruning,
    label: &str,
) -> Result<ModelDefenseReport> {
    let start = Instant::now();
    let (mut net, _) = initial_net(exp, ds, backbone)?;
    crate::models::params::load(&net, &crate::models::params::flatten(&out.net))?;
    let p = f.prune(&mut net, clean, &out.norm);
    let pruned = p.keep.iter().filter(|k| !**k).count() as f64 / p.keep.len().max(1) as f64;
    let (pruned_clean_accuracy, pruned_asr) = score(exp, ds, &net, &out.norm, probe)?;
    let tune = crate::train::TrainConfig {
        epochs: f.epochs,
        lr: f.lr.unwrap_or(exp.train.lr / 10.0),
        ..exp.train.clone()
    };
    if f.epochs > 0 {
        fit_with_bar(
            &net,
            clean,
            None,
            &out.norm,
            &tune,
            &exp.data.augment,
            exp.seed,
            &format!("{label} · fine-tuning the pruned model"),
        )?;
    }
    let (clean_accuracy, asr) = score(exp, ds, &net, &out.norm, probe)?;
    progress::status(format!(
        "{label}: fine-pruning pruned {:.0}% of the last layer's channels (clean validation accuracy {:.2}% → {:.2}%): test accuracy {:.2}%, ASR {}; after fine-tuning {:.2}%, ASR {} ({:.1}s)",
        100.0 * pruned,
        100.0 * p.accuracy_before,
        100.0 * p.accuracy_after,
        100.0 * pruned_clean_accuracy,
        pct(pruned_asr),
        100.0 * clean_accuracy,
        pct(asr),
        start.elapsed().as_secs_f64()
    ));
    Ok(ModelDefenseReport {
        method: "fine_pruning".into(),
        pruned,
        pruned_clean_accuracy,
        pruned_asr,
        clean_accuracy,
        asr,
    })
}

#[allow(clippy::too_many_arguments)]
fn screen(
    exp: &Experiment,
    ds: &Arc<Dataset>,
    backbone: Option<&Path>,
    out: &Outcome,
    train_set: &ImageSet,
    probe: Option<&Backdoor>,
    d: &DataDefense,
    label: &str,
) -> Result<DataDefenseReport> {
    let start = Instant::now();
    let features = crate::defenses::representations(&out.net, train_set, &out.norm);
    let detection = d.detect(&features, &train_set.labels, exp.seed);
    let poisoned = out
        .poison
        .as_ref()
        .map(|p| p.indices.clone())
        .unwrap_or_default();
    let (tpr, fpr) = detection.rates(&poisoned);
    let auroc = detection.auroc(&poisoned);
    let kept = detection.kept();
    progress::status(format!(
        "{label}: {} flags {} of {} training images (TPR {}, FPR {}) in {:.1}s; training again on the {} kept",
        d.name(),
        train_set.len() - kept.len(),
        train_set.len(),
        pct(tpr),
        pct(fpr),
        start.elapsed().as_secs_f64(),
        kept.len()
    ));
    // The same start and settings as the screened model, on the kept samples only.
    let (net, _) = initial_net(exp, ds, backbone)?;
    let kept_set = train_set.subset(&kept);
    fit_with_bar(
        &net,
        &kept_set,
        None,
        &out.norm,
        &exp.train,
        &exp.data.augment,
        exp.seed,
        &format!("{label} · retrained after {}", d.name()),
    )?;
    let (retrained_clean_accuracy, retrained_asr) = score(exp, ds, &net, &out.norm, probe)?;
    Ok(DataDefenseReport {
        method: d.name().into(),
        flagged: train_set.len() - kept.len(),
        of: train_set.len(),
        tpr,
        fpr,
        auroc,
        classes: detection.classes,
        retrained_clean_accuracy,
        retrained_asr,
    })
}

fn strip(
    exp: &Experiment,
    ds: &Dataset,
    out: &Outcome,
    val_set: &ImageSet,
    b: &Backdoor,
    s: &Strip,
    label: &str,
) -> StripReport {
    let start = Instant::now();
    let test = if s.samples > 0 && s.samples < ds.test.len() {
        let mut idx = rand::seq::index::sample(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(stream_seed(exp, 0)),
            ds.test.len(),
            s.samples,
        )
        .into_vec();
        idx.sort_unstable();
        ds.test.subset(&idx)
    } else {
        ds.test.clone()
    };
    let device = out.net.vs.device();
    let model = crate::attacks::evasion::logits_of(&out.net, &out.norm, ds.train.channels);
    let (held, clean, triggered) = (
        val_set.to_tensor().to_device(device),
        test.to_tensor().to_device(device),
        b.trigger.apply_all(&test).to_tensor().to_device(device),
    );
    // The held-out set's own entropies (each blended with images of the same set) set the
    // threshold; test inputs, clean and triggered, draw the same blends.
    let h_held = s.entropies(&*model, &held, &held, stream_seed(exp, 1));
    let h_clean = s.entropies(&*model, &clean, &held, stream_seed(exp, 2));
    let h_trig = s.entropies(&*model, &triggered, &held, stream_seed(exp, 2));
    let r = s.report(&h_held, &h_clean, &h_trig);
    progress::status(format!(
        "{label}: STRIP on {} test images: AUROC {}, FRR {:.2}%, FAR {:.2}% (entropy clean {:.3}, triggered {:.3} bits) in {:.1}s",
        test.len(),
        r.auroc.map_or("-".into(), |a| format!("{a:.3}")),
        100.0 * r.frr,
        100.0 * r.far,
        r.mean_clean_entropy,
        r.mean_triggered_entropy,
        start.elapsed().as_secs_f64()
    ));
    r
}

fn stream_seed(exp: &Experiment, i: u64) -> u64 {
    crate::seed::mix(exp.seed, crate::seed::stream::STRIP, i)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
}
