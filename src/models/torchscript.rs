//! Bring your own model: a TorchScript module exported from PyTorch (`torch.jit.script` or
//! `torch.jit.trace`, then `.save`) trains, is attacked and federates like a built-in model.
//! Its parameters join the model's variable store under their PyTorch names, so optimizers,
//! freezing, weight import/export and FedAvg see them; the layer named as the head is what
//! classifier-only fine-tuning trains. libtorch exposes no buffers of a scripted module, so
//! batch-norm statistics inside it stay with the module (they are not averaged).

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Mutex;
use tch::{CModule, Kind, Tensor, nn};

pub struct Script {
    /// The module and whether it is in training mode (switched only when it changes).
    module: Mutex<(CModule, bool)>,
}

impl Script {
    /// Loads `path` onto `device`, adding its parameters to `vs`; checks that some parameter
    /// lies under `head` and that a zero batch of `channels`×`size`×`size` gives
    /// `num_classes` logits.
    pub fn load(
        path: &Path,
        vs: &nn::VarStore,
        head: &str,
        num_classes: usize,
        channels: usize,
        size: usize,
    ) -> Result<Script> {
        let fail = |m: String| Error::data(path, m);
        if !path.exists() {
            return Err(fail("TorchScript file not found".into()));
        }
        let module = CModule::load_on_device(path, vs.device())
            .map_err(|e| fail(format!("not a TorchScript module: {}", first_line(&e))))?;
        let params = module
            .named_parameters()
            .map_err(|e| fail(format!("cannot list parameters: {}", first_line(&e))))?;
        if params.is_empty() {
            return Err(fail("the module has no parameters to train".into()));
        }
        let prefix = format!("{head}.");
        if !params.iter().any(|(n, _)| n.starts_with(&prefix)) {
            let mut layers: Vec<&str> = Vec::new();
            for (n, _) in &params {
                let top = n.split('.').next().unwrap_or(n);
                if !layers.contains(&top) {
                    layers.push(top);
                }
            }
            return Err(fail(format!(
                "`model.head = \"{head}\"` names no layer of the module (its top-level layers: {})",
                layers.join(", ")
            )));
        }
        for (name, t) in params {
            let mut parts: Vec<&str> = name.split('.').collect();
            let last = parts.pop().expect("a name");
            let p = parts.iter().fold(vs.root(), |p, part| p / *part);
            let _ = p.add(last, t, true);
        }
        let script = Script {
            module: Mutex::new((module, true)),
        };
        let x = Tensor::zeros(
            [1, channels as i64, size as i64, size as i64],
            (Kind::Float, vs.device()),
        );
        let y = tch::no_grad(|| script.try_forward(&x, false)).map_err(|e| {
            fail(format!(
                "forward of a {channels}×{size}×{size} image fails: {e}"
            ))
        })?;
        if y.size() != [1, num_classes as i64] {
            return Err(fail(format!(
                "the module maps a {channels}×{size}×{size} image to shape {:?}, not [1, {num_classes}] logits",
                y.size()
            )));
        }
        Ok(script)
    }

    fn try_forward(&self, x: &Tensor, train: bool) -> std::result::Result<Tensor, String> {
        let mut g = self.module.lock().unwrap_or_else(|e| e.into_inner());
        if g.1 != train {
            if train {
                g.0.set_train()
            } else {
                g.0.set_eval()
            }
            g.1 = train;
        }
        g.0.forward_ts(&[x]).map_err(|e| first_line(&e))
    }

    /// Logits; the module's shape was checked at load, so a failure here is a bug.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.try_forward(x, train)
            .unwrap_or_else(|e| panic!("TorchScript forward failed: {e}"))
    }
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}
