//! MobileNetV3-Small (Howard et al. 2019) with torchvision's module tree: `features.0` stem,
//! `features.1..=11` inverted residuals (`block.*`, squeeze-and-excitation as `fc1`/`fc2`),
//! `features.12` 1×1 to 576, classifier `[Linear 1024, Hardswish, Dropout(0.2), Linear]`.
//! Batch norm uses ε = 0.001 and momentum 0.01, as torchvision's.

use super::Neck;
use super::layers::{InvertedResidual, Layer, Norm, Seq, conv_norm_act, linear_small_init};
use tch::nn;

const NORM: Norm = Norm {
    eps: 0.001,
    momentum: 0.01,
};

/// (kernel, expanded channels, output channels, squeeze-and-excitation, hard-swish, stride)
/// from the paper's Table 2.
const SETTINGS: [(i64, i64, i64, bool, bool, i64); 11] = [
    (3, 16, 16, true, false, 2),
    (3, 72, 24, false, false, 2),
    (3, 88, 24, false, false, 1),
    (5, 96, 40, true, true, 2),
    (5, 240, 40, true, true, 1),
    (5, 240, 40, true, true, 1),
    (5, 120, 48, true, true, 1),
    (5, 144, 48, true, true, 1),
    (5, 288, 96, true, true, 2),
    (5, 576, 96, true, true, 1),
    (5, 576, 96, true, true, 1),
];

/// The nearest multiple of 8 not more than 10% below `v` (torchvision's `_make_divisible`).
pub(crate) fn make_divisible(v: i64) -> i64 {
    let d = ((v + 4) / 8 * 8).max(8);
    if (d as f64) < 0.9 * v as f64 {
        d + 8
    } else {
        d
    }
}

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let act = |hs: bool| if hs { Layer::Hardswish } else { Layer::Relu };
    let mut features = Seq(vec![conv_norm_act(
        &(&f / 0),
        3,
        16,
        (3, 2, 1),
        NORM,
        Some(act(true)),
    )]);
    let mut cin = 16;
    for (i, (k, exp, cout, se, hs, stride)) in SETTINGS.into_iter().enumerate() {
        let block = InvertedResidual {
            cin,
            exp,
            cout,
            k,
            stride,
            se: se.then(|| (make_divisible(exp / 4), true)),
            drop: 0.0,
        };
        features.push(block.build(&(&f / (i + 1) / "block"), NORM, || act(hs)));
        cin = cout;
    }
    features.push(conv_norm_act(
        &(&f / 12),
        cin,
        6 * cin,
        (1, 1, 1),
        NORM,
        Some(act(true)),
    ));
    let c = root / "classifier";
    let classifier = Seq(vec![
        linear_small_init(&(&c / 0), 6 * cin, 1024),
        Layer::Hardswish,
        Layer::Dropout(0.2),
        linear_small_init(&(&c / 3), 1024, classes),
    ]);
    (features, Neck::AvgPool(1), classifier)
}
