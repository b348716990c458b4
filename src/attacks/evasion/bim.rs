//! BIM, the basic iterative method (Kurakin et al., 2017): FGSM steps of size α, each clipped to
//! the ε-ball around the clean image and to [0, 1].

use super::{Evasion, Logits, Steps, iterate};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bim {
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    #[serde(default)]
    pub target: Option<i64>,
}

impl Evasion for Bim {
    fn name(&self) -> String {
        format!(
            "bim(eps={},alpha={},steps={})",
            self.eps, self.alpha, self.steps
        )
    }

    fn generate(&self, model: &Logits, x: &Tensor, y: &Tensor, _seed: u64) -> Tensor {
        let steps = Steps {
            eps: self.eps,
            alpha: self.alpha,
            steps: self.steps,
            target: self.target,
        };
        iterate(model, x, y, &steps, x.shallow_clone())
    }
}
