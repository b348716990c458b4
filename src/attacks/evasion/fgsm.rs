//! FGSM (Goodfellow et al., ICLR 2015): x' = clip(x + ε·sign(∇ₓ L(x, y))), one step.

use super::{Evasion, Logits, Steps, iterate};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fgsm {
    pub eps: f64,
    /// Class index to push every input towards (targeted); untargeted when absent.
    #[serde(default)]
    pub target: Option<i64>,
}

impl Evasion for Fgsm {
    fn name(&self) -> String {
        format!("fgsm(eps={})", self.eps)
    }

    fn generate(&self, model: &Logits, x: &Tensor, y: &Tensor, _seed: u64) -> Tensor {
        let step = Steps {
            eps: self.eps,
            alpha: self.eps,
            steps: 1,
            target: self.target,
        };
        iterate(model, x, y, &step, x.shallow_clone())
    }
}
