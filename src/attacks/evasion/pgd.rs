//! PGD (Madry et al., ICLR 2018): BIM from a uniformly random point of the ε-ball.

use super::{Evasion, Logits, Steps, iterate, project};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pgd {
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    #[serde(default = "yes")]
    pub random_start: bool,
    #[serde(default)]
    pub target: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Evasion for Pgd {
    fn name(&self) -> String {
        format!(
            "pgd(eps={},alpha={},steps={})",
            self.eps, self.alpha, self.steps
        )
    }

    fn generate(&self, model: &Logits, x: &Tensor, y: &Tensor, seed: u64) -> Tensor {
        let start = if self.random_start {
            // Seeded on its own generator so results do not depend on other threads' draws.
            let mut rng = StdRng::seed_from_u64(seed);
            let vals: Vec<f32> = (0..x.numel())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let noise = Tensor::from_slice(&vals)
                .view(x.size().as_slice())
                .to_kind(Kind::Float)
                .to_device(x.device());
            project(&(x + noise * self.eps), x, self.eps)
        } else {
            x.shallow_clone()
        };
        let steps = Steps {
            eps: self.eps,
            alpha: self.alpha,
            steps: self.steps,
            target: self.target,
        };
        iterate(model, x, y, &steps, start)
    }
}
