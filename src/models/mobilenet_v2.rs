//! MobileNetV2 (width 1.0) with torchvision's module tree: `features.0` stem,
//! `features.1..=17` inverted residuals (`conv.*`), `features.18` 1×1 to 1280, classifier
//! `[Dropout(0.2), Linear]`.

use super::Neck;
use super::layers::{Layer, Norm, Seq, bn, conv, conv_norm_act, linear_small_init};
use tch::nn;

/// (expansion t, output channels c, repeats n, first stride s) from the paper's Table 2.
const SETTINGS: [(i64, i64, i64, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn conv_bn_relu6(p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> Layer {
    conv_norm_act(
        p,
        cin,
        cout,
        (k, stride, groups),
        Norm::TORCH,
        Some(Layer::Relu6),
    )
}

fn inverted_residual(p: &nn::Path, cin: i64, cout: i64, stride: i64, t: i64) -> Layer {
    let c = p / "conv";
    let hidden = cin * t;
    let mut body = Seq::default();
    let mut i = 0;
    if t != 1 {
        body.push(conv_bn_relu6(&(&c / i), cin, hidden, 1, 1, 1));
        i += 1;
    }
    body.push(conv_bn_relu6(&(&c / i), hidden, hidden, 3, stride, hidden));
    body.push(conv(&(&c / (i + 1)), hidden, cout, 1, 1, 1, false));
    body.push(bn(&(&c / (i + 2)), cout));
    if stride == 1 && cin == cout {
        Layer::Residual { body, drop: 0.0 }
    } else {
        Layer::Seq(body)
    }
}

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let mut features = Seq(vec![conv_bn_relu6(&(&f / 0), 3, 32, 3, 2, 1)]);
    let (mut cin, mut idx) = (32, 1);
    for (t, c, n, s) in SETTINGS {
        for r in 0..n {
            features.push(inverted_residual(
                &(&f / idx),
                cin,
                c,
                if r == 0 { s } else { 1 },
                t,
            ));
            cin = c;
            idx += 1;
        }
    }
    features.push(conv_bn_relu6(&(&f / idx), cin, 1280, 1, 1, 1));
    let c = root / "classifier";
    let classifier = Seq(vec![
        Layer::Dropout(0.2),
        linear_small_init(&(&c / 1), 1280, classes),
    ]);
    (features, Neck::AvgPool(1), classifier)
}
