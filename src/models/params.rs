//! A model as one flat `f32` vector: every variable (weights, biases, batch-norm running
//! statistics) in layer order. This is what clients send and the server aggregates, so that
//! aggregation rules are plain Rust over slices.

use crate::error::{Error, Result};
use crate::models::{Net, layer_order};
use tch::{Device, Kind, Tensor};

/// Variable names in the order their values appear in the flat vector.
pub fn names(net: &Net) -> Vec<String> {
    let mut n: Vec<String> = net.vs.variables().into_keys().collect();
    n.sort_by_key(|k| layer_order(k));
    n
}

/// Positions of the trainable values (weights and biases, not batch-norm statistics) in the
/// flat vector: where noise may go without corrupting running variances.
pub fn trainable_ranges(net: &Net) -> Vec<std::ops::Range<usize>> {
    let vars = net.vs.variables();
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut off = 0;
    for n in names(net) {
        let len = vars[&n].numel();
        if !crate::models::is_buffer(&n) {
            match out.last_mut() {
                Some(r) if r.end == off => r.end = off + len,
                _ => out.push(off..off + len),
            }
        }
        off += len;
    }
    out
}

pub fn flatten(net: &Net) -> Vec<f32> {
    let vars = net.vs.variables();
    let parts: Vec<Tensor> = names(net)
        .iter()
        .map(|n| vars[n].detach().to_kind(Kind::Float).reshape([-1]))
        .collect();
    let flat = Tensor::cat(&parts, 0).to_device(Device::Cpu);
    Vec::<f32>::try_from(&flat).expect("a 1-D float tensor")
}

/// Overwrites every variable of `net` from a flat vector written by [`flatten`].
pub fn load(net: &Net, flat: &[f32]) -> Result<()> {
    let vars = net.vs.variables();
    let order = names(net);
    let total: usize = order.iter().map(|n| vars[n].numel()).sum();
    if total != flat.len() {
        return Err(Error::Invalid(format!(
            "parameter vector has {} values, the {} model has {total}",
            flat.len(),
            net.arch.name()
        )));
    }
    let mut off = 0;
    tch::no_grad(|| {
        for n in &order {
            let mut t = vars[n].shallow_clone();
            let len = t.numel();
            let src = Tensor::from_slice(&flat[off..off + len])
                .view(t.size().as_slice())
                .to_device(t.device())
                .to_kind(t.kind());
            t.copy_(&src);
            off += len;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    #[test]
    fn trainable_ranges_skip_batch_norm_statistics() {
        let net = Net::new(Arch::MobileNetV2, 4, 3, 32, Device::Cpu).unwrap();
        let r = trainable_ranges(&net);
        let covered: usize = r.iter().map(|r| r.len()).sum();
        assert_eq!(covered as i64, net.num_parameters());
        assert!(covered < flatten(&net).len());
        assert!(r.windows(2).all(|w| w[0].end < w[1].start));
    }

    #[test]
    fn flatten_and_load_round_trip() {
        let a = Net::new(Arch::SmallCnn, 4, 1, 28, Device::Cpu).unwrap();
        let b = Net::new(Arch::SmallCnn, 4, 1, 28, Device::Cpu).unwrap();
        let fa = flatten(&a);
        assert_ne!(fa, flatten(&b));
        load(&b, &fa).unwrap();
        assert_eq!(flatten(&b), fa);
        // Batch-norm running statistics travel too.
        assert!(names(&a).iter().any(|n| n.ends_with("running_var")));
        assert!(load(&b, &fa[1..]).is_err());
    }
}
