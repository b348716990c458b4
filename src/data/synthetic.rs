//! Synthetic brain-MRI phantoms: the built-in default dataset.
//!
//! Each image is an axial slice drawn from a parametric head model: dark background, a bright
//! scalp/fat ring over a dark skull table, textured cortex with gyri, brighter white matter and two
//! lateral ventricles, under a random pose, contrast curve and Rician noise. Lesions follow the
//! anatomy of the four Kaggle classes:
//! - glioma: irregular, infiltrative mass inside the parenchyma, often with a necrotic core and a
//!   surrounding edema halo, pushing the ventricles aside;
//! - meningioma: round, sharply bounded, homogeneous, broad-based on the inner skull table;
//! - pituitary: small bright lesion on the midline, central-inferior (sella);
//! - notumor: none.
//!
//! Lesion contrast and size vary down to barely visible and every class gets small vessel-like
//! bright spots, so a small CNN does not reach 100%.
//!
//! Every image has its own RNG seeded from (seed, split, class, index), so the output does not
//! depend on thread count or generation order.

use super::ImageSet;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

pub const CLASSES: [&str; 4] = ["glioma", "meningioma", "notumor", "pituitary"];

#[derive(Debug, Clone)]
pub struct PhantomConfig {
    pub seed: u64,
    pub size: usize,
    pub train_per_class: usize,
    pub test_per_class: usize,
    /// Multiplies lesion contrast; 1.0 is the calibrated default, smaller is harder.
    pub lesion_contrast: f32,
    /// Scales the noise level.
    pub noise: f32,
    /// A subset of [`CLASSES`] in label order (empty: all four), e.g. `["notumor", "glioma"]`
    /// for a two-class task. Each image is the one the four-class set holds.
    pub classes: Vec<String>,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig {
            seed: 0,
            size: 64,
            train_per_class: 500,
            test_per_class: 150,
            lesion_contrast: 1.0,
            noise: 1.0,
            classes: Vec::new(),
        }
    }
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64 finaliser: decorrelates neighbouring seeds.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn image_seed(seed: u64, split: u64, class: u64, index: u64) -> u64 {
    mix(mix(mix(mix(seed) ^ split) ^ class) ^ index)
}

/// Generates one split (`split` 0 = train, 1 = test, anything else = extra sets).
pub fn generate_split(cfg: &PhantomConfig, split: u64, per_class: usize) -> ImageSet {
    let chosen: Vec<usize> = if cfg.classes.is_empty() {
        (0..CLASSES.len()).collect()
    } else {
        cfg.classes
            .iter()
            .filter_map(|n| CLASSES.iter().position(|c| c == n))
            .collect()
    };
    let classes: Vec<String> = chosen.iter().map(|&c| CLASSES[c].to_string()).collect();
    let jobs: Vec<(usize, usize)> = chosen
        .iter()
        .flat_map(|&c| (0..per_class).map(move |i| (c, i)))
        .collect();
    let images: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&(c, i)| {
            let mut rng = StdRng::seed_from_u64(image_seed(cfg.seed, split, c as u64, i as u64));
            render(cfg, c, &mut rng)
        })
        .collect();
    let mut set = ImageSet::empty(1, cfg.size, cfg.size, classes);
    set.pixels.reserve(jobs.len() * cfg.size * cfg.size);
    for (&(c, i), img) in jobs.iter().zip(images) {
        let label = chosen.iter().position(|&k| k == c).expect("a chosen class");
        set.push(
            &img,
            label as i64,
            format!("phantom-{}-{}-{i:05}", split, CLASSES[c]),
        );
    }
    set
}

/// Train and test sets of the default task.
pub fn generate(cfg: &PhantomConfig) -> super::Dataset {
    super::Dataset {
        name: format!("synthetic-mri(seed={}, {}px)", cfg.seed, cfg.size),
        train: generate_split(cfg, 0, cfg.train_per_class),
        test: generate_split(cfg, 1, cfg.test_per_class),
        notes: Vec::new(),
    }
}

/// A few low-frequency plane waves: cheap smooth texture.
struct Waves(Vec<(f32, f32, f32, f32)>);

impl Waves {
    fn new(rng: &mut StdRng, n: usize, freq: (f32, f32), amp: f32) -> Self {
        Waves(
            (0..n)
                .map(|_| {
                    let f = rng.random_range(freq.0..freq.1);
                    let a = rng.random_range(0.0..std::f32::consts::TAU);
                    (
                        f * a.cos(),
                        f * a.sin(),
                        rng.random_range(0.0..std::f32::consts::TAU),
                        amp,
                    )
                })
                .collect(),
        )
    }
    fn at(&self, u: f32, v: f32) -> f32 {
        self.0
            .iter()
            .map(|&(kx, ky, p, a)| a * (kx * u + ky * v + p).sin())
            .sum::<f32>()
            / (self.0.len() as f32).sqrt()
    }
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Soft inside-indicator of an ellipse in head coordinates.
#[allow(clippy::too_many_arguments)]
fn ellipse(u: f32, v: f32, cu: f32, cv: f32, au: f32, av: f32, rot: f32, soft: f32) -> f32 {
    let (s, c) = rot.sin_cos();
    let du = u - cu;
    let dv = v - cv;
    let x = (c * du + s * dv) / au;
    let y = (-s * du + c * dv) / av;
    let r = (x * x + y * y).sqrt();
    1.0 - smoothstep(1.0 - soft, 1.0 + soft, r)
}

struct Lesion {
    cu: f32,
    cv: f32,
    radius: f32,
    harmonics: Vec<(f32, f32, f32)>,
    edge: f32,
    value: f32,
    core: Option<f32>,
    edema: f32,
    texture: f32,
}

impl Lesion {
    /// (mask, core mask, edema weight) at a point in head coordinates.
    fn at(&self, u: f32, v: f32) -> (f32, f32, f32) {
        let du = u - self.cu;
        let dv = v - self.cv;
        let d = (du * du + dv * dv).sqrt();
        let phi = dv.atan2(du);
        let rb = self.radius
            * (1.0
                + self
                    .harmonics
                    .iter()
                    .map(|&(k, p, a)| a * (k * phi + p).sin())
                    .sum::<f32>());
        let w = self.edge * self.radius;
        let mask = 1.0 - smoothstep(rb - w, rb + w, d);
        let core = if self.core.is_some() {
            1.0 - smoothstep(0.35 * rb, 0.5 * rb, d)
        } else {
            0.0
        };
        let edema = if self.edema > 0.0 {
            (1.0 - smoothstep(rb, 1.7 * rb, d)) * (1.0 - mask)
        } else {
            0.0
        };
        (mask, core, edema)
    }
}

fn render(cfg: &PhantomConfig, class: usize, rng: &mut StdRng) -> Vec<f32> {
    let s = cfg.size as f32;
    let n01 = Normal::new(0.0f32, 1.0).unwrap();
    // Pose of the head ellipse.
    let cx = s / 2.0 + 0.03 * s * n01.sample(rng);
    let cy = s / 2.0 + 0.03 * s * n01.sample(rng);
    let a = s * rng.random_range(0.33..0.40);
    let b = a * rng.random_range(1.08..1.25);
    let theta = rng.random_range(-0.25f32..0.25);
    let (st, ct) = theta.sin_cos();

    // Anatomy.
    let texture = Waves::new(rng, 6, (6.0, 16.0), 0.035);
    let gyri_phase = rng.random_range(0.0..std::f32::consts::TAU);
    let gyri_freq = rng.random_range(11.0..17.0);
    let wm_level = rng.random_range(0.08..0.14);
    let vent_scale = rng.random_range(0.6..1.35);
    let skull_w = rng.random_range(0.03..0.06);

    let contrast = cfg.lesion_contrast * rng.random_range(0.6f32..1.0);
    let mut vent_shift = (0.0f32, 0.0f32);
    let lesion = match class {
        0 => {
            let ang = rng.random_range(0.0..std::f32::consts::TAU);
            let rr = rng.random_range(0.2..0.55);
            let (cu, cv) = (rr * ang.cos(), rr * ang.sin());
            vent_shift = (-0.08 * ang.cos(), -0.08 * ang.sin());
            Some(Lesion {
                cu,
                cv,
                radius: rng.random_range(0.15..0.28),
                harmonics: (0..3)
                    .map(|k| {
                        (
                            (3 + 2 * k) as f32,
                            rng.random_range(0.0..std::f32::consts::TAU),
                            rng.random_range(0.06..0.22),
                        )
                    })
                    .collect(),
                edge: rng.random_range(0.15..0.35),
                value: 0.74,
                core: rng.random_bool(0.6).then_some(0.16),
                edema: rng.random_range(0.08..0.16),
                texture: 0.12,
            })
        }
        1 => {
            let ang = rng.random_range(0.0..std::f32::consts::TAU);
            let radius = rng.random_range(0.13..0.22);
            let rr = 0.84 - 0.75 * radius;
            Some(Lesion {
                cu: rr * ang.cos(),
                cv: rr * ang.sin(),
                radius,
                harmonics: vec![(2.0, rng.random_range(0.0..std::f32::consts::TAU), 0.04)],
                edge: 0.06,
                value: rng.random_range(0.74..0.84),
                core: None,
                edema: 0.0,
                texture: 0.03,
            })
        }
        3 => Some(Lesion {
            cu: 0.03 * n01.sample(rng),
            cv: 0.42 + 0.05 * n01.sample(rng),
            radius: rng.random_range(0.10..0.15),
            harmonics: vec![(2.0, rng.random_range(0.0..std::f32::consts::TAU), 0.08)],
            edge: 0.15,
            value: 0.85,
            core: None,
            edema: 0.0,
            texture: 0.05,
        }),
        _ => None,
    };
    // Vessel-like bright dots in every class, so "a small bright blob" alone is no giveaway.
    let dots: Vec<(f32, f32, f32)> = (0..rng.random_range(0..3))
        .map(|_| {
            let ang = rng.random_range(0.0..std::f32::consts::TAU);
            let rr = rng.random_range(0.1..0.75);
            (
                rr * ang.cos(),
                rr * ang.sin(),
                rng.random_range(0.025..0.04),
            )
        })
        .collect();

    // Acquisition.
    let gamma = rng.random_range(0.8f32..1.25);
    let gain = rng.random_range(0.85f32..1.1);
    let sigma = cfg.noise * rng.random_range(0.02f32..0.06);
    let bias = Waves::new(rng, 2, (0.5, 1.5), 0.08);

    let mut out = vec![0f32; cfg.size * cfg.size];
    for py in 0..cfg.size {
        for px in 0..cfg.size {
            let dx = px as f32 + 0.5 - cx;
            let dy = py as f32 + 0.5 - cy;
            // Head coordinates: unit circle = outer scalp boundary.
            let u = (ct * dx + st * dy) / a;
            let v = (-st * dx + ct * dy) / b;
            let r = (u * u + v * v).sqrt();
            let mut val = 0.0f32;
            if r < 1.05 {
                // Thin bright scalp/fat band, dark bone table, then the brain.
                let scalp = smoothstep(1.03, 0.98, r) * smoothstep(0.91, 0.94, r);
                let edge = 0.92 - skull_w;
                let brain_mask = smoothstep(edge, edge - 0.03, r);
                let rb = r / edge;
                let phi = v.atan2(u);
                let gyri = 0.07
                    * (gyri_freq * phi + 9.0 * rb + gyri_phase).sin()
                    * smoothstep(0.55, 0.9, rb);
                let wm = wm_level * smoothstep(0.7, 0.45, rb);
                let mut tissue = 0.40 + gyri + wm + texture.at(u, v);
                // Ventricles: darker CSF, mirrored, shifted by mass effect.
                let vu = u - vent_shift.0;
                let vv = v - vent_shift.1;
                let vent = ellipse(
                    vu,
                    vv,
                    0.11,
                    -0.05,
                    0.06 * vent_scale,
                    0.22 * vent_scale,
                    0.25,
                    0.25,
                )
                .max(ellipse(
                    vu,
                    vv,
                    -0.11,
                    -0.05,
                    0.06 * vent_scale,
                    0.22 * vent_scale,
                    -0.25,
                    0.25,
                ));
                tissue = tissue * (1.0 - vent) + 0.10 * vent;
                for &(du, dv, rad) in &dots {
                    let d = ((u - du).powi(2) + (v - dv).powi(2)).sqrt();
                    tissue += 0.2 * (1.0 - smoothstep(0.5 * rad, rad, d));
                }
                if let Some(l) = &lesion {
                    let (mask, core, edema) = l.at(u, v);
                    let lesion_val = l.value + l.texture * texture.at(3.0 * u, 3.0 * v) / 0.035;
                    let mut target = tissue * (1.0 - mask) + lesion_val * mask;
                    if let Some(cv) = l.core {
                        target = target * (1.0 - core) + cv * core;
                    }
                    target += l.edema * edema;
                    tissue += contrast * (target - tissue);
                }
                val = 0.82 * scalp + tissue * brain_mask;
                val *= 1.0 + bias.at(u, v);
            }
            let val = gain * val.clamp(0.0, 1.0).powf(gamma);
            // Rician noise: magnitude of a complex signal with Gaussian noise in both parts.
            let re = val + sigma * n01.sample(rng);
            let im = sigma * n01.sample(rng);
            out[py * cfg.size + px] = (re * re + im * im).sqrt().clamp(0.0, 1.0);
        }
    }
    out
}

/// Writes a set as `<root>/<split>/<class>/<source>.png` (8-bit grayscale or RGB).
pub fn write_image_folder(
    set: &ImageSet,
    root: &std::path::Path,
    split: &str,
) -> crate::Result<usize> {
    use crate::error::Error;
    for (i, label) in set.labels.iter().enumerate() {
        let dir = root.join(split).join(&set.classes[*label as usize]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{}.png", set.sources[i]));
        super::folder::save_png(set, i, &path)?;
    }
    Ok(set.len())
}

/// A contact sheet: `per_class` images of each class in a row, upscaled `scale`×.
pub fn write_preview(
    set: &ImageSet,
    per_class: usize,
    scale: usize,
    path: &std::path::Path,
) -> crate::Result<()> {
    let (h, w) = (set.height, set.width);
    let k = set.num_classes();
    let (cw, ch) = (per_class * w * scale, k * h * scale);
    let mut canvas = image::GrayImage::new(cw as u32, ch as u32);
    for c in 0..k {
        let idx: Vec<usize> = (0..set.len())
            .filter(|&i| set.labels[i] as usize == c)
            .take(per_class)
            .collect();
        for (j, &i) in idx.iter().enumerate() {
            let img = set.image(i);
            for y in 0..h * scale {
                for x in 0..w * scale {
                    let v = (img[(y / scale) * w + x / scale].clamp(0.0, 1.0) * 255.0) as u8;
                    canvas.put_pixel(
                        (j * w * scale + x) as u32,
                        (c * h * scale + y) as u32,
                        image::Luma([v]),
                    );
                }
            }
        }
    }
    canvas
        .save(path)
        .map_err(|e| crate::Error::data(path, format!("cannot write PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let cfg = PhantomConfig {
            size: 32,
            train_per_class: 3,
            test_per_class: 2,
            ..Default::default()
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.train.pixels, b.train.pixels);
        assert_eq!(a.train.class_counts(), vec![3; 4]);
        assert_eq!(a.test.class_counts(), vec![2; 4]);
        let c = generate(&PhantomConfig { seed: 1, ..cfg });
        assert_ne!(a.train.pixels, c.train.pixels);
        assert!(a.train.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn head_on_dark_background() {
        let cfg = PhantomConfig {
            size: 64,
            train_per_class: 2,
            test_per_class: 0,
            ..Default::default()
        };
        let set = generate_split(&cfg, 0, 2);
        for i in 0..set.len() {
            let img = set.image(i);
            let corner: f32 = (0..4)
                .flat_map(|y| (0..4).map(move |x| (x, y)))
                .map(|(x, y)| img[y * 64 + x])
                .sum::<f32>()
                / 16.0;
            let center: f32 = (28..36)
                .flat_map(|y| (28..36).map(move |x| (x, y)))
                .map(|(x, y)| img[y * 64 + x])
                .sum::<f32>()
                / 64.0;
            assert!(corner < 0.2, "background too bright: {corner}");
            assert!(
                center > corner + 0.1,
                "no head in the middle: {center} vs {corner}"
            );
        }
    }
}
