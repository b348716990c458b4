//! Gaussian noise updates: the malicious client sends Δ ~ N(0, σ²) per parameter instead of
//! its training result.

use crate::vector;

pub fn craft(len: usize, sigma: f64, seed: u64) -> Vec<f32> {
    let mut d = vec![0.0f32; len];
    vector::add_gaussian(&mut d, sigma, seed);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_requested_spread() {
        let d = craft(20_000, 2.0, 3);
        let mean = d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64;
        let var = d.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / d.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
        assert_eq!(d, craft(20_000, 2.0, 3));
    }
}
