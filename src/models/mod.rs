//! Classifiers, each split into a feature extractor (`features.*`) and a classifier head
//! (`classifier.*`) with torchvision's parameter names, so weights and freezing rules carry over.
//!
//! Over 500 lines on purpose: the `Net` type, the architecture registry and freezing, which the architectures share; the last 167 lines are its tests.

pub mod alexnet;
pub mod config;
pub mod darzi_cnn;
pub mod densenet;
pub mod efficientnet;
pub mod layers;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod params;
pub mod pth;
pub mod resnet;
pub mod small_cnn;
pub mod torchscript;
pub mod vgg;
pub mod weights;

pub use config::{FineTuneMode, Init, ModelConfig};

use crate::error::{Error, Result};
use layers::Seq;
use std::collections::BTreeMap;
use tch::{Device, Tensor, nn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, fc128, fc(classes): the benchmark CNN.
    SmallCnn,
    /// The CNN of Darzi et al. and Fed-Safe: 6 conv + 5 fully connected layers, ReLU, dropout
    /// 0.25 (`thesis_cnn` is its former name, still accepted).
    #[serde(alias = "thesis_cnn")]
    DarziCnn,
    #[serde(rename = "mobilenet_v2")]
    MobileNetV2,
    Vgg16,
    Vgg19,
    Alexnet,
    Resnet18,
    Densenet121,
    #[serde(rename = "efficientnet_b0")]
    EfficientNetB0,
    #[serde(rename = "mobilenet_v3_small")]
    MobileNetV3Small,
    /// A TorchScript module from a file (`model.script`, head layer `model.head`).
    #[serde(rename = "torchscript")]
    TorchScript,
}

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::SmallCnn => "small_cnn",
            Arch::DarziCnn => "darzi_cnn",
            Arch::MobileNetV2 => "mobilenet_v2",
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
            Arch::Alexnet => "alexnet",
            Arch::Resnet18 => "resnet18",
            Arch::Densenet121 => "densenet121",
            Arch::EfficientNetB0 => "efficientnet_b0",
            Arch::MobileNetV3Small => "mobilenet_v3_small",
            Arch::TorchScript => "torchscript",
        }
    }

    /// Input channels for data with `data_channels` channels: the small CNNs take the data as
    /// it is, the ImageNet backbones always take RGB (gray is repeated).
    pub fn in_channels(&self, data_channels: usize) -> usize {
        match self {
            Arch::SmallCnn | Arch::DarziCnn | Arch::TorchScript => data_channels,
            _ => 3,
        }
    }

    /// Whether the model computes in channels-last (NHWC) memory order on CPU. Measured on one
    /// core (ms per training batch of 32, NCHW → channels-last): small CNN at 28 px 43.6 → 30.5,
    /// thesis CNN at 32 px 187.6 → 166.6; MobileNetV2 trains about 9% faster (oneDNN's depthwise
    /// convolutions). VGG-16 and ResNet-18 gained nothing beyond noise, so they stay NCHW.
    pub fn channels_last(&self) -> bool {
        matches!(self, Arch::MobileNetV2 | Arch::SmallCnn | Arch::DarziCnn)
    }

    /// Name prefix of the head's variables (torchvision's): everything else is the backbone
    /// that classifier-only fine-tuning freezes and pretrained weights supply. A TorchScript
    /// model's head is configured (see [`Net::head_prefix`]).
    pub fn head_prefix(&self) -> &'static str {
        match self {
            Arch::Resnet18 => "fc.",
            _ => "classifier.",
        }
    }

    /// Smallest input side the architecture accepts.
    pub fn min_input(&self) -> usize {
        match self {
            Arch::SmallCnn | Arch::TorchScript => 4,
            Arch::DarziCnn => 8,
            // 11×11 stride-4 stem and three 3×3 stride-2 pools.
            Arch::Alexnet => 63,
            _ => 32,
        }
    }
}

/// What a model is built from: a zoo architecture, or a TorchScript file with its head layer.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub arch: Arch,
    pub script: Option<(std::path::PathBuf, String)>,
}

impl From<Arch> for Recipe {
    fn from(arch: Arch) -> Recipe {
        Recipe { arch, script: None }
    }
}

impl Recipe {
    /// Builds the model; its random init draws from libtorch's generator (see
    /// [`with_torch_rng`]).
    pub fn build(
        &self,
        num_classes: usize,
        data_channels: usize,
        input_size: usize,
        device: Device,
    ) -> Result<Net> {
        with_torch_rng(None, || match &self.script {
            Some((path, head)) => {
                Net::from_torchscript(path, head, num_classes, data_channels, input_size, device)
            }
            None => Net::new(self.arch, num_classes, data_channels, input_size, device),
        })
    }
}

static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static HOLDS_TORCH_RNG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with libtorch's process-wide generator to itself, seeded first when `seed` is
/// given. Weight init draws from that generator, so cells that run side by side would
/// otherwise interleave their draws and no longer repeat. Nested calls on one thread run
/// directly (a seeded block may build models).
pub fn with_torch_rng<T>(seed: Option<u64>, f: impl FnOnce() -> T) -> T {
    if HOLDS_TORCH_RNG.get() {
        if let Some(s) = seed {
            tch::manual_seed(s as i64);
        }
        return f();
    }
    let _lock = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            HOLDS_TORCH_RNG.set(false);
        }
    }
    HOLDS_TORCH_RNG.set(true);
    let _release = Release;
    if let Some(s) = seed {
        tch::manual_seed(s as i64);
    }
    f()
}

/// How features become the classifier's input.
#[derive(Debug, Clone, Copy)]
pub enum Neck {
    Flatten,
    /// Adaptive average pooling to `n`×`n`, then flatten.
    AvgPool(i64),
}

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FineTune {
    /// Every parameter trains.
    Full,
    /// The feature extractor is frozen (its batch-norm statistics too); only the head trains.
    ClassifierOnly,
    /// The first layers of the feature extractor holding this percentage of its parameters are
    /// frozen.
    PartialFreeze(f64),
}

impl FineTune {
    pub fn label(&self) -> String {
        match self {
            FineTune::Full => "full".into(),
            FineTune::ClassifierOnly => "classifier_only".into(),
            FineTune::PartialFreeze(p) => format!("freeze{p}"),
        }
    }

    /// The share of the backbone asked to be frozen, in percent.
    pub fn percent(&self) -> f64 {
        match self {
            FineTune::Full => 0.0,
            FineTune::ClassifierOnly => 100.0,
            FineTune::PartialFreeze(p) => *p,
        }
    }
}

pub struct Net {
    pub vs: nn::VarStore,
    pub arch: Arch,
    pub num_classes: usize,
    pub in_channels: usize,
    features: Seq,
    neck: Neck,
    classifier: Seq,
    head_prefix: String,
    /// A TorchScript model: the whole forward pass (`features` and `classifier` are empty).
    script: Option<torchscript::Script>,
    /// Channels of the last feature map kept (1) or pruned (0), shape (1, C, 1, 1): pruning
    /// that training cannot undo, since a pruned channel passes no gradient (Fine-Pruning).
    channel_mask: Option<Tensor>,
}

impl Net {
    pub fn new(
        arch: Arch,
        num_classes: usize,
        data_channels: usize,
        input_size: usize,
        device: Device,
    ) -> Result<Net> {
        if input_size < arch.min_input() {
            return Err(Error::Invalid(format!(
                "model `{}` needs inputs of at least {} px, got {input_size}",
                arch.name(),
                arch.min_input()
            )));
        }
        if num_classes < 2 {
            return Err(Error::Invalid(format!(
                "a classifier needs at least 2 classes, got {num_classes}"
            )));
        }
        let in_channels = arch.in_channels(data_channels) as i64;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (features, neck, classifier) = match arch {
            Arch::SmallCnn => {
                small_cnn::build(&root, in_channels, num_classes as i64, input_size as i64)
            }
            Arch::DarziCnn => {
                darzi_cnn::build(&root, in_channels, num_classes as i64, input_size as i64)
            }
            Arch::MobileNetV2 => mobilenet_v2::build(&root, num_classes as i64),
            Arch::Vgg16 => vgg::build(&root, vgg::CFG_D, num_classes as i64),
            Arch::Vgg19 => vgg::build(&root, vgg::CFG_E, num_classes as i64),
            Arch::Alexnet => alexnet::build(&root, num_classes as i64),
            Arch::Resnet18 => resnet::build(&root, num_classes as i64),
            Arch::Densenet121 => densenet::build(&root, num_classes as i64),
            Arch::EfficientNetB0 => efficientnet::build(&root, num_classes as i64),
            Arch::MobileNetV3Small => mobilenet_v3::build(&root, num_classes as i64),
            Arch::TorchScript => {
                return Err(Error::Invalid(
                    "a TorchScript model is made from its file (`model.script`)".into(),
                ));
            }
        };
        // Convolution kernels in channels-last order make every activation after them
        // channels-last too. Loading weights copies values into these tensors, so the layout
        // stays.
        if arch.channels_last() {
            tch::no_grad(|| {
                for (_, mut v) in vs.variables() {
                    if v.dim() == 4 {
                        let cl = layers::channels_last(&v);
                        v.set_data(&cl);
                    }
                }
            });
        }
        Ok(Net {
            vs,
            arch,
            num_classes,
            in_channels: in_channels as usize,
            features,
            neck,
            classifier,
            head_prefix: arch.head_prefix().to_string(),
            script: None,
            channel_mask: None,
        })
    }

    /// A TorchScript module as a model; `head` names its classifier layer (e.g. `fc`).
    pub fn from_torchscript(
        path: &std::path::Path,
        head: &str,
        num_classes: usize,
        data_channels: usize,
        input_size: usize,
        device: Device,
    ) -> Result<Net> {
        let vs = nn::VarStore::new(device);
        let script =
            torchscript::Script::load(path, &vs, head, num_classes, data_channels, input_size)?;
        Ok(Net {
            vs,
            arch: Arch::TorchScript,
            num_classes,
            in_channels: data_channels,
            features: Seq::default(),
            neck: Neck::Flatten,
            classifier: Seq::default(),
            head_prefix: format!("{head}."),
            script: Some(script),
            channel_mask: None,
        })
    }

    /// Name prefix of the head's variables.
    pub fn head_prefix(&self) -> &str {
        &self.head_prefix
    }

    /// The last feature map (before the neck), pruned channels zeroed.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        let f = self.features.forward_t(&self.layout(x), train);
        match &self.channel_mask {
            Some(m) => f * m,
            None => f,
        }
    }

    /// Prunes the last feature map's channels where `keep` is false (None: none pruned).
    pub fn set_channel_mask(&mut self, keep: Option<&[bool]>) {
        self.channel_mask = keep.map(|k| {
            let v: Vec<f32> = k.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
            Tensor::from_slice(&v)
                .view([1, k.len() as i64, 1, 1])
                .to_device(self.vs.device())
        });
    }

    fn layout(&self, x: &Tensor) -> Tensor {
        if self.arch.channels_last() {
            layers::channels_last(x)
        } else {
            x.shallow_clone()
        }
    }

    /// Writes every variable to a safetensors file (in the usual contiguous order).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.contiguous()))
            .collect();
        vars.sort_by_key(|(n, _)| layer_order(n));
        // Written beside and renamed: a reader (another shard of the sweep) never sees half a file.
        let tmp = crate::io::temp_beside(path);
        Tensor::write_safetensors(&vars, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Number of layers in `features`.
    pub fn feature_layers(&self) -> usize {
        self.features.0.len()
    }

    /// The layers `features[range]` alone; with [`Net::logits_from_t`], a split for Grad-CAM
    /// at any depth.
    pub fn features_range_t(
        &self,
        x: &Tensor,
        range: std::ops::Range<usize>,
        train: bool,
    ) -> Tensor {
        self.features.forward_range_t(&self.layout(x), range, train)
    }

    pub fn logits_from_t(&self, map: &Tensor, k: usize, train: bool) -> Tensor {
        let f = self
            .features
            .forward_range_t(map, k..self.features.0.len(), train);
        let f = match &self.channel_mask {
            Some(m) => f * m,
            None => f,
        };
        self.head_t(&f, train)
    }

    pub fn head_t(&self, features: &Tensor, train: bool) -> Tensor {
        if let Some(s) = &self.script {
            // No split is known: the "features" are the input itself.
            return s.forward_t(features, train);
        }
        self.classifier.forward_t(&self.neck_t(features), train)
    }

    fn neck_t(&self, features: &Tensor) -> Tensor {
        match self.neck {
            Neck::Flatten => features.flatten(1, -1),
            Neck::AvgPool(n) => features.adaptive_avg_pool2d([n, n]).flatten(1, -1),
        }
    }

    /// The last hidden representation: what the classifier's final layer receives (the
    /// activations data-level backdoor detectors read). A TorchScript module, whose layers are
    /// not known, gives its logits.
    pub fn penultimate_t(&self, x: &Tensor, train: bool) -> Tensor {
        if self.script.is_some() {
            return self.forward_t(x, train);
        }
        let z = self.neck_t(&self.features_t(x, train));
        let last = self.classifier.0.len().saturating_sub(1);
        self.classifier.forward_range_t(&z, 0..last, train)
    }

    /// Logits for an (N, C, H, W) batch already normalized and with the model's channel count.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.head_t(&self.features_t(x, train), train)
    }

    /// Trainable parameters (weights and biases, not batch-norm buffers), sorted in layer order.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        let mut names: Vec<&String> = vars.keys().filter(|n| !is_buffer(n)).collect();
        names.sort_by_key(|n| layer_order(n));
        names
            .into_iter()
            .map(|n| (n.clone(), vars[n].shallow_clone()))
            .collect()
    }

    pub fn num_parameters(&self) -> i64 {
        self.parameters()
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// Applies a fine-tuning strategy; returns the fraction of feature parameters frozen.
    pub fn apply_fine_tune(&self, strategy: FineTune) -> Result<f64> {
        let params = self.parameters();
        for (_, t) in &params {
            let _ = t.shallow_clone().set_requires_grad(true);
        }
        let head = self.head_prefix();
        let features: Vec<&(String, Tensor)> = params
            .iter()
            .filter(|(n, _)| !n.starts_with(head))
            .collect();
        let total: i64 = features.iter().map(|(_, t)| t.numel() as i64).sum();
        let percent = strategy.percent();
        if !(0.0..=100.0).contains(&percent) {
            return Err(Error::Invalid(format!(
                "freeze percentage must be within 0..=100, got {percent}"
            )));
        }
        // Layer groups in definition order with their sizes; a layer freezes whole (weight and
        // bias).
        let rank = definition_rank(&self.vs);
        let mut groups: BTreeMap<usize, (String, i64)> = BTreeMap::new();
        for (n, t) in &features {
            let prefix = n
                .rsplit_once('.')
                .map_or(n.as_str(), |(p, _)| p)
                .to_string();
            groups.entry(rank[n]).or_insert((prefix, 0)).1 += t.numel() as i64;
        }
        // The prefix of layers whose frozen share is closest to the target.
        let target = percent / 100.0 * total as f64;
        let (mut best_k, mut best_err, mut acc) = (0usize, target, 0i64);
        for (k, (_, size)) in groups.values().enumerate() {
            acc += size;
            let err = (acc as f64 - target).abs();
            if err < best_err - 1e-9 {
                best_err = err;
                best_k = k + 1;
            }
        }
        let frozen: Vec<&String> = groups.values().take(best_k).map(|(p, _)| p).collect();
        let mut frozen_count = 0i64;
        for (n, t) in &features {
            if frozen.iter().any(|p| n.starts_with(&format!("{p}."))) {
                let _ = t.shallow_clone().set_requires_grad(false);
                frozen_count += t.numel() as i64;
            }
        }
        Ok(if total == 0 {
            0.0
        } else {
            frozen_count as f64 / total as f64
        })
    }

    /// Names of the parameters that train under the current fine-tuning strategy.
    pub fn trainable_names(&self) -> Vec<String> {
        self.parameters()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, _)| n)
            .collect()
    }
}

/// Position of each variable's layer in definition order. tch keeps trainable variables in
/// creation order (names alone do not give it: DenseNet's `denselayer10` sorts before
/// `denselayer2`, ResNet's `bn1` before `conv1`); a buffer takes its layer's position.
fn definition_rank(vs: &nn::VarStore) -> std::collections::HashMap<String, usize> {
    let by_ptr: std::collections::HashMap<usize, usize> = vs
        .trainable_variables()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.data_ptr() as usize, i))
        .collect();
    let vars = vs.variables();
    let layer = |n: &str| n.rsplit_once('.').map_or(n, |(p, _)| p).to_string();
    let mut layer_rank = std::collections::HashMap::new();
    for (n, t) in &vars {
        if let Some(&i) = by_ptr.get(&(t.data_ptr() as usize)) {
            let r = layer_rank.entry(layer(n)).or_insert(i);
            *r = (*r).min(i);
        }
    }
    vars.keys()
        .map(|n| {
            (
                n.clone(),
                layer_rank.get(&layer(n)).copied().unwrap_or(usize::MAX),
            )
        })
        .collect()
}

/// Batch-norm statistics are state, not parameters.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Num(u64),
    Text(String),
}

/// Sort key that orders `features.2` before `features.10` (definition order for our models).
pub fn layer_order(name: &str) -> Vec<Key> {
    name.split('.')
        .map(|p| {
            p.parse()
                .map(Key::Num)
                .unwrap_or_else(|_| Key::Text(p.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_torchvision() {
        let net = Net::new(Arch::MobileNetV2, 4, 1, 64, Device::Cpu).unwrap();
        let vars = net.vs.variables();
        for n in [
            "features.0.0.weight",
            "features.0.1.running_var",
            "features.1.conv.0.0.weight",
            "features.1.conv.1.weight",
            "features.2.conv.3.bias",
            "features.18.0.weight",
            "classifier.1.weight",
        ] {
            assert!(vars.contains_key(n), "missing {n}");
        }
    }

    #[test]
    fn freezing_counts_parameters() {
        let net = Net::new(Arch::DarziCnn, 4, 1, 32, Device::Cpu).unwrap();
        assert_eq!(net.apply_fine_tune(FineTune::Full).unwrap(), 0.0);
        assert_eq!(net.apply_fine_tune(FineTune::ClassifierOnly).unwrap(), 1.0);
        assert!(
            net.parameters()
                .iter()
                .all(|(n, t)| t.requires_grad() == n.starts_with("classifier."))
        );
        let half = net.apply_fine_tune(FineTune::PartialFreeze(50.0)).unwrap();
        assert!((0.3..0.7).contains(&half), "{half}");
        // Frozen layers are a prefix of the feature extractor.
        let flags: Vec<bool> = net
            .parameters()
            .iter()
            .filter(|(n, _)| n.starts_with("features."))
            .map(|(_, t)| t.requires_grad())
            .collect();
        assert!(flags.windows(2).all(|w| !w[0] || w[1]));
        assert!(net.apply_fine_tune(FineTune::PartialFreeze(120.0)).is_err());
    }

    /// A 3×3 convolution (padding 1, bias if the model has one) and batch norm computed in
    /// plain NCHW order from contiguous copies of the model's variables `conv.*` and `bn.*`.
    fn conv_bn_nchw(
        x: &Tensor,
        vars: &std::collections::HashMap<String, Tensor>,
        conv: &str,
        bn: &str,
        stride: i64,
        train: bool,
    ) -> Tensor {
        let v = |n: String| vars[&n].contiguous();
        let bias = vars.get(&format!("{conv}.bias")).map(Tensor::contiguous);
        x.conv2d(
            &v(format!("{conv}.weight")),
            bias,
            [stride, stride],
            [1, 1],
            [1, 1],
            1,
        )
        .batch_norm(
            Some(&v(format!("{bn}.weight"))),
            Some(&v(format!("{bn}.bias"))),
            Some(&v(format!("{bn}.running_mean"))),
            Some(&v(format!("{bn}.running_var"))),
            train,
            0.1,
            1e-5,
            false,
        )
    }

    #[test]
    fn channels_last_layout_changes_no_value() {
        let net = Net::new(Arch::MobileNetV2, 3, 1, 32, Device::Cpu).unwrap();
        let vars = net.vs.variables();
        let w = &vars["features.0.0.weight"];
        assert!(!w.is_contiguous(), "kernels are stored channels-last");
        let x = Tensor::rand([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
        let y = net.forward_t(&x, false);
        // The stem (conv, batch norm, ReLU6) computed in plain NCHW order from the same weights.
        let nchw = conv_bn_nchw(&x, &vars, "features.0.0", "features.0.1", 2, false).relu6();
        let stem = net.features_range_t(&x, 0..1, false);
        assert!(f64::try_from((stem - nchw).abs().max()).unwrap() < 1e-5);
        // Saved contiguously and loaded into a fresh model: the same logits.
        let dir = std::env::temp_dir().join(format!("fedsentry_cl_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        net.save(&path).unwrap();
        let mut other = Net::new(Arch::MobileNetV2, 3, 1, 32, Device::Cpu).unwrap();
        other.vs.load(&path).unwrap();
        let z = other.forward_t(&x, false);
        assert!(f64::try_from((y - z).abs().max()).unwrap() < 1e-6);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The small CNN's one-channel input and first kernel get channels-last strides too (the
    /// fast path), and its logits equal the same weights computed in plain NCHW order.
    #[test]
    fn small_cnn_channels_last_equals_nchw() {
        let net = with_torch_rng(Some(5), || {
            Net::new(Arch::SmallCnn, 2, 1, 28, Device::Cpu).unwrap()
        });
        let vars = net.vs.variables();
        assert_eq!(vars["features.0.weight"].stride(), vec![9, 1, 3, 1]);
        let x = Tensor::rand([4, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
        assert_eq!(
            net.features_t(&x, false).stride()[1],
            1,
            "activations are NHWC"
        );
        let v = |n: &str| vars[n].contiguous();
        let block = |x: &Tensor, conv: usize| {
            let (c, b) = (format!("features.{conv}"), format!("features.{}", conv + 1));
            conv_bn_nchw(x, &vars, &c, &b, 1, true).relu().max_pool2d(
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
            )
        };
        let h = block(&block(&x, 0), 4).flatten(1, -1);
        let nchw = h
            .linear(&v("classifier.0.weight"), Some(v("classifier.0.bias")))
            .relu()
            .linear(&v("classifier.2.weight"), Some(v("classifier.2.bias")));
        // Training mode: batch statistics, so batch norm is not the identity.
        let y = net.forward_t(&x, true);
        assert!(f64::try_from((y - nchw).abs().max()).unwrap() < 1e-4);
    }

    #[test]
    fn every_model_maps_a_batch_to_logits() {
        for (arch, size) in [
            (Arch::SmallCnn, 28),
            (Arch::DarziCnn, 32),
            (Arch::MobileNetV2, 32),
            (Arch::Resnet18, 32),
            (Arch::Alexnet, 64),
            (Arch::Densenet121, 32),
            (Arch::EfficientNetB0, 32),
            (Arch::MobileNetV3Small, 32),
        ] {
            let net = Net::new(arch, 3, 1, size, Device::Cpu).unwrap();
            let x = Tensor::rand(
                [2, net.in_channels as i64, size as i64, size as i64],
                (tch::Kind::Float, Device::Cpu),
            );
            assert_eq!(net.forward_t(&x, false).size(), vec![2, 3]);
        }
        assert!(Net::new(Arch::MobileNetV2, 4, 1, 16, Device::Cpu).is_err());
    }

    /// ResNet's head is `fc`, not `classifier`: classifier-only fine-tuning trains just it.
    #[test]
    fn classifier_only_finds_each_models_head() {
        let net = Net::new(Arch::Resnet18, 4, 1, 32, Device::Cpu).unwrap();
        assert_eq!(net.apply_fine_tune(FineTune::ClassifierOnly).unwrap(), 1.0);
        assert_eq!(net.trainable_names(), vec!["fc.bias", "fc.weight"]);
    }
}
