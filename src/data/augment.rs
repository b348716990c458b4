//! Train-only augmentation as one batched affine resampling: horizontal flip, small rotation,
//! zoom and translation, drawn per image from a seeded RNG.

use rand::{RngExt, rngs::StdRng};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub enabled: bool,
    pub hflip: bool,
    /// Maximum rotation in degrees (±).
    pub rotation_deg: f64,
    /// Maximum relative zoom (±), e.g. 0.1 for 90–110 %.
    pub zoom: f64,
    /// Maximum shift as a fraction of the image side (±).
    pub translate: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: false,
            hflip: true,
            rotation_deg: 10.0,
            zoom: 0.1,
            translate: 0.1,
        }
    }
}

impl AugmentConfig {
    /// Applies random transforms to an (N, C, H, W) batch; empty space is filled with zeros.
    pub fn apply(&self, x: &Tensor, rng: &mut StdRng) -> Tensor {
        if !self.enabled {
            return x.shallow_clone();
        }
        let n = x.size()[0];
        let mut theta = Vec::with_capacity(n as usize * 6);
        for _ in 0..n {
            let flip = if self.hflip && rng.random_bool(0.5) {
                -1.0
            } else {
                1.0
            };
            let angle = rng
                .random_range(-self.rotation_deg..=self.rotation_deg)
                .to_radians();
            let scale = 1.0 / rng.random_range(1.0 - self.zoom..=1.0 + self.zoom);
            let tx = rng.random_range(-self.translate..=self.translate) * 2.0;
            let ty = rng.random_range(-self.translate..=self.translate) * 2.0;
            let (s, c) = angle.sin_cos();
            // Output→input sampling grid in normalized [-1, 1] coordinates.
            theta.extend_from_slice(&[
                (scale * c * flip) as f32,
                (-scale * s) as f32,
                tx as f32,
                (scale * s * flip) as f32,
                (scale * c) as f32,
                ty as f32,
            ]);
        }
        let theta = Tensor::from_slice(&theta)
            .view([n, 2, 3])
            .to_device(x.device())
            .to_kind(x.kind());
        let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
        x.grid_sampler(&grid, 0, 0, false).to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn identity_when_disabled_and_shape_kept() {
        let x = Tensor::rand([3, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
        let mut rng = StdRng::seed_from_u64(0);
        let off = AugmentConfig::default();
        assert!(off.apply(&x, &mut rng).equal(&x));
        let flip_only = AugmentConfig {
            enabled: true,
            hflip: true,
            rotation_deg: 0.0,
            zoom: 0.0,
            translate: 0.0,
        };
        let y = flip_only.apply(&x, &mut rng);
        assert_eq!(y.size(), x.size());
        // Each image is either unchanged or mirrored.
        for i in 0..3 {
            let (xi, yi) = (x.get(i), y.get(i));
            let same = (&xi - &yi).abs().max().double_value(&[]) < 1e-5;
            let mirrored = (&xi.flip([2]) - &yi).abs().max().double_value(&[]) < 1e-5;
            assert!(same || mirrored);
        }
    }
}
