//! Experiment files (TOML). Every table rejects unknown keys; `validate` rejects impossible
//! values, naming the key. A `[grid]` table expands one file into many runs (see `expand`).

use crate::attacks::Poisoning;
use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::models::{Arch, FineTune};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds model initialization, shuffling, splits and poisoning.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceChoice,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// How the trusted backbone for `init = "pretrained"` is made.
    #[serde(default)]
    pub pretrain: Option<PretrainConfig>,
    #[serde(default)]
    pub attack: Option<Poisoning>,
    /// Train as a simulated federation instead of centrally.
    #[serde(default)]
    pub federation: Option<crate::federated::FederationConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// A previous clean run's `summary.json` to compute CAD against instead of running one.
    #[serde(default)]
    pub baseline: Option<PathBuf>,
    /// Test-time evasion across clients after federated training (`[evasion]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evasion: Option<crate::evasion::transfer::TransferConfig>,
    /// Grad-CAM inspection of the trained model on clean and triggered inputs (backdoor runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradcam: Option<crate::gradcam::GradCamConfig>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// CUDA when present, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn device(&self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(Error::Invalid(
                "`device = \"cuda\"` but no CUDA device is available".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: DataSource,
    /// Images are resized to size×size.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Stored channels: 1 (grayscale) or 3 (RGB).
    #[serde(default = "one")]
    pub channels: usize,
    #[serde(default)]
    pub normalize: Normalize,
    /// Threshold + largest-component crop before resizing (files only).
    #[serde(default)]
    pub roi_crop: bool,
    /// Remove test images with a byte- or pixel-identical twin in train.
    #[serde(default = "yes")]
    pub drop_test_duplicates: bool,
    /// Share of the training split held out for validation (stratified).
    #[serde(default = "default_val")]
    pub val_fraction: f64,
    /// Cap on training images per class (0 = all), drawn with the data seed.
    #[serde(default)]
    pub max_train_per_class: usize,
    #[serde(default)]
    pub max_test_per_class: usize,
    #[serde(default)]
    pub synthetic: SyntheticConfig,
    /// Image folder root (relative paths resolve against `--data-root`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_train_split")]
    pub train_split: String,
    #[serde(default = "default_test_split")]
    pub test_split: String,
    /// Class names in label order (npz); folders use their sub-folder names.
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub augment: AugmentConfig,
    /// The real dataset to use instead when `--data-root` is given (`[data.real]`), so one file
    /// runs on the synthetic default anywhere and on real data where it is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<Box<DataConfig>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in MRI phantom generator.
    Synthetic,
    /// `<path>/<split>/<class>/*.{jpg,png}`.
    Folder,
    /// A MedMNIST-style `.npz` at `path`.
    Npz,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Mean and std of the training split, per channel.
    #[default]
    TrainStats,
    /// ImageNet mean/std (RGB), for ImageNet-pretrained backbones.
    Imagenet,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    pub seed: u64,
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub lesion_contrast: f32,
    pub noise: f32,
    /// A subset of the phantom classes, in label order (empty: all four).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        let d = crate::data::synthetic::PhantomConfig::default();
        SyntheticConfig {
            seed: d.seed,
            train_per_class: d.train_per_class,
            test_per_class: d.test_per_class,
            lesion_contrast: d.lesion_contrast,
            noise: d.noise,
            classes: d.classes,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// "full", "classifier_only" or "partial" (with `freeze_percent`).
    #[serde(default = "default_fine_tune")]
    pub fine_tune: String,
    #[serde(default)]
    pub freeze_percent: Option<f64>,
    #[serde(default)]
    pub init: Init,
    /// Backbone weights file to start from (safetensors, or a PyTorch `.pth`/`.pt` state
    /// dict); made by `[pretrain]` when absent. `{arch}` in the path stands for the model's
    /// name, so one line serves a grid over models (`imagenet/{arch}.pth`).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// TorchScript module file, for `arch = "torchscript"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<PathBuf>,
    /// Name of the TorchScript module's classifier layer (e.g. "fc"): what classifier-only
    /// fine-tuning trains and what imported weights leave re-initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Random initialization.
    #[default]
    Scratch,
    /// Feature extractor from a trusted pretrained backbone.
    Pretrained,
}

impl ModelConfig {
    /// `weights` with `{arch}` replaced by the model's name.
    pub fn weights_path(&self) -> Option<PathBuf> {
        self.weights
            .as_ref()
            .map(|w| PathBuf::from(w.to_string_lossy().replace("{arch}", self.arch.name())))
    }

    /// What the model is built from (validated: a script comes with its head).
    pub fn recipe(&self) -> crate::models::Recipe {
        crate::models::Recipe {
            arch: self.arch,
            script: self
                .script
                .clone()
                .map(|p| (p, self.head.clone().unwrap_or_default())),
        }
    }

    fn validate_script(&self) -> Result<()> {
        let is_script = self.arch == Arch::TorchScript;
        match (is_script, &self.script, &self.head) {
            (true, Some(_), Some(h)) if !h.is_empty() => Ok(()),
            (true, None, _) => Err(Error::Invalid(
                "`model.arch = \"torchscript\"` needs `model.script` (the module file)".into(),
            )),
            (true, Some(_), _) => Err(Error::Invalid(
                "`model.script` needs `model.head`, the name of its classifier layer".into(),
            )),
            (false, None, None) => Ok(()),
            (false, _, _) => Err(Error::Invalid(format!(
                "`model.script` and `model.head` apply to `arch = \"torchscript\"`, not `{}`",
                self.arch.name()
            ))),
        }
    }

    pub fn fine_tune(&self) -> Result<FineTune> {
        match (self.fine_tune.as_str(), self.freeze_percent) {
            ("full", None) => Ok(FineTune::Full),
            ("classifier_only", None) => Ok(FineTune::ClassifierOnly),
            ("partial", Some(p)) if (0.0..=100.0).contains(&p) => Ok(FineTune::PartialFreeze(p)),
            ("partial", Some(p)) => Err(Error::Invalid(format!(
                "`model.freeze_percent` must be within 0..=100, got {p}"
            ))),
            ("partial", None) => Err(Error::Invalid(
                "`model.fine_tune = \"partial\"` needs `model.freeze_percent`".into(),
            )),
            ("full" | "classifier_only", Some(_)) => Err(Error::Invalid(
                "`model.freeze_percent` only applies to `fine_tune = \"partial\"`".into(),
            )),
            (other, _) => Err(Error::Invalid(format!(
                "`model.fine_tune` must be \"full\", \"classifier_only\" or \"partial\", got \"{other}\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub optimizer: OptimizerKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Trusted data the backbone learns from; it never contains a trigger.
    pub data: DataConfig,
    pub train: TrainConfig,
    /// Seed of the backbone's training (default: the experiment's). Fix it so that the repetition
    /// seeds of a grid fine-tune one shared backbone, as repetitions share ImageNet weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Leave out every image of the experiment's own training split (same file, or identical
    /// pixels after preprocessing) before `pretrain.data`'s per-class cap, so a backbone can learn
    /// from the rest of the same real dataset without seeing the images it is fine-tuned (and
    /// poisoned) on later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude_experiment_images: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// ASR leaves out inputs whose true class is the target (thesis eq. 4.1).
    pub asr_exclude_target: bool,
    /// Clean-accuracy check: flag the model when its accuracy on the trusted clean test set is
    /// more than this many points below the clean baseline's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_check_threshold: Option<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            asr_exclude_target: true,
            clean_check_threshold: None,
        }
    }
}

fn default_size() -> usize {
    64
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_val() -> f64 {
    0.1
}
fn default_train_split() -> String {
    "Training".into()
}
fn default_test_split() -> String {
    "Testing".into()
}
fn default_fine_tune() -> String {
    "full".into()
}
fn default_lr() -> f64 {
    1e-3
}
fn default_momentum() -> f64 {
    0.9
}
fn default_batch() -> usize {
    32
}

fn invalid(file: &str, e: Error) -> Error {
    match e {
        Error::Param { key, reason } => Error::config(file, key, reason),
        // Older messages name their key first, in backticks.
        Error::Invalid(msg) => {
            let key = msg.split('`').nth(1).unwrap_or("").to_string();
            Error::config(file, key, msg)
        }
        other => other,
    }
}

impl DataConfig {
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |k: &str, why: String| Err(Error::param(format!("{prefix}.{k}"), why));
        if self.size < 4 || self.size > 1024 {
            return bad(
                "size",
                format!("must be within 4..=1024, got {}", self.size),
            );
        }
        if self.channels != 1 && self.channels != 3 {
            return bad("channels", format!("must be 1 or 3, got {}", self.channels));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be within 0..0.9, got {}", self.val_fraction),
            );
        }
        match self.source {
            DataSource::Synthetic => {
                if self.synthetic.train_per_class == 0 || self.synthetic.test_per_class == 0 {
                    return bad(
                        "synthetic.train_per_class",
                        "and `test_per_class` must be positive".into(),
                    );
                }
                if self.channels != 1 {
                    return bad(
                        "channels",
                        "must be 1 for synthetic data (the model expands gray to RGB)".into(),
                    );
                }
            }
            DataSource::Folder | DataSource::Npz if self.path.is_none() => {
                return bad(
                    "path",
                    format!("is required for source = \"{:?}\"", self.source).to_lowercase(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

impl TrainConfig {
    /// Adam with the experiment file's defaults (lr 1e-3, no weight decay).
    pub fn adam(epochs: usize, batch_size: usize) -> TrainConfig {
        TrainConfig {
            optimizer: OptimizerKind::Adam,
            lr: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            epochs,
            batch_size,
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |k: &str, why: String| Err(Error::param(format!("{prefix}.{k}"), why));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        if self.weight_decay < 0.0 || !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "momentum",
                "must be within 0..1 and weight_decay ≥ 0".into(),
            );
        }
        Ok(())
    }
}

impl Experiment {
    /// Checks every value that can be checked without data.
    pub fn validate(&self, file: &str) -> Result<()> {
        let check = || -> Result<()> {
            self.data.validate("data")?;
            if let Some(r) = &self.data.real {
                r.validate("data.real")?;
            }
            if let Some(e) = &self.evasion {
                if self.federation.is_none() {
                    return Err(Error::Invalid(
                        "`[evasion]` (attacks between clients) needs a `[federation]`".into(),
                    ));
                }
                e.validate()?;
                if e.adapt.is_some()
                    && self
                        .federation
                        .as_ref()
                        .is_some_and(|f| f.server_images == 0)
                {
                    return Err(Error::Invalid(
                        "`evasion.adapt` needs `federation.server_images` > 0: the server adapts the model on images of its own, which no client holds".into(),
                    ));
                }
            }
            if let Some(g) = &self.gradcam {
                g.validate()?;
            }
            self.train.validate("train")?;
            self.model.fine_tune()?;
            self.model.validate_script()?;
            if let Some(p) = &self.pretrain {
                p.data.validate("pretrain.data")?;
                p.train.validate("pretrain.train")?;
            }
            let needs_backbone =
                self.model.init == Init::Pretrained && self.model.weights.is_none();
            if needs_backbone && self.pretrain.is_none() {
                return Err(Error::Invalid(
                    "`model.init = \"pretrained\"` needs `model.weights` or a `[pretrain]` table"
                        .into(),
                ));
            }
            if self.model.init == Init::Scratch && self.model.fine_tune()? != FineTune::Full {
                return Err(Error::Invalid(
                    "`model.fine_tune`: freezing a randomly initialized backbone makes no sense; set `model.init = \"pretrained\"`"
                        .into(),
                ));
            }
            if self.data.size < self.model.arch.min_input() {
                return Err(Error::Invalid(format!(
                    "`data.size` {} is below the {} px that `{}` needs",
                    self.data.size,
                    self.model.arch.min_input(),
                    self.model.arch.name()
                )));
            }
            if let Some(Poisoning::Backdoor(b)) = &self.attack {
                b.trigger.validate(self.data.size, self.data.size)?;
                crate::attacks::check_rate(b.rate, "attack.rate")?;
            }
            if let Some(Poisoning::LabelFlip(l)) = &self.attack {
                crate::attacks::check_rate(l.rate, "attack.rate")?;
            }
            if let Some(f) = &self.federation {
                f.validate(self.attack.is_some())?;
            }
            Ok(())
        };
        check().map_err(|e| invalid(file, e))
    }

    /// The same experiment without its attack (and, federated, without malicious clients):
    /// the clean baseline of CAD.
    pub fn clean(&self) -> Experiment {
        let federation = self.federation.clone().map(|mut f| {
            f.malicious = None;
            f
        });
        Experiment {
            attack: None,
            baseline: None,
            federation,
            ..self.clone()
        }
    }
}

/// One run of a grid: its experiment and the values its grid keys took.
#[derive(Debug, Clone)]
pub struct Cell {
    pub experiment: Experiment,
    pub params: Vec<(String, toml::Value)>,
}

impl Cell {
    /// The cell as it runs: `[data.real]` replaces `[data]` when a data root is given.
    pub fn resolved(&self, data_root: Option<&Path>) -> Cell {
        let mut c = self.clone();
        if data_root.is_some()
            && let Some(real) = c.experiment.data.real.take()
        {
            c.experiment.data = *real;
        }
        c
    }

    /// Folder name built from the grid values, e.g. `arch=mobilenet_v2,fine_tune=full`.
    pub fn id(&self) -> String {
        if self.params.is_empty() {
            return "run".into();
        }
        self.params
            .iter()
            .map(|(k, v)| {
                let short = k.rsplit('.').next().unwrap_or(k);
                format!("{short}={}", value_label(v))
            })
            .collect::<Vec<_>>()
            .join(",")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "=,._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// A grid value as a short label: strings bare, tables as their values joined by `_`
/// (`{ kind = "dirichlet", alpha = 1.0 }` → `dirichlet_1.0`), arrays joined by `+`.
pub fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Table(t) => t.values().map(value_label).collect::<Vec<_>>().join("_"),
        toml::Value::Array(a) => a.iter().map(value_label).collect::<Vec<_>>().join("+"),
        other => other.to_string(),
    }
}

fn set_dotted(root: &mut toml::Value, key: &str, value: toml::Value, file: &str) -> Result<()> {
    let mut cur = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = cur.as_table_mut().ok_or_else(|| {
            Error::config(
                file,
                key,
                "grid key goes through a value that is not a table",
            )
        })?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        cur = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

/// Parses an experiment file; a `[grid]` table of `"dotted.key" = [values…]` expands into the
/// cartesian product of its lists (in file order, last key varying fastest).
pub fn load(path: &Path) -> Result<Vec<Cell>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, file: &str) -> Result<Vec<Cell>> {
    let mut root: toml::Value = toml::from_str(text)
        .map_err(|e| Error::config(file, "", format!("not valid TOML: {e}")))?;
    let grid = root.as_table_mut().and_then(|t| t.remove("grid"));
    // The paper's numbers (`[[reference]]`) belong to the sweep, not to a cell: they change no
    // result and no cache key (read by `paper_vs_measured::parse`).
    if let Some(t) = root.as_table_mut() {
        t.remove(crate::paper_vs_measured::KEY);
    }
    let axes: Vec<(String, Vec<toml::Value>)> = match grid {
        None => Vec::new(),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::Array(a) if !a.is_empty() => Ok((k, a)),
                _ => Err(Error::config(
                    file,
                    format!("grid.{k}"),
                    "must be a non-empty list of values",
                )),
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(Error::config(
                file,
                "grid",
                "must be a table of `\"key\" = [values]`",
            ));
        }
    };
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (k, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|params| {
            let mut v = root.clone();
            for (k, val) in &params {
                set_dotted(&mut v, k, val.clone(), file)?;
            }
            let experiment: Experiment = Experiment::deserialize(v).map_err(|e| {
                let msg = e.to_string();
                let key = msg.split('`').nth(1).unwrap_or("").to_string();
                Error::config(file, key, msg.trim().to_string())
            })?;
            experiment.validate(file)?;
            Ok(Cell { experiment, params })
        })
        .collect()
}

/// A stable short hash of any serializable value (cache keys for baselines and backbones).
pub fn fingerprint<T: Serialize>(value: &T) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_string(value).expect("config serializes");
    // The CPU kernels decide the float results: a result computed under other kernels is not
    // reused (crate::numerics).
    let json = format!("{json}\n{}", crate::numerics::current().key());
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
[data]
source = "synthetic"
size = 32
[model]
arch = "small_cnn"
[train]
epochs = 1
"#;

    #[test]
    fn grid_expands_in_order() {
        let text = format!(
            "{BASE}\n[grid]\n\"model.arch\" = [\"small_cnn\", \"darzi_cnn\"]\n\"train.lr\" = [0.1, 0.01, 0.001]\n"
        );
        let cells = parse(&text, "x.toml").unwrap();
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[1].experiment.train.lr, 0.01);
        assert_eq!(cells[3].experiment.model.arch, Arch::DarziCnn);
        assert_eq!(cells[1].id(), "arch=small_cnn,lr=0.01");
    }

    #[test]
    fn weights_path_names_each_model_of_a_grid() {
        let text = format!("{BASE}\n[grid]\n\"model.arch\" = [\"vgg16\", \"mobilenet_v2\"]\n")
            .replace(
                "arch = \"small_cnn\"",
                "arch = \"small_cnn\"\nweights = \"imagenet/{arch}.pth\"",
            );
        let cells = parse(&text, "x.toml").unwrap();
        let paths: Vec<PathBuf> = cells
            .iter()
            .map(|c| c.experiment.model.weights_path().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("imagenet/vgg16.pth"),
                PathBuf::from("imagenet/mobilenet_v2.pth")
            ]
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = BASE.replace("epochs = 1", "epochs = 1\nepochz = 3");
        let err = parse(&text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("epochz"), "{err}");
        let text = BASE.replace("epochs = 1", "epochs = 0");
        let err = parse(&text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("train.epochs"), "{err}");
        let text =
            format!("{BASE}\n[attack]\nkind = \"backdoor\"\ntarget = \"notumor\"\nrate = 1.5\n");
        let err = parse(&text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("attack.rate"), "{err}");
        let text = format!(
            "{BASE}\n[attack]\nkind = \"backdoor\"\ntarget = \"notumor\"\nrate = 0.1\n[attack.trigger]\nsize = 4\ncolour = 3\n"
        );
        let err = parse(&text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
