//! Update scaling / model replacement (Bagdasaryan et al., AISTATS 2020): Δ ← λ·Δ, so that a
//! backdoored update survives being averaged with n − 1 honest ones.

pub fn craft(delta: &[f32], factor: f64) -> Vec<f32> {
    delta.iter().map(|&x| (x as f64 * factor) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::model::ModelPoisoning;
    use crate::vector::unit_updates as updates;

    #[test]
    fn scales_only_malicious_updates() {
        assert_eq!(craft(&[1.0, -2.0], 10.0), vec![10.0, -20.0]);
        let mut u = updates(&[&[2.0, 2.0], &[3.0, 1.0]]);
        ModelPoisoning::Scaling { factor: 4.0 }.apply(&[1.0, 1.0], &mut u, &[false, true], 0);
        assert_eq!(u[0].params, vec![2.0, 2.0]);
        // Δ = (2, 0) → (8, 0) → w = (9, 1).
        assert_eq!(u[1].params, vec![9.0, 1.0]);
    }
}
