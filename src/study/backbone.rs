//! The trusted backbone behind `model.init = "pretrained"`: trained on trusted data (never
//! triggered, optionally without the experiment's own images), cached by configuration, and
//! the first model of a cell built from it.

use super::*;

pub(super) fn pretrain_seed(exp: &Experiment) -> u64 {
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
    let net = crate::models::with_torch_rng(Some(seed ^ crate::seed::stream::PRETRAIN), || {
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
pub(super) fn trusted_without_experiment(
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
        return Err(Error::param(
            "pretrain.exclude_experiment_images",
            "leaves no trusted training image: every one is also in the experiment's training \
             split; give `[pretrain.data]` other images",
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

/// The backbone file for `exp`, pretraining (once, cached by configuration) when needed.
pub(super) fn backbone(
    exp: &Experiment,
    ctx: &mut Context,
    opts: &RunOptions,
) -> Result<Option<PathBuf>> {
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
pub(super) fn initial_net(
    exp: &Experiment,
    ds: &Dataset,
    backbone: Option<&Path>,
) -> Result<(Net, f64)> {
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
