//! Weight import into a model by name and shape, from safetensors or PyTorch (`.pth`/`.pt`)
//! files, with a report of every tensor that does not fit; nothing is copied unless all do.

use super::{Net, pth};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// What happens to the classifier head's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Keep the model's fresh head: the file's (e.g. ImageNet's 1000 classes) is ignored.
    Reinit,
    /// Load the head too; it must fit like every other tensor.
    Load,
}

/// What an import did and what did not fit.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub loaded: usize,
    /// Model tensors the file lacks.
    pub missing: Vec<String>,
    /// File tensors the model lacks.
    pub unexpected: Vec<String>,
    /// (name, shape in the file, shape in the model).
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// Head tensors left as initialized.
    pub reinitialized: Vec<String>,
}

impl ImportReport {
    pub fn fits(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// The lines of the mismatch report (empty when everything fits).
    pub fn problems(&self) -> String {
        fn list(out: &mut String, what: &str, items: &[String]) {
            if items.is_empty() {
                return;
            }
            const SHOWN: usize = 8;
            let mut line = items[..items.len().min(SHOWN)].join(", ");
            if items.len() > SHOWN {
                line += &format!(", … and {} more", items.len() - SHOWN);
            }
            out.push_str(&format!("\n  {what} ({}): {line}", items.len()));
        }
        let mut out = String::new();
        list(&mut out, "missing from the file", &self.missing);
        list(&mut out, "unexpected in the file", &self.unexpected);
        let shapes: Vec<String> = self
            .mismatched
            .iter()
            .map(|(n, f, m)| format!("{n}: file {f:?}, model {m:?}"))
            .collect();
        list(&mut out, "shape mismatch", &shapes);
        out
    }
}

/// Reads a weight file by its content: safetensors, a PyTorch zip archive or the legacy
/// PyTorch format.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut head = [0u8; 9];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| Error::io(path, e))?;
    // safetensors: an 8-byte header length, then the JSON header.
    if n == 9 && head[8] == b'{' {
        return Tensor::read_safetensors(path)
            .map_err(|e| Error::data(path, format!("not a valid safetensors file: {e}")));
    }
    pth::read(path)
}

/// Copies the tensors of `path` into `net` by name. Names saved through `nn.DataParallel`
/// (`module.` prefix) are accepted, batch-norm counters (`num_batches_tracked`) ignored.
/// Fails, changing nothing, unless every non-head tensor of the model is in the file with its
/// shape and the file has nothing the model lacks.
pub fn load(net: &Net, path: &Path, head: Head) -> Result<ImportReport> {
    let mut file: BTreeMap<String, Tensor> = BTreeMap::new();
    let tensors = read(path)?;
    let strip = tensors.iter().all(|(n, _)| n.starts_with("module."));
    for (n, t) in tensors {
        let n = if strip {
            n["module.".len()..].to_string()
        } else {
            n
        };
        if !n.ends_with("num_batches_tracked") {
            file.insert(n, t);
        }
    }
    let head_prefix = net.head_prefix();
    let vars: BTreeMap<String, Tensor> = net.vs.variables().into_iter().collect();
    let mut report = ImportReport::default();
    let mut copies = Vec::new();
    for (name, var) in &vars {
        if head == Head::Reinit && name.starts_with(head_prefix) {
            report.reinitialized.push(name.clone());
            continue;
        }
        match file.get(name) {
            None => report.missing.push(name.clone()),
            Some(t) if t.size() != var.size() => {
                report.mismatched.push((name.clone(), t.size(), var.size()))
            }
            Some(t) => copies.push((var, t)),
        }
    }
    report.unexpected = file
        .keys()
        .filter(|n| !vars.contains_key(*n))
        .filter(|n| head == Head::Load || !n.starts_with(head_prefix))
        .cloned()
        .collect();
    if !report.fits() {
        return Err(Error::data(
            path,
            format!(
                "weights do not fit model `{}` ({} classes):{}",
                net.arch.name(),
                net.num_classes,
                report.problems()
            ),
        ));
    }
    tch::no_grad(|| {
        for (var, t) in &copies {
            var.shallow_clone()
                .copy_(&t.to_kind(var.kind()).to_device(var.device()));
        }
    });
    report.loaded = copies.len();
    Ok(report)
}
