//! VGG-16 and VGG-19 (configurations D and E) as torchvision builds them: convolutions and
//! pools numbered in `features`, adaptive 7×7 average pooling, classifier 0/3/6.

use super::Neck;
use super::layers::{Layer, Seq, conv, linear_small_init};
use tch::nn;

/// Output channels of each convolution, 0 for a max pool (Simonyan & Zisserman, Table 1).
pub const CFG_D: &[i64] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];
pub const CFG_E: &[i64] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

pub fn build(root: &nn::Path, cfg: &[i64], classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let mut features = Seq::default();
    let (mut cin, mut idx) = (3, 0);
    for &v in cfg {
        if v == 0 {
            features.push(Layer::MaxPool2);
            idx += 1;
        } else {
            features.push(conv(&(&f / idx), cin, v, 3, 1, 1, true));
            features.push(Layer::Relu);
            cin = v;
            idx += 2;
        }
    }
    let c = root / "classifier";
    let classifier = Seq(vec![
        linear_small_init(&(&c / 0), 512 * 7 * 7, 4096),
        Layer::Relu,
        Layer::Dropout(0.5),
        linear_small_init(&(&c / 3), 4096, 4096),
        Layer::Relu,
        Layer::Dropout(0.5),
        linear_small_init(&(&c / 6), 4096, classes),
    ]);
    (features, Neck::AvgPool(7), classifier)
}
