//! "A little is enough" (Baruch et al., NeurIPS 2019). All attackers send the same update
//! μ − z·σ (per coordinate mean and standard deviation of the updates they can see), which
//! stays within the honest spread and so passes distance- and median-based rules. The paper's
//! z: s = ⌊n/2 + 1⌋ − f supporters are needed, z = Φ⁻¹((n − s)/n).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Which updates the attackers estimate μ and σ from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Knowledge {
    /// Every update of the round (an omniscient attacker, as most evaluations assume).
    #[default]
    All,
    /// Only the attackers' own honestly trained updates.
    Own,
}

/// The paper's z for n clients of which f are malicious.
pub fn paper_z(n: usize, f: usize) -> f64 {
    let s = (n / 2 + 1) as f64 - f as f64;
    let p = ((n as f64 - s) / n as f64).clamp(0.5, 0.9999);
    Normal::new(0.0, 1.0)
        .expect("standard normal")
        .inverse_cdf(p)
}

pub fn craft(deltas: &[Vec<f32>], malicious: &[bool], z: Option<f64>, k: Knowledge) -> Vec<f32> {
    let seen: Vec<&Vec<f32>> = deltas
        .iter()
        .zip(malicious)
        .filter(|(_, m)| k == Knowledge::All || **m)
        .map(|(d, _)| d)
        .collect();
    let n = deltas.len();
    let f = malicious.iter().filter(|&&m| m).count();
    let z = z.unwrap_or_else(|| paper_z(n, f));
    let m = seen.len() as f64;
    (0..deltas[0].len())
        .map(|j| {
            let mean = seen.iter().map(|d| d[j] as f64).sum::<f64>() / m;
            let var = seen
                .iter()
                .map(|d| (d[j] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            (mean - z * var.sqrt()) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_z_values() {
        // n = 50, f = 12 (the paper's CIFAR setting): s = 26 − 12 = 14, z = Φ⁻¹(36/50) ≈ 0.583.
        assert!((paper_z(50, 12) - 0.5828).abs() < 1e-3);
        // n = 10, f = 1: s = 5, z = Φ⁻¹(0.5) = 0.
        assert!(paper_z(10, 1).abs() < 1e-9);
    }

    #[test]
    fn mean_minus_z_std_by_hand() {
        let d = vec![vec![1.0, 0.0], vec![3.0, 0.0], vec![5.0, 6.0]];
        // All seen: mean (3, 2), population std (√(8/3), √8); z = 1.
        let got = craft(&d, &[false, false, true], Some(1.0), Knowledge::All);
        assert!((got[0] as f64 - (3.0 - (8.0f64 / 3.0).sqrt())).abs() < 1e-6);
        assert!((got[1] as f64 - (2.0 - 8.0f64.sqrt())).abs() < 1e-6);
        // Own only: one attacker, σ = 0 → its own update.
        assert_eq!(
            craft(&d, &[false, false, true], Some(1.0), Knowledge::Own),
            vec![5.0, 6.0]
        );
    }
}
