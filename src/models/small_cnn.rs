//! The benchmark CNN: conv3x3(→32)+BN+ReLU+pool, conv3x3(→64)+BN+ReLU+pool, fc128, fc(classes).

use super::Neck;
use super::layers::{Layer, Seq, bn, conv_default, linear};
use tch::nn;

pub fn build(root: &nn::Path, in_channels: i64, classes: i64, size: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let features = Seq(vec![
        conv_default(&(&f / 0), in_channels, 32, 3),
        bn(&(&f / 1), 32),
        Layer::Relu,
        Layer::MaxPool2,
        conv_default(&(&f / 4), 32, 64, 3),
        bn(&(&f / 5), 64),
        Layer::Relu,
        Layer::MaxPool2,
    ]);
    let side = size / 4;
    let c = root / "classifier";
    let classifier = Seq(vec![
        linear(&(&c / 0), 64 * side * side, 128),
        Layer::Relu,
        linear(&(&c / 2), 128, classes),
    ]);
    (features, Neck::Flatten, classifier)
}
