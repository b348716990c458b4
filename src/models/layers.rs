//! The few layer kinds our models use, run in sequence. Batch norm decides train/eval from its
//! own weight: a frozen (non-trainable) layer keeps its running statistics.

use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::cell::RefCell;
use tch::{Tensor, nn};

thread_local! {
    /// Dropout masks come from this per-thread generator rather than libtorch's global one, so
    /// that clients training side by side on worker threads stay reproducible.
    static DROPOUT_RNG: RefCell<StdRng> = RefCell::new(StdRng::seed_from_u64(0));
}

/// Seeds this thread's dropout masks; training calls it once per run.
pub fn seed_dropout(seed: u64) {
    DROPOUT_RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(seed));
}

/// Inverted dropout: zeroes each element with probability `p`, scales the rest by 1/(1−p).
fn dropout(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let n = x.numel();
    let keep = 1.0 / (1.0 - p) as f32;
    let cut = (p * u32::MAX as f64) as u32;
    let mask: Vec<f32> = DROPOUT_RNG.with(|r| {
        let mut r = r.borrow_mut();
        (0..n)
            .map(|_| if r.random::<u32>() >= cut { keep } else { 0.0 })
            .collect()
    });
    let mask = Tensor::from_slice(&mask)
        .view(x.size().as_slice())
        .to_device(x.device())
        .to_kind(x.kind());
    x * mask
}

/// The same 4-D tensor with channels-last (NHWC) strides: values and shapes are unchanged, only
/// the memory order differs.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// 2×2 max pooling with stride 2. libtorch's CPU kernel for NCHW tensors is about twice as
/// slow as its channels-last one, more than the two layout copies cost (forward and backward
/// of the small CNN's pools: 6.7 → 5.4 ms and 3.4 → 2.4 ms per batch of 32 on one core). The
/// kernels pick the same maximum, so results are unchanged.
fn max_pool2(x: &Tensor) -> Tensor {
    let pool = |t: &Tensor| t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    if x.dim() == 4 && x.size()[1] > 1 && x.is_contiguous() {
        pool(&channels_last(x)).contiguous()
    } else {
        pool(x)
    }
}

pub enum Layer {
    Conv(nn::Conv2D),
    BatchNorm(nn::BatchNorm),
    Linear(nn::Linear),
    Relu,
    Relu6,
    MaxPool2,
    /// Max pooling with a k×k window (AlexNet's and ResNet's overlapping 3×3, stride 2).
    MaxPool {
        k: i64,
        stride: i64,
        pad: i64,
    },
    Dropout(f64),
    Seq(Seq),
    /// MobileNetV2 inverted residual: `conv` with an optional identity shortcut.
    Residual(Seq),
    /// ResNet basic block: ReLU(body(x) + shortcut(x)), the shortcut being the identity or a
    /// strided 1×1 convolution with batch norm (`downsample`).
    Basic {
        body: Seq,
        downsample: Option<Seq>,
    },
}

const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

impl Layer {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Layer::Conv(c) => x.apply(c),
            Layer::BatchNorm(bn) => {
                let trainable = bn.ws.as_ref().is_some_and(|w| w.requires_grad());
                x.batch_norm(
                    bn.ws.as_ref(),
                    bn.bs.as_ref(),
                    Some(&bn.running_mean),
                    Some(&bn.running_var),
                    train && trainable,
                    BN_MOMENTUM,
                    BN_EPS,
                    true,
                )
            }
            Layer::Linear(l) => x.apply(l),
            Layer::Relu => x.relu(),
            // relu6 is hardtanh(0, 6) in libtorch, whose backward is one fused kernel; clamp's is several.
            Layer::Relu6 => x.relu6(),
            Layer::MaxPool2 => max_pool2(x),
            Layer::MaxPool { k, stride, pad } => {
                x.max_pool2d([*k, *k], [*stride, *stride], [*pad, *pad], [1, 1], false)
            }
            Layer::Dropout(p) if train => dropout(x, *p),
            Layer::Dropout(_) => x.shallow_clone(),
            Layer::Seq(s) => s.forward_t(x, train),
            Layer::Residual(s) => x + s.forward_t(x, train),
            Layer::Basic { body, downsample } => {
                let shortcut = match downsample {
                    Some(d) => d.forward_t(x, train),
                    None => x.shallow_clone(),
                };
                (body.forward_t(x, train) + shortcut).relu()
            }
        }
    }
}

#[derive(Default)]
pub struct Seq(pub Vec<Layer>);

impl Seq {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_range_t(x, 0..self.0.len(), train)
    }

    /// Runs only the layers in `range`.
    pub fn forward_range_t(
        &self,
        x: &Tensor,
        range: std::ops::Range<usize>,
        train: bool,
    ) -> Tensor {
        let mut y = x.shallow_clone();
        for l in &self.0[range] {
            y = l.forward_t(&y, train);
        }
        y
    }

    pub fn push(&mut self, l: Layer) {
        self.0.push(l);
    }
}

pub fn conv(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
    bias: bool,
) -> Layer {
    let cfg = nn::ConvConfig {
        stride,
        padding: (k - 1) / 2,
        groups,
        bias,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    Layer::Conv(nn::conv2d(p, cin, cout, k, cfg))
}

/// PyTorch's default init for conv and linear layers: weight and bias uniform in ±1/√fan_in
/// (kaiming_uniform with a=√5). tch's own default is √6 times wider.
fn torch_default(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// Conv with PyTorch's default init, for the small CNNs.
pub fn conv_default(p: &nn::Path, cin: i64, cout: i64, k: i64) -> Layer {
    conv_default_strided(p, cin, cout, k, 1, (k - 1) / 2)
}

/// Conv with PyTorch's default init, any stride and padding (AlexNet).
pub fn conv_default_strided(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
) -> Layer {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        ws_init: torch_default(cin * k * k),
        bs_init: torch_default(cin * k * k),
        ..Default::default()
    };
    Layer::Conv(nn::conv2d(p, cin, cout, k, cfg))
}

pub fn bn(p: &nn::Path, c: i64) -> Layer {
    Layer::BatchNorm(nn::batch_norm2d(p, c, Default::default()))
}

/// Linear with PyTorch's default init.
pub fn linear(p: &nn::Path, i: i64, o: i64) -> Layer {
    let cfg = nn::LinearConfig {
        ws_init: torch_default(i),
        bs_init: Some(torch_default(i)),
        bias: true,
    };
    Layer::Linear(nn::linear(p, i, o, cfg))
}

/// Linear with torchvision's ImageNet-model init: N(0, 0.01), zero bias.
pub fn linear_small_init(p: &nn::Path, i: i64, o: i64) -> Layer {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    Layer::Linear(nn::linear(p, i, o, cfg))
}

/// Linear with He (Kaiming-uniform) init, for deep ReLU stacks without normalization.
pub fn linear_kaiming(p: &nn::Path, i: i64, o: i64) -> Layer {
    let cfg = nn::LinearConfig {
        ws_init: nn::init::DEFAULT_KAIMING_UNIFORM,
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    Layer::Linear(nn::linear(p, i, o, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Values and gradients of the reshaped pooling equal libtorch's kernel, ties included.
    #[test]
    fn max_pool2_matches_libtorch() {
        tch::manual_seed(3);
        // Rounded values make ties common; ReLU zeros make them more so.
        let base = (Tensor::randn([3, 5, 8, 6], (Kind::Float, Device::Cpu)) * 2.0)
            .round()
            .relu();
        let run = |native: bool| {
            let x = base.copy().set_requires_grad(true);
            let y = if native {
                x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            } else {
                max_pool2(&x)
            };
            let w = Tensor::arange(y.numel() as i64, (Kind::Float, Device::Cpu))
                .view(y.size().as_slice());
            (y.multiply(&w)).sum(Kind::Float).backward();
            (y.detach(), x.grad())
        };
        let (y0, g0) = run(true);
        let (y1, g1) = run(false);
        assert_eq!(y0.size(), vec![3, 5, 4, 3]);
        assert!(y0.equal(&y1), "pooled values differ");
        assert!(g0.equal(&g1), "gradients go to different pixels");
    }
}
