//! Experiment files (TOML). Every table rejects unknown keys; `validate` rejects impossible
//! values, naming the key. A `[grid]` table expands one file into many runs (see `expand`).

use crate::attacks::Poisoning;
pub use crate::data::{DataConfig, DataSource, Normalize, SyntheticConfig};
use crate::error::{Error, Result};
use crate::models::FineTune;
pub use crate::models::{Init, ModelConfig};
pub use crate::train::{OptimizerKind, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The top-level array of paper figures a file quotes (`[[reference]]`, read by
/// `report::paper_vs_measured`): not part of any cell.
pub const REFERENCE_KEY: &str = "reference";

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
    pub evasion: Option<crate::federated::transfer::TransferConfig>,
    /// Grad-CAM inspection of the trained model on clean and triggered inputs (backdoor runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradcam: Option<crate::defenses::gradcam::GradCamConfig>,
    /// Backdoor defenses beyond aggregation: screening the training data, checking inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense: Option<crate::defenses::DefenseConfig>,
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
            DeviceChoice::Cuda => Err(Error::param(
                "device",
                "is \"cuda\" but no CUDA device is available",
            )),
        }
    }
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
                    return Err(Error::param(
                        "evasion",
                        "(attacks between clients) needs a `[federation]`",
                    ));
                }
                e.validate()?;
                if e.adapt.is_some()
                    && self
                        .federation
                        .as_ref()
                        .is_some_and(|f| f.server_images == 0)
                {
                    return Err(Error::param(
                        "evasion.adapt",
                        "needs `federation.server_images` > 0: the server adapts the model on images of its own, which no client holds",
                    ));
                }
            }
            if let Some(g) = &self.gradcam {
                g.validate()?;
            }
            if let Some(d) = &self.defense {
                d.validate()?;
                if self.federation.is_some() {
                    return Err(Error::param(
                        "defense",
                        "screens a centralized training set; federated runs do not take it yet",
                    ));
                }
                if d.input.is_some() && !matches!(self.attack, Some(Poisoning::Backdoor(_))) {
                    return Err(Error::param(
                        "defense.input",
                        "needs a backdoor `[attack]`: it is scored on triggered test images",
                    ));
                }
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
                return Err(Error::param(
                    "model.init",
                    "\"pretrained\" needs `model.weights` or a `[pretrain]` table",
                ));
            }
            if self.model.init == Init::Scratch && self.model.fine_tune()? != FineTune::Full {
                return Err(Error::param(
                    "model.fine_tune",
                    "freezing a randomly initialized backbone makes no sense; set `model.init = \"pretrained\"`",
                ));
            }
            if self.data.size < self.model.arch.min_input() {
                return Err(Error::param(
                    "data.size",
                    format!(
                        "{} is below the {} px that `{}` needs",
                        self.data.size,
                        self.model.arch.min_input(),
                        self.model.arch.name()
                    ),
                ));
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

/// The cells whose id holds every `only` label (`strategy=krum_1`, `seed=2`, …), as
/// `fedsentry run --only` selects them; an error names the file when none does.
pub fn select(cells: Vec<Cell>, only: &[String], file: &Path) -> Result<Vec<Cell>> {
    let chosen: Vec<Cell> = cells
        .into_iter()
        .filter(|c| {
            let id = c.id();
            let parts: Vec<&str> = id.split(',').collect();
            only.iter().all(|o| parts.contains(&o.as_str()))
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::Invalid(format!(
            "no cell of {} matches --only {}",
            file.display(),
            only.join(" --only ")
        )));
    }
    Ok(chosen)
}

/// One part of a grid split over several processes or machines (`--shard K/N`): cell `i` (in
/// grid order, after `--only`) belongs to shard `i mod N + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::param("shard", format!("must be K/N with 1 ≤ K ≤ N, got `{s}`"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n) = (
            k.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// The cells of this shard, in grid order.
    pub fn select(&self, cells: Vec<Cell>) -> Vec<Cell> {
        cells
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.n + 1 == self.k)
            .map(|(_, c)| c)
            .collect()
    }

    /// The folder (under the run's output) that holds this shard's own tables.
    pub fn folder(&self) -> String {
        format!("shards/{}-of-{}", self.k, self.n)
    }
}

/// Sets `federation.workers` in every federated cell (`--workers`; results do not change).
pub fn set_workers(cells: &mut [Cell], workers: usize) -> Result<()> {
    if workers == 0 {
        return Err(Error::param("workers", "must be at least 1"));
    }
    for c in cells {
        if let Some(f) = &mut c.experiment.federation {
            f.workers = workers;
        }
    }
    Ok(())
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
        t.remove(REFERENCE_KEY);
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

    #[test]
    fn shards_split_the_grid_round_robin() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { k: 2, n: 3 });
        assert_eq!(s.folder(), "shards/2-of-3");
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("shard") && e.contains(bad), "{e}");
        }
        let text = format!("{BASE}\n[grid]\n\"seed\" = [1, 2, 3, 4, 5]\n");
        let cells = parse(&text, "g.toml").unwrap();
        let seeds: Vec<u64> = s.select(cells).iter().map(|c| c.experiment.seed).collect();
        assert_eq!(seeds, [2, 5]);
    }
    use crate::models::Arch;

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
