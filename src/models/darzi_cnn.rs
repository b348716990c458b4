//! The CNN of Darzi et al. (and Fed-Safe, §4.1): "six layers of convolution stacked to 5 fully
//! connected layers", ReLU, dropout 0.25. The papers give no widths: ours are three blocks of
//! two 3×3 convs (32, 64, 128 channels) with max-pooling, then fc 512-256-128-64-classes. Without batch norm
//! an 11-layer ReLU stack needs He initialization to train (PyTorch's default init stalls it).

use super::Neck;
use super::layers::{Layer, Seq, conv, linear_kaiming};
use tch::nn;

pub fn build(root: &nn::Path, in_channels: i64, classes: i64, size: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let mut features = Seq::default();
    let mut cin = in_channels;
    let mut idx = 0;
    for cout in [32, 64, 128] {
        for _ in 0..2 {
            features.push(conv(&(&f / idx), cin, cout, 3, 1, 1, true));
            features.push(Layer::Relu);
            cin = cout;
            idx += 2;
        }
        features.push(Layer::MaxPool2);
        features.push(Layer::Dropout(0.25));
        idx += 2;
    }
    let side = size / 8;
    let c = root / "classifier";
    let mut classifier = Seq::default();
    let mut i = 128 * side * side;
    let mut idx = 0;
    for o in [512, 256, 128, 64] {
        classifier.push(linear_kaiming(&(&c / idx), i, o));
        classifier.push(Layer::Relu);
        classifier.push(Layer::Dropout(0.25));
        i = o;
        idx += 3;
    }
    classifier.push(linear_kaiming(&(&c / idx), i, classes));
    (features, Neck::Flatten, classifier)
}
