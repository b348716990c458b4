//! Test-time evasion attacks (after IBM ART: one file per attack, `generate(x, y)`). All are
//! L∞ attacks defined in [0, 1] pixel space: every step is clamped to the ε-ball around the
//! clean image and to the valid pixel range, while the model sees normalized inputs.
//! FGSM is one step of size ε; BIM iterates steps of α; PGD adds a uniform random start.

pub mod bim;
pub mod examples;
pub mod fgsm;
pub mod pgd;

use crate::data::normalize::Normalizer;
use crate::models::Net;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// An evasion attack as written in an experiment file (`kind = "pgd"`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvasionConfig {
    Fgsm(fgsm::Fgsm),
    Bim(bim::Bim),
    Pgd(pgd::Pgd),
}

impl EvasionConfig {
    /// Checks the budget and schedule; errors name `key` (where the attack is configured).
    pub fn validate(&self, key: &str) -> crate::error::Result<()> {
        let (eps, alpha, steps) = match self {
            EvasionConfig::Fgsm(a) => (a.eps, a.eps, 1),
            EvasionConfig::Bim(a) => (a.eps, a.alpha, a.steps),
            EvasionConfig::Pgd(a) => (a.eps, a.alpha, a.steps),
        };
        if !(eps > 0.0 && eps <= 1.0) {
            return Err(crate::error::Error::param(
                format!("{key}.eps"),
                format!("must be within (0, 1], got {eps}"),
            ));
        }
        if !(alpha > 0.0 && alpha.is_finite()) || steps == 0 {
            return Err(crate::error::Error::param(
                key,
                format!("`alpha` must be > 0 and `steps` ≥ 1, got {alpha} and {steps}"),
            ));
        }
        Ok(())
    }

    pub fn attack(&self) -> &dyn Evasion {
        match self {
            EvasionConfig::Fgsm(a) => a,
            EvasionConfig::Bim(a) => a,
            EvasionConfig::Pgd(a) => a,
        }
    }
}

/// A model as the attacks see it: raw pixels (N·C·H·W in [0, 1]) to logits.
pub type Logits<'a> = dyn Fn(&Tensor) -> Tensor + 'a;

/// Logits of a network on raw pixels, normalizing as in training.
pub fn logits_of<'a>(net: &'a Net, norm: &Normalizer, channels: usize) -> Box<Logits<'a>> {
    let bn = norm.on(net.arch.in_channels(channels), net.vs.device());
    Box::new(move |x: &Tensor| net.forward_t(&bn.apply(x), false))
}

/// Predicted classes of `net` on raw pixels.
pub fn predict(net: &Net, norm: &Normalizer, channels: usize, x: &Tensor) -> Vec<i64> {
    let model = logits_of(net, norm, channels);
    let p = tch::no_grad(|| model(x).argmax(1, false));
    Vec::<i64>::try_from(p).expect("class indices")
}

pub trait Evasion {
    fn name(&self) -> String;
    /// Adversarial versions of `x` (raw pixels) for labels `y`: away from `y`
    /// (untargeted), or towards `target` when set.
    fn generate(&self, model: &Logits, x: &Tensor, y: &Tensor, seed: u64) -> Tensor;
}

/// Target class (targeted attacks) for every image of a batch, or the true labels.
fn goal(y: &Tensor, target: Option<i64>) -> Tensor {
    match target {
        Some(t) => y.full_like(t),
        None => y.shallow_clone(),
    }
}

/// The L∞ budget and schedule of an iterative attack.
pub struct Steps {
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    pub target: Option<i64>,
}

/// The shared iteration: `steps` signed-gradient steps of size `alpha`, each projected onto the
/// ε-ball around `x` and [0, 1]; from `start` (x itself, or a random point in the ball).
pub fn iterate(model: &Logits, x: &Tensor, y: &Tensor, s: &Steps, start: Tensor) -> Tensor {
    let goal = goal(y, s.target);
    // Untargeted: climb the loss of the true label; targeted: descend the target's loss.
    let dir = if s.target.is_some() { -1.0 } else { 1.0 };
    let x = x.detach();
    // The box every step is clamped to: the ε-ball around `x` within [0, 1], built once.
    let (lo, hi) = bounds(&x, s.eps);
    let mut adv = start.detach();
    for _ in 0..s.steps {
        let a = adv.detach().set_requires_grad(true);
        let loss = model(&a).cross_entropy_for_logits(&goal);
        let g = Tensor::run_backward(&[loss], &[&a], false, false)
            .pop()
            .expect("one gradient");
        let stepped = a.detach() + g.sign() * (dir * s.alpha);
        adv = stepped.clamp_tensor(Some(&lo), Some(&hi));
    }
    adv
}

fn bounds(x: &Tensor, eps: f64) -> (Tensor, Tensor) {
    ((x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0))
}

/// Clamp to the ε-ball around `x` and to [0, 1].
pub fn project(adv: &Tensor, x: &Tensor, eps: f64) -> Tensor {
    let (lo, hi) = bounds(x, eps);
    adv.clamp_tensor(Some(&lo), Some(&hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// logits = (x₀, x₁): a linear model whose gradients have known signs.
    fn identity_model(x: &Tensor) -> Tensor {
        x.reshape([-1, 2])
    }

    #[test]
    fn fgsm_by_hand_on_a_linear_model() {
        let x = Tensor::from_slice(&[0.5f32, 0.5, 0.05, 0.98]).view([2, 2]);
        let y = Tensor::from_slice(&[0i64, 0]);
        // ∂CE/∂x for label 0 = (p₀ − 1, p₁): signs (−, +) → x + 0.1·(−1, +1), then clamped.
        let adv = fgsm::Fgsm {
            eps: 0.1,
            target: None,
        }
        .generate(&identity_model, &x, &y, 0);
        let got = Vec::<f32>::try_from(adv.reshape([-1])).unwrap();
        let want = [0.4f32, 0.6, 0.0, 1.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        // Targeted at class 1: descend CE(·, 1), whose gradient is (p₀, p₁ − 1): the same step.
        let adv_t = fgsm::Fgsm {
            eps: 0.1,
            target: Some(1),
        }
        .generate(&identity_model, &x, &y, 0);
        assert!(adv_t.allclose(&adv, 1e-6, 1e-6, false));
    }

    #[test]
    fn pgd_stays_in_the_ball_and_the_pixel_range() {
        let net = crate::models::with_torch_rng(Some(1), || {
            Net::new(crate::models::Arch::SmallCnn, 4, 1, 28, Device::Cpu).unwrap()
        });
        let model = logits_of(&net, &Normalizer::identity(), 1);
        let x = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]);
        let eps = 0.03;
        let adv = pgd::Pgd {
            eps,
            alpha: 0.01,
            steps: 10,
            random_start: true,
            target: None,
        }
        .generate(&*model, &x, &y, 5);
        let d = (&adv - &x).abs().max().double_value(&[]);
        assert!(d <= eps + 1e-6, "{d}");
        assert!(adv.min().double_value(&[]) >= 0.0 && adv.max().double_value(&[]) <= 1.0);
        // It moved, and it raised the loss.
        assert!(d > 0.0);
        let loss = |t: &Tensor| model(t).cross_entropy_for_logits(&y).double_value(&[]);
        assert!(loss(&adv) > loss(&x));
    }
}
