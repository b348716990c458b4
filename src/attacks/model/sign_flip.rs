//! Sign flipping: the malicious client sends −λ·Δ, pushing the global model against the
//! direction honest training takes.

pub fn craft(delta: &[f32], factor: f64) -> Vec<f32> {
    delta
        .iter()
        .map(|&x| (-(x as f64) * factor) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_scales() {
        assert_eq!(craft(&[1.0, -2.0], 1.0), vec![-1.0, 2.0]);
        assert_eq!(craft(&[0.5], 3.0), vec![-1.5]);
    }
}
