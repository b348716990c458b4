//! Shared by the adversarial-training tests: a small CNN trained on 28 px phantoms, and its
//! accuracy when every test image is attacked.

use crate::attacks::evasion::{EvasionConfig, logits_of, predict};
use crate::data::Dataset;
use crate::data::augment::AugmentConfig;
use crate::data::normalize::Normalizer;
use crate::data::synthetic::{PhantomConfig, generate};
use crate::models::Net;
use crate::train::TrainConfig;
use crate::train::{self, EpochRecord, Objective};

pub fn phantoms() -> (Dataset, Normalizer) {
    let data = generate(&PhantomConfig {
        size: 28,
        train_per_class: 60,
        test_per_class: 25,
        ..Default::default()
    });
    let norm = Normalizer::from_set(&data.train);
    (data, norm)
}

/// A small CNN from init seed `init`, trained for `epochs` with `objective`.
pub fn trained(
    data: &Dataset,
    norm: &Normalizer,
    init: u64,
    epochs: usize,
    objective: &Objective,
) -> (Net, Vec<EpochRecord>) {
    let net = crate::models::with_torch_rng(Some(init), || {
        Net::new(crate::models::Arch::SmallCnn, 4, 1, 28, tch::Device::Cpu).unwrap()
    });
    let hist = train::fit(
        &net,
        &data.train,
        None,
        norm,
        &TrainConfig::adam(epochs, 16),
        &AugmentConfig::default(),
        0,
        objective,
        &mut |_, _| {},
    )
    .unwrap();
    (net, hist)
}

pub fn accuracy_under(net: &Net, data: &Dataset, norm: &Normalizer, attack: &EvasionConfig) -> f64 {
    let (x, y) = (data.test.to_tensor(), data.test.labels_tensor());
    let adv = attack
        .attack()
        .generate(&*logits_of(net, norm, 1), &x, &y, 0);
    crate::metrics::accuracy(&predict(net, norm, 1, &adv), &data.test.labels)
}
