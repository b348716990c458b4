//! DenseNet-121 (Huang et al. 2017, DenseNet-BC) with torchvision's module tree:
//! `features.conv0/norm0/pool0`, dense blocks `features.denseblockB.denselayerL.{norm1,conv1,
//! norm2,conv2}` of (6, 12, 24, 16) layers with growth rate 32 and 4× bottlenecks, transitions
//! `features.transitionB.{norm,conv}` halving the channels, `features.norm5`, head
//! `classifier` (a single linear layer).

use super::Neck;
use super::layers::{KAIMING_FAN_IN, Layer, Seq, bn, conv_init, linear_zero_bias, torch_default};
use tch::nn;

const BLOCKS: [i64; 4] = [6, 12, 24, 16];
const GROWTH: i64 = 32;
const BOTTLENECK: i64 = 4;

fn conv(p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Layer {
    conv_init(p, cin, cout, k, stride, 1, false, KAIMING_FAN_IN)
}

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let f = root / "features";
    let mut features = Seq(vec![
        conv(&(&f / "conv0"), 3, 64, 7, 2),
        bn(&(&f / "norm0"), 64),
        Layer::Relu,
        Layer::MaxPool {
            k: 3,
            stride: 2,
            pad: 1,
        },
    ]);
    let mut c = 64;
    for (b, n) in BLOCKS.into_iter().enumerate() {
        let block = &f / format!("denseblock{}", b + 1);
        let layers = (0..n)
            .map(|l| {
                let p = &block / format!("denselayer{}", l + 1);
                let cin = c + l * GROWTH;
                Seq(vec![
                    bn(&(&p / "norm1"), cin),
                    Layer::Relu,
                    conv(&(&p / "conv1"), cin, BOTTLENECK * GROWTH, 1, 1),
                    bn(&(&p / "norm2"), BOTTLENECK * GROWTH),
                    Layer::Relu,
                    conv(&(&p / "conv2"), BOTTLENECK * GROWTH, GROWTH, 3, 1),
                ])
            })
            .collect();
        features.push(Layer::Dense(layers));
        c += n * GROWTH;
        if b + 1 < BLOCKS.len() {
            let t = &f / format!("transition{}", b + 1);
            features.push(Layer::Seq(Seq(vec![
                bn(&(&t / "norm"), c),
                Layer::Relu,
                conv(&(&t / "conv"), c, c / 2, 1, 1),
                Layer::AvgPool2,
            ])));
            c /= 2;
        }
    }
    features.push(bn(&(&f / "norm5"), c));
    // torchvision applies this ReLU in `forward`, after the feature extractor.
    features.push(Layer::Relu);
    let classifier = Seq(vec![linear_zero_bias(
        &(root / "classifier"),
        c,
        classes,
        torch_default(c),
    )]);
    (features, Neck::AvgPool(1), classifier)
}
