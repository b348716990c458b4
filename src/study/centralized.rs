//! A centralized cell: one model trained on the (poisoned) training split and evaluated.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn fit_with_bar(
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

/// Trains one model (poisoned when `exp.attack` is set) and evaluates it on the clean test set
/// and, when `probe` is given, on the fully triggered one.
pub(super) fn train_and_evaluate(
    exp: &Experiment,
    ds: &Arc<Dataset>,
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
        sets: Some((train_set, val_set)),
    })
}
