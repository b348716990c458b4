//! PGD on a batch of 64 images (28×28, small CNN, eval mode) next to a plain PyTorch PGD loop from
//! the same virtualenv, for 20 and 40 steps. Runs alternate; medians are compared.
//!
//! Run: ./scripts/bench pgd   [env: BENCH_REPS=3]

use fedsentry::attacks::evasion::{Evasion, logits_of, pgd::Pgd};
use fedsentry::data::normalize::Normalizer;
use fedsentry::models::{Arch, Net};
#[path = "common.rs"]
mod common;

use common::{median, run_python};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const INNER: usize = 5;

fn ours(steps: usize) -> f64 {
    tch::manual_seed(0);
    let net = Net::new(Arch::SmallCnn, 2, 1, 28, Device::Cpu).unwrap();
    let model = logits_of(&net, &Normalizer::identity(), 1);
    let x = Tensor::rand([64, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(2, [64], (Kind::Int64, Device::Cpu));
    let attack = Pgd {
        eps: 0.03,
        alpha: 0.007,
        steps,
        random_start: true,
        target: None,
    };
    let _ = attack.generate(&*model, &x, &y, 0); // warm-up
    let times = (0..INNER as u64)
        .map(|seed| {
            let t = Instant::now();
            let _ = attack.generate(&*model, &x, &y, seed);
            1000.0 * t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

fn pytorch(steps: usize) -> f64 {
    let v = run_python(
        "torch_pgd.py",
        &["--steps", &steps.to_string(), "--reps", &INNER.to_string()],
    );
    v["ms_per_batch"].as_f64().unwrap()
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .unwrap_or_else(|_| "3".into())
        .parse()
        .unwrap();
    println!(
        "PGD, small CNN, batch 64 of 28x28, eps 0.03, alpha 0.007, median of {reps} runs × {INNER} batches, libtorch threads {}",
        tch::get_num_threads()
    );
    println!(
        "{:<8} {:>16} {:>16} {:>22}",
        "steps", "fedsentry ms", "PyTorch ms", "time ratio (ours/torch)"
    );
    for steps in [20, 40] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            a.push(ours(steps));
            b.push(pytorch(steps));
        }
        let (a, b) = (median(a), median(b));
        println!("{steps:<8} {a:>16.2} {b:>16.2} {:>22.3}", a / b);
    }
}
