//! In-memory image sets and the loaders that fill them.
//!
//! Pixels live in one contiguous `Vec<f32>` in NCHW order with values in [0, 1]; poisoning and
//! preprocessing work on that plain buffer, and training turns index batches into tensors.

pub mod augment;
pub mod config;
pub mod duplicates;
pub mod fetch;
pub mod folder;
pub mod inspect;
pub mod medmnist;
pub mod normalize;
pub mod npz;
pub mod preprocess;
pub mod roi;
pub mod synthetic;

pub use config::{DataConfig, DataSource, Normalize, SyntheticConfig};

use crate::error::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// N·C·H·W values in [0, 1].
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
    /// Where each image came from (file name or generator id), for reports.
    pub sources: Vec<String>,
}

impl ImageSet {
    pub fn empty(channels: usize, height: usize, width: usize, classes: Vec<String>) -> Self {
        ImageSet {
            channels,
            height,
            width,
            pixels: Vec::new(),
            labels: Vec::new(),
            classes,
            sources: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    pub fn image_mut(&mut self, i: usize) -> &mut [f32] {
        let n = self.image_len();
        &mut self.pixels[i * n..(i + 1) * n]
    }

    pub fn push(&mut self, pixels: &[f32], label: i64, source: String) {
        debug_assert_eq!(pixels.len(), self.image_len());
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
        self.sources.push(source);
    }

    /// A copy holding the given images in the given order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut out = ImageSet::empty(self.channels, self.height, self.width, self.classes.clone());
        out.pixels.reserve(indices.len() * self.image_len());
        for &i in indices {
            out.push(self.image(i), self.labels[i], self.sources[i].clone());
        }
        out
    }

    /// This set followed by `other` (same image shape and classes).
    pub fn concat(&self, other: &ImageSet) -> ImageSet {
        debug_assert_eq!(self.image_len(), other.image_len());
        let mut out = self.clone();
        out.pixels.extend_from_slice(&other.pixels);
        out.labels.extend_from_slice(&other.labels);
        out.sources.extend(other.sources.iter().cloned());
        out
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// All images as one (N, C, H, W) float tensor on the CPU.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.pixels).view([
            self.len() as i64,
            self.channels as i64,
            self.height as i64,
            self.width as i64,
        ])
    }

    pub fn labels_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.labels).to_kind(Kind::Int64)
    }

    /// Per-channel mean and standard deviation over every pixel.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let hw = self.height * self.width;
        let mut mean = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for i in 0..self.len() {
            let img = self.image(i);
            for c in 0..self.channels {
                for &v in &img[c * hw..(c + 1) * hw] {
                    mean[c] += v as f64;
                    sq[c] += (v as f64) * (v as f64);
                }
            }
        }
        let n = (self.len() * hw).max(1) as f64;
        let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / n - m * m).max(0.0).sqrt()).max(1e-6) as f32)
            .collect();
        (mean.iter().map(|&m| m as f32).collect(), std)
    }

    /// Checks that labels are in range and buffers agree in length.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.pixels.len() != self.len() * self.image_len() || self.sources.len() != self.len() {
            return Err(Error::Invalid(format!("{what}: inconsistent image buffer")));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|&&l| l < 0 || l as usize >= self.num_classes())
        {
            return Err(Error::Invalid(format!(
                "{what}: label {l} outside 0..{} classes",
                self.num_classes()
            )));
        }
        Ok(())
    }
}

/// Train and test images of one task (validation is carved out of train by the trainer).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub train: ImageSet,
    pub test: ImageSet,
    /// Notes gathered while loading (duplicates found, files skipped), for the report.
    pub notes: Vec<String>,
}

/// Deterministic stratified split of `0..set.len()` into (train, validation) index lists.
pub fn stratified_split(set: &ImageSet, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut val = Vec::new();
    for c in 0..set.num_classes() {
        let mut idx: Vec<usize> = (0..set.len())
            .filter(|&i| set.labels[i] as usize == c)
            .collect();
        idx.shuffle(&mut rng);
        let n_val = ((idx.len() as f64) * val_fraction).round() as usize;
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Resolves a data path: absolute as given, else under `data_root` when given.
pub fn resolve(path: &std::path::Path, data_root: Option<&std::path::Path>) -> std::path::PathBuf {
    match data_root {
        Some(root) if path.is_relative() => root.join(path),
        _ => path.to_path_buf(),
    }
}

/// At most `cap` images per class (0: all), drawn with `seed`.
pub fn cap_per_class(set: &ImageSet, cap: usize, seed: u64) -> ImageSet {
    use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
    if cap == 0 || set.class_counts().iter().all(|&c| c <= cap) {
        return set.clone();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keep = Vec::new();
    for c in 0..set.num_classes() {
        let mut idx: Vec<usize> = (0..set.len())
            .filter(|&i| set.labels[i] as usize == c)
            .collect();
        idx.shuffle(&mut rng);
        keep.extend_from_slice(&idx[..idx.len().min(cap)]);
    }
    keep.sort_unstable();
    set.subset(&keep)
}

/// Builds the dataset an experiment asks for (`seed` draws per-class caps).
pub fn load(
    cfg: &crate::data::DataConfig,
    data_root: Option<&std::path::Path>,
    seed: u64,
) -> Result<Dataset> {
    use crate::data::DataSource;
    let prep = preprocess::Preprocess {
        size: cfg.size,
        channels: cfg.channels,
        roi: cfg.roi_crop.then(roi::RoiConfig::default),
    };
    let mut ds = match cfg.source {
        DataSource::Synthetic => {
            let s = &cfg.synthetic;
            if let Some(bad) = s
                .classes
                .iter()
                .find(|c| !synthetic::CLASSES.contains(&c.as_str()))
            {
                return Err(Error::param(
                    "data.synthetic.classes",
                    format!(
                        "unknown class `{bad}` (the phantoms have {})",
                        synthetic::CLASSES.join(", ")
                    ),
                ));
            }
            if s.classes.len() == 1 {
                return Err(Error::param(
                    "data.synthetic.classes",
                    "needs at least two classes",
                ));
            }
            synthetic::generate(&synthetic::PhantomConfig {
                seed: s.seed,
                size: cfg.size,
                train_per_class: s.train_per_class,
                test_per_class: s.test_per_class,
                lesion_contrast: s.lesion_contrast,
                noise: s.noise,
                classes: s.classes.clone(),
            })
        }
        DataSource::Folder => {
            let root = resolve(cfg.path.as_deref().expect("validated"), data_root);
            let classes = if cfg.classes.is_empty() {
                folder::class_names(&root.join(&cfg.train_split))?
            } else {
                cfg.classes.clone()
            };
            let (train, train_hash) = folder::load_split(&root, &cfg.train_split, &classes, &prep)?;
            let (test, test_hash) = folder::load_split(&root, &cfg.test_split, &classes, &prep)?;
            let dups = duplicates::find(&train, &test, &train_hash, &test_hash);
            let mut notes = vec![format!(
                "{} test images are byte-identical and {} pixel-identical (after preprocessing) to training images",
                dups.byte_identical.len(),
                dups.pixel_identical.len()
            )];
            let leaked = dups.leaked();
            let test = if cfg.drop_test_duplicates && !leaked.is_empty() {
                notes.push(format!(
                    "dropped {} leaked test images (data.drop_test_duplicates = true)",
                    leaked.len()
                ));
                duplicates::drop_indices(&test, &leaked)
            } else {
                test
            };
            Dataset {
                name: root.display().to_string(),
                train,
                test,
                notes,
            }
        }
        DataSource::Npz => {
            let path = resolve(cfg.path.as_deref().expect("validated"), data_root);
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let classes = if cfg.classes.is_empty() {
                npz::known_classes(stem).ok_or_else(|| {
                    Error::data(
                        &path,
                        "unknown MedMNIST flag: name the classes with `data.classes`",
                    )
                })?
            } else {
                cfg.classes.clone()
            };
            let train = npz::load_split(&path, "train", &classes, &prep)?;
            let test = npz::load_split(&path, "test", &classes, &prep)?;
            let dups = duplicates::find(&train, &test, &[], &[]);
            let mut notes = vec![format!(
                "{} test images pixel-identical to training images",
                dups.pixel_identical.len()
            )];
            let test = if cfg.drop_test_duplicates && !dups.pixel_identical.is_empty() {
                notes.push(format!(
                    "dropped {} leaked test images",
                    dups.pixel_identical.len()
                ));
                duplicates::drop_indices(&test, &dups.pixel_identical)
            } else {
                test
            };
            Dataset {
                name: path.display().to_string(),
                train,
                test,
                notes,
            }
        }
    };
    ds.train = cap_per_class(&ds.train, cfg.max_train_per_class, seed);
    ds.test = cap_per_class(
        &ds.test,
        cfg.max_test_per_class,
        seed ^ crate::seed::stream::TEST_CAP,
    );
    ds.train.validate("training split")?;
    ds.test.validate("test split")?;
    Ok(ds)
}
