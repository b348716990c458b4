//! Training throughput (images/s) of fedsentry's trainer next to the same model and loop in
//! PyTorch from the same virtualenv. Runs alternate (fedsentry, PyTorch); each run times several
//! epochs and the medians are compared, which keeps a noisy shared machine from deciding the ratio.
//!
//! Run: ./scripts/bench train_step   [env: BENCH_REPS=3, BENCH_IMAGES=1024, BENCH_MODELS=small_cnn,mobilenet_v2,vgg16]

use fedsentry::config::TrainConfig;
use fedsentry::data::ImageSet;
use fedsentry::data::augment::AugmentConfig;
use fedsentry::data::normalize::Normalizer;
use fedsentry::models::{Arch, Net};
use fedsentry::train::{Objective, fit};
#[path = "common.rs"]
mod common;

use common::{median, run_python};
use std::time::Instant;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn random_set(channels: usize, size: usize, n: usize) -> ImageSet {
    tch::manual_seed(0);
    let classes = (0..4).map(|c| c.to_string()).collect();
    let mut set = ImageSet::empty(channels, size, size, classes);
    let x = tch::Tensor::rand(
        [(n * channels * size * size) as i64],
        (tch::Kind::Float, tch::Device::Cpu),
    );
    set.pixels = Vec::<f32>::try_from(&x).unwrap();
    set.labels = (0..n as i64).map(|i| i % 4).collect();
    set.sources = vec![String::new(); n];
    set
}

fn ours(arch: Arch, size: usize, images: usize) -> f64 {
    let channels = if arch == Arch::SmallCnn { 1 } else { 3 };
    let set = random_set(channels, size, images);
    let net = Net::new(arch, 4, channels, size, tch::Device::Cpu).unwrap();
    let cfg = TrainConfig::adam(1, 32);
    let norm = Normalizer::identity();
    let aug = AugmentConfig::default();
    let epoch = |seed| {
        fit(
            &net,
            &set,
            None,
            &norm,
            &cfg,
            &aug,
            seed,
            &Objective::default(),
            &mut |_, _| {},
        )
        .unwrap()
    };
    epoch(0); // warm-up
    let rates = (1..=EPOCHS)
        .map(|seed| {
            let t = Instant::now();
            epoch(seed);
            images as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    median(rates)
}

/// Timed epochs per process on each side; their median is one sample.
const EPOCHS: u64 = 3;

fn pytorch(model: &str, size: usize, images: usize) -> f64 {
    let v = run_python(
        "torch_train_step.py",
        &[
            "--model",
            model,
            "--size",
            &size.to_string(),
            "--images",
            &images.to_string(),
            "--epochs",
            &EPOCHS.to_string(),
        ],
    );
    v["images_per_s"].as_f64().unwrap()
}

fn main() {
    let reps: usize = env_or("BENCH_REPS", "3").parse().unwrap();
    // VGG-16 trains at a few images per second on a CPU: a smaller epoch keeps its row minutes long.
    let images_for = |model: &str| -> usize {
        let default = if model == "vgg16" { "128" } else { "1024" };
        env_or("BENCH_IMAGES", default).parse().unwrap()
    };
    let size = 64;
    println!(
        "training throughput, {size}x{size} px, batch 32, Adam, {} images/epoch (VGG-16: {}), median of {reps} runs × {EPOCHS} epochs, libtorch threads {}",
        images_for("small_cnn"),
        images_for("vgg16"),
        tch::get_num_threads()
    );
    println!(
        "{:<14} {:>16} {:>16} {:>22}",
        "model", "fedsentry img/s", "PyTorch img/s", "time ratio (ours/torch)"
    );
    for model in env_or("BENCH_MODELS", "small_cnn,mobilenet_v2,vgg16").split(',') {
        let arch = match model {
            "small_cnn" => Arch::SmallCnn,
            "mobilenet_v2" => Arch::MobileNetV2,
            "vgg16" => Arch::Vgg16,
            other => panic!("unknown model {other}"),
        };
        let images = images_for(model);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            a.push(ours(arch, size, images));
            b.push(pytorch(model, size, images));
        }
        let (a, b) = (median(a), median(b));
        println!("{model:<14} {a:>16.1} {b:>16.1} {:>22.3}", b / a);
    }
}
