//! AlexNet as torchvision builds it (the one-GPU variant of Krizhevsky et al. 2012): five
//! convolutions in `features` (0, 3, 6, 8, 10), adaptive 6×6 average pooling, classifier
//! dropout/linear at 0–6.

use super::Neck;
use super::layers::{Layer, Seq, conv_default_strided, linear};
use tch::nn;

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let pool = || Layer::MaxPool {
        k: 3,
        stride: 2,
        pad: 0,
    };
    let features = Seq(vec![
        conv_default_strided(&(&f / 0), 3, 64, 11, 4, 2),
        Layer::Relu,
        pool(),
        conv_default_strided(&(&f / 3), 64, 192, 5, 1, 2),
        Layer::Relu,
        pool(),
        conv_default_strided(&(&f / 6), 192, 384, 3, 1, 1),
        Layer::Relu,
        conv_default_strided(&(&f / 8), 384, 256, 3, 1, 1),
        Layer::Relu,
        conv_default_strided(&(&f / 10), 256, 256, 3, 1, 1),
        Layer::Relu,
        pool(),
    ]);
    let c = root / "classifier";
    let classifier = Seq(vec![
        Layer::Dropout(0.5),
        linear(&(&c / 1), 256 * 6 * 6, 4096),
        Layer::Relu,
        Layer::Dropout(0.5),
        linear(&(&c / 4), 4096, 4096),
        Layer::Relu,
        linear(&(&c / 6), 4096, classes),
    ]);
    (features, Neck::AvgPool(6), classifier)
}
