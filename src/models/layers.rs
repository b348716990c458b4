//! The few layer kinds our models use, run in sequence. Batch norm decides train/eval from its
//! own weight: a frozen (non-trainable) layer keeps its running statistics.
//!
//! Over 500 lines on purpose: the layer kinds and their forward pass belong together; the last 57 lines are its tests.

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

/// `x` times a mask of the given shape (broadcast over `x`) whose entries are 0 with
/// probability `p` and 1/(1−p) otherwise, drawn from this thread's generator.
fn drop_mask(x: &Tensor, p: f64, shape: &[i64]) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let n: i64 = shape.iter().product();
    let keep = 1.0 / (1.0 - p) as f32;
    let cut = (p * u32::MAX as f64) as u32;
    let mask: Vec<f32> = DROPOUT_RNG.with(|r| {
        let mut r = r.borrow_mut();
        (0..n)
            .map(|_| if r.random::<u32>() >= cut { keep } else { 0.0 })
            .collect()
    });
    let mask = Tensor::from_slice(&mask)
        .view(shape)
        .to_device(x.device())
        .to_kind(x.kind());
    x * mask
}

/// Inverted dropout: zeroes each element with probability `p`, scales the rest by 1/(1−p).
fn dropout(x: &Tensor, p: f64) -> Tensor {
    drop_mask(x, p, &x.size())
}

/// The same 4-D tensor with channels-last (NHWC) strides: values and shapes are unchanged, only
/// the memory order differs. The strides are written out rather than obtained by permuting,
/// because a one-channel tensor counts as contiguous either way and permuting would leave its
/// NCHW strides, which libtorch's kernels then read as NCHW.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let size = t.size();
    let (c, w) = (size[1], size[3]);
    let strides = [c * size[2] * w, 1, w * c, c];
    if t.stride() == strides {
        return t.shallow_clone();
    }
    let mut out = Tensor::empty_strided(&size, strides, (t.kind(), t.device()));
    out.copy_(t);
    out
}

pub enum Layer {
    Conv(nn::Conv2D),
    /// Batch norm with its own ε and momentum (MobileNetV3 uses 0.001 and 0.01).
    BatchNorm {
        bn: nn::BatchNorm,
        eps: f64,
        momentum: f64,
    },
    Linear(nn::Linear),
    Relu,
    Relu6,
    Hardswish,
    Silu,
    MaxPool2,
    /// 2×2 average pooling with stride 2 (DenseNet's transitions).
    AvgPool2,
    /// Max pooling with a k×k window (AlexNet's and ResNet's overlapping 3×3, stride 2).
    MaxPool {
        k: i64,
        stride: i64,
        pad: i64,
    },
    Dropout(f64),
    Seq(Seq),
    /// Inverted residual (MobileNetV2/V3, EfficientNet's MBConv): x + body(x). In training the
    /// body's output of each sample is dropped with probability `drop` and the rest scaled by
    /// 1/(1−drop) (stochastic depth, "row" mode; EfficientNet only).
    Residual {
        body: Seq,
        drop: f64,
    },
    /// Squeeze-and-excitation (Hu et al.): x · gate(fc2(act(fc1(avgpool(x))))). MobileNetV3
    /// uses ReLU and a hard sigmoid (`hard`), EfficientNet SiLU and a sigmoid.
    SqueezeExcite {
        fc1: nn::Conv2D,
        fc2: nn::Conv2D,
        hard: bool,
    },
    /// DenseNet dense block: layer i sees the concatenation of the block's input and every
    /// earlier layer's output; the block returns the concatenation of all.
    Dense(Vec<Seq>),
    /// ResNet basic block: ReLU(body(x) + shortcut(x)), the shortcut being the identity or a
    /// strided 1×1 convolution with batch norm (`downsample`).
    Basic {
        body: Seq,
        downsample: Option<Seq>,
    },
}

/// PyTorch's batch-norm defaults.
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// Stochastic depth: zeroes whole samples with probability `p` and scales the rest.
fn drop_rows(x: &Tensor, p: f64) -> Tensor {
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    drop_mask(x, p, &shape)
}

impl Layer {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Layer::Conv(c) => x.apply(c),
            Layer::BatchNorm { bn, eps, momentum } => {
                let trainable = bn.ws.as_ref().is_some_and(|w| w.requires_grad());
                x.batch_norm(
                    bn.ws.as_ref(),
                    bn.bs.as_ref(),
                    Some(&bn.running_mean),
                    Some(&bn.running_var),
                    train && trainable,
                    *momentum,
                    *eps,
                    true,
                )
            }
            Layer::Linear(l) => x.apply(l),
            Layer::Relu => x.relu(),
            // relu6 is hardtanh(0, 6) in libtorch, whose backward is one fused kernel; clamp's is several.
            Layer::Relu6 => x.relu6(),
            Layer::Hardswish => x.hardswish(),
            Layer::Silu => x.silu(),
            // In the input's own layout. Pooling alone in channels-last order inside an NCHW
            // model is faster by itself, but its gradient then reaches ReLU's and batch norm's
            // backward in the other layout, which cost more than the pooling saved (NCHW small
            // CNN: 54.8 vs 45.5 ms per batch of 32).
            Layer::MaxPool2 => x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            Layer::AvgPool2 => x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>),
            Layer::MaxPool { k, stride, pad } => {
                x.max_pool2d([*k, *k], [*stride, *stride], [*pad, *pad], [1, 1], false)
            }
            Layer::Dropout(p) if train => dropout(x, *p),
            Layer::Dropout(_) => x.shallow_clone(),
            Layer::Seq(s) => s.forward_t(x, train),
            Layer::Residual { body, drop } => {
                let y = body.forward_t(x, train);
                if train {
                    drop_rows(&y, *drop) + x
                } else {
                    y + x
                }
            }
            Layer::SqueezeExcite { fc1, fc2, hard } => {
                let s = x.adaptive_avg_pool2d([1, 1]).apply(fc1);
                let s = if *hard { s.relu() } else { s.silu() }.apply(fc2);
                x * if *hard { s.hardsigmoid() } else { s.sigmoid() }
            }
            Layer::Dense(layers) => {
                let mut maps = vec![x.shallow_clone()];
                for l in layers {
                    let y = l.forward_t(&Tensor::cat(&maps, 1), train);
                    maps.push(y);
                }
                Tensor::cat(&maps, 1)
            }
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
        let layers = &self.0[range];
        let mut y = x.shallow_clone();
        let mut i = 0;
        while i < layers.len() {
            // ReLU then 2×2 max pooling equals pooling then ReLU: both are monotone, so the same
            // element wins each window and the gradients match too, while the ReLU touches a
            // quarter of the values.
            if matches!(layers[i], Layer::Relu)
                && matches!(layers.get(i + 1), Some(Layer::MaxPool2))
            {
                y = layers[i + 1].forward_t(&y, train).relu();
                i += 2;
            } else {
                y = layers[i].forward_t(&y, train);
                i += 1;
            }
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
    conv_init(p, cin, cout, k, stride, groups, bias, KAIMING_FAN_OUT)
}

/// torchvision's init for the convolutions of its ImageNet models (kaiming_normal_, fan out).
const KAIMING_FAN_OUT: nn::Init = nn::Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

/// DenseNet's convolution init (kaiming_normal_, fan in).
pub const KAIMING_FAN_IN: nn::Init = nn::Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ReLU,
};

/// A "same"-padded convolution with the given weight init and zero bias.
#[allow(clippy::too_many_arguments)]
pub fn conv_init(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
    bias: bool,
    ws_init: nn::Init,
) -> Layer {
    let cfg = nn::ConvConfig {
        stride,
        padding: (k - 1) / 2,
        groups,
        bias,
        ws_init,
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    Layer::Conv(nn::conv2d(p, cin, cout, k, cfg))
}

/// PyTorch's default init for conv and linear layers: weight and bias uniform in ±1/√fan_in
/// (kaiming_uniform with a=√5). tch's own default is √6 times wider.
pub fn torch_default(fan_in: i64) -> nn::Init {
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

/// Batch-norm settings.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub eps: f64,
    pub momentum: f64,
}

impl Norm {
    pub const TORCH: Norm = Norm {
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
    };

    pub fn layer(self, p: &nn::Path, c: i64) -> Layer {
        Layer::BatchNorm {
            bn: nn::batch_norm2d(p, c, Default::default()),
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}

pub fn bn(p: &nn::Path, c: i64) -> Layer {
    Norm::TORCH.layer(p, c)
}

/// torchvision's `Conv2dNormActivation`: a bias-free "same" convolution `p.0` with kernel,
/// stride and groups `kgs`, batch norm `p.1`, then the activation if any.
pub fn conv_norm_act(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    (k, stride, groups): (i64, i64, i64),
    norm: Norm,
    act: Option<Layer>,
) -> Layer {
    let mut s = Seq(vec![
        conv(&(p / 0), cin, cout, k, stride, groups, false),
        norm.layer(&(p / 1), cout),
    ]);
    s.0.extend(act);
    Layer::Seq(s)
}

/// An inverted residual block (MobileNetV3, EfficientNet's MBConv) as torchvision builds it
/// under `block.*`: 1×1 expansion to `exp` channels (when that widens), k×k depthwise
/// convolution, optional squeeze-and-excitation (`se`: squeezed channels, hard form), 1×1 linear
/// projection to `cout`. The identity shortcut applies when shape allows, with stochastic depth
/// `drop`.
pub struct InvertedResidual {
    pub cin: i64,
    pub exp: i64,
    pub cout: i64,
    pub k: i64,
    pub stride: i64,
    pub se: Option<(i64, bool)>,
    pub drop: f64,
}

impl InvertedResidual {
    pub fn build(&self, b: &nn::Path, norm: Norm, act: impl Fn() -> Layer) -> Layer {
        let mut body = Seq::default();
        let mut j = 0;
        let (cin, exp) = (self.cin, self.exp);
        if exp != cin {
            body.push(conv_norm_act(
                &(b / j),
                cin,
                exp,
                (1, 1, 1),
                norm,
                Some(act()),
            ));
            j += 1;
        }
        let dw = (self.k, self.stride, exp);
        body.push(conv_norm_act(&(b / j), exp, exp, dw, norm, Some(act())));
        j += 1;
        if let Some((squeeze, hard)) = self.se {
            body.push(squeeze_excite(&(b / j), exp, squeeze, hard));
            j += 1;
        }
        body.push(conv_norm_act(
            &(b / j),
            exp,
            self.cout,
            (1, 1, 1),
            norm,
            None,
        ));
        if self.stride == 1 && cin == self.cout {
            Layer::Residual {
                body,
                drop: self.drop,
            }
        } else {
            Layer::Seq(body)
        }
    }
}

/// Squeeze-and-excitation with 1×1 convolutions `fc1` (to `squeeze` channels) and `fc2` under
/// `p`, initialized as torchvision does for its convolutions.
pub fn squeeze_excite(p: &nn::Path, channels: i64, squeeze: i64, hard: bool) -> Layer {
    let cfg = nn::ConvConfig {
        ws_init: KAIMING_FAN_OUT,
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    Layer::SqueezeExcite {
        fc1: nn::conv2d(p / "fc1", channels, squeeze, 1, cfg),
        fc2: nn::conv2d(p / "fc2", squeeze, channels, 1, cfg),
        hard,
    }
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
    let ws_init = nn::Init::Randn {
        mean: 0.0,
        stdev: 0.01,
    };
    linear_zero_bias(p, i, o, ws_init)
}

/// Linear with the given weight init and a zero bias (EfficientNet: uniform ±1/√out;
/// DenseNet: PyTorch's default weight).
pub fn linear_zero_bias(p: &nn::Path, i: i64, o: i64, ws_init: nn::Init) -> Layer {
    let cfg = nn::LinearConfig {
        ws_init,
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    Layer::Linear(nn::linear(p, i, o, cfg))
}

/// Linear with He (Kaiming-uniform) init, for deep ReLU stacks without normalization.
pub fn linear_kaiming(p: &nn::Path, i: i64, o: i64) -> Layer {
    linear_zero_bias(p, i, o, nn::init::DEFAULT_KAIMING_UNIFORM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// NHWC strides for any channel count (a one-channel tensor too, which permuting would
    /// leave NCHW), the same values, and the gradient passes through unchanged.
    #[test]
    fn channels_last_sets_nhwc_strides() {
        for c in [1, 3] {
            let x = Tensor::rand([2, c, 5, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let y = channels_last(&x);
            assert_eq!(y.stride(), vec![c * 20, 1, 4 * c, c]);
            assert!(y.equal(&x));
            let w = Tensor::rand([2, c, 5, 4], (Kind::Float, Device::Cpu));
            (&y * &w).sum(Kind::Float).backward();
            assert!(x.grad().equal(&w));
            // Already channels-last: no copy.
            let z = channels_last(&y);
            assert_eq!(z.data_ptr(), y.data_ptr());
        }
    }

    /// Pooling before the ReLU (the fast order) gives the same values and sends the gradient
    /// to the same pixels as ReLU then pooling, ties and all-negative windows included.
    #[test]
    fn relu_then_pool_runs_as_pool_then_relu() {
        tch::manual_seed(4);
        // Rounded values make ties common, and many windows are all ≤ 0.
        let base = (Tensor::randn([3, 5, 8, 6], (Kind::Float, Device::Cpu)) * 2.0).round();
        let seq = Seq(vec![Layer::Relu, Layer::MaxPool2]);
        let run = |fused: bool| {
            let x = base.copy().set_requires_grad(true);
            let y = if fused {
                seq.forward_t(&x, true)
            } else {
                let r = seq.0[0].forward_t(&x, true);
                seq.0[1].forward_t(&r, true)
            };
            let w = Tensor::arange(y.numel() as i64, (Kind::Float, Device::Cpu))
                .view(y.size().as_slice());
            (&y * w).sum(Kind::Float).backward();
            (y.detach(), x.grad())
        };
        let (y0, g0) = run(false);
        let (y1, g1) = run(true);
        assert_eq!(y0.size(), vec![3, 5, 4, 3]);
        assert!(y0.equal(&y1), "pooled values differ");
        assert!(g0.equal(&g1), "gradients go to different pixels");
        // A range that ends between the two layers still returns the ReLU's full-size map.
        assert_eq!(
            seq.forward_range_t(&base, 0..1, false).size(),
            vec![3, 5, 8, 6]
        );
    }
}
