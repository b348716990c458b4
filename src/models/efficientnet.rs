//! EfficientNet-B0 (Tan & Le 2019) with torchvision's module tree: `features.0` stem,
//! `features.1..=7` stages of MBConv blocks (`features.s.i.block.*`, squeeze-and-excitation as
//! `fc1`/`fc2`), `features.8` 1×1 to 1280, classifier `[Dropout(0.2), Linear]`. Residual
//! blocks use stochastic depth growing linearly to 0.2 over the blocks.

use super::Neck;
use super::layers::{InvertedResidual, Layer, Norm, Seq, conv_norm_act, linear_zero_bias};
use tch::nn;

/// (expansion, kernel, first stride, output channels, repeats) from the paper's Table 1.
const STAGES: [(i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
const STOCHASTIC_DEPTH: f64 = 0.2;

const SILU: Option<Layer> = Some(Layer::Silu);

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let mut features = Seq(vec![conv_norm_act(
        &(&f / 0),
        3,
        32,
        (3, 2, 1),
        Norm::TORCH,
        SILU,
    )]);
    let total: i64 = STAGES.iter().map(|s| s.4).sum();
    let (mut cin, mut block_id) = (32, 0);
    for (s, (t, k, first_stride, cout, n)) in STAGES.into_iter().enumerate() {
        let mut stage = Seq::default();
        for r in 0..n {
            let stride = if r == 0 { first_stride } else { 1 };
            let block = InvertedResidual {
                cin,
                exp: cin * t,
                cout,
                k,
                stride,
                se: Some(((cin / 4).max(1), false)),
                drop: STOCHASTIC_DEPTH * block_id as f64 / total as f64,
            };
            stage.push(block.build(&(&f / (s + 1) / r / "block"), Norm::TORCH, || Layer::Silu));
            cin = cout;
            block_id += 1;
        }
        features.push(Layer::Seq(stage));
    }
    features.push(conv_norm_act(
        &(&f / 8),
        cin,
        1280,
        (1, 1, 1),
        Norm::TORCH,
        SILU,
    ));
    let c = root / "classifier";
    let range = 1.0 / (classes as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -range,
        up: range,
    };
    let classifier = Seq(vec![
        Layer::Dropout(0.2),
        linear_zero_bias(&(&c / 1), 1280, classes, init),
    ]);
    (features, Neck::AvgPool(1), classifier)
}
