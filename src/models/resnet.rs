//! ResNet-18 (He et al. 2016) as torchvision builds it: stem `conv1`/`bn1`, four stages
//! `layer1`…`layer4` of two basic blocks, global average pooling, head `fc`.

use super::Neck;
use super::layers::{Layer, Seq, bn, conv, linear};
use tch::nn;

fn basic(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Layer {
    let body = Seq(vec![
        conv(&(p / "conv1"), cin, cout, 3, stride, 1, false),
        bn(&(p / "bn1"), cout),
        Layer::Relu,
        conv(&(p / "conv2"), cout, cout, 3, 1, 1, false),
        bn(&(p / "bn2"), cout),
    ]);
    let downsample = (stride != 1 || cin != cout).then(|| {
        let d = p / "downsample";
        Seq(vec![
            conv(&(&d / 0), cin, cout, 1, stride, 1, false),
            bn(&(&d / 1), cout),
        ])
    });
    Layer::Basic { body, downsample }
}

pub fn build(root: &nn::Path, classes: i64) -> (Seq, Neck, Seq) {
    let mut features = Seq(vec![
        conv(&(root / "conv1"), 3, 64, 7, 2, 1, false),
        bn(&(root / "bn1"), 64),
        Layer::Relu,
        Layer::MaxPool {
            k: 3,
            stride: 2,
            pad: 1,
        },
    ]);
    let mut cin = 64;
    for (i, cout) in [64, 128, 256, 512].into_iter().enumerate() {
        let stage = root / format!("layer{}", i + 1);
        let stride = if i == 0 { 1 } else { 2 };
        features.push(Layer::Seq(Seq(vec![
            basic(&(&stage / 0), cin, cout, stride),
            basic(&(&stage / 1), cout, cout, 1),
        ])));
        cin = cout;
    }
    let classifier = Seq(vec![linear(&(root / "fc"), 512, classes)]);
    (features, Neck::AvgPool(1), classifier)
}
