//! Backdoor (trigger) poisoning: stamp a small pattern on a share of the training images and
//! relabel them to a target class; at test time the same trigger should steer the model there.

use super::selection::{Selection, select};
use super::{PoisonReport, check_rate, class_id};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Every trigger pixel equals `value`.
    #[default]
    Solid,
    /// Alternating `value` and `1 - value`, starting with `value` at the top-left.
    Checkerboard,
    /// A fixed pseudo-random pattern in [0, 1] drawn from `seed` (Blended, Chen et al. 2017,
    /// when it covers the whole image at `alpha` = 0.2).
    Random,
    /// SIG (Barni et al. 2019): a horizontal sinusoid v(j) = `value`·sin(2π·j·`frequency`/size)
    /// added to the pixels (clipped to [0, 1]) rather than pasted; the paper: Δ = 20/255,
    /// f = 6, over the whole image, poisoning target-class images only without relabelling.
    Sinusoid,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    #[default]
    BottomRight,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Fixed: `margin` pixels from the two image edges meeting at `corner`.
    #[default]
    Corner,
    /// Per image, uniformly inside the quadrant at `corner`, `margin` pixels from its borders.
    Quadrant,
    /// Per image, uniformly anywhere, `margin` pixels from the image border.
    Random,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Trigger {
    /// Side of the square trigger in pixels.
    pub size: usize,
    pub pattern: Pattern,
    /// Pixel value in [0, 1] (before normalization).
    pub value: f32,
    pub placement: Placement,
    pub corner: Corner,
    pub margin: usize,
    /// Blending: pixel = (1 − alpha)·pixel + alpha·trigger; 1 pastes the trigger.
    pub alpha: f32,
    /// Periods across the trigger of the `sinusoid` pattern.
    #[serde(skip_serializing_if = "is_six")]
    pub frequency: f32,
    /// Seeds the random pattern and per-image positions.
    pub seed: u64,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            size: 4,
            pattern: Pattern::Solid,
            value: 1.0,
            placement: Placement::Corner,
            corner: Corner::BottomRight,
            margin: 2,
            alpha: 1.0,
            frequency: 6.0,
            seed: 0,
        }
    }
}

// Settings of older files serialize as before (their cache keys stay).
fn is_six(f: &f32) -> bool {
    *f == 6.0
}

impl Trigger {
    pub fn validate(&self, height: usize, width: usize) -> Result<()> {
        let need = self.size + 2 * self.margin;
        let room = match self.placement {
            Placement::Quadrant => (height / 2).min(width / 2),
            _ => height.min(width),
        };
        if self.size == 0 || need > room {
            return Err(Error::param(
                "trigger.size",
                format!(
                    "{} with `trigger.margin` {} does not fit a {width}×{height} image ({:?} placement)",
                    self.size, self.margin, self.placement
                ),
            ));
        }
        if !(self.frequency > 0.0 && self.frequency.is_finite()) {
            return Err(Error::param(
                "trigger.frequency",
                format!("must be > 0, got {}", self.frequency),
            ));
        }
        if !(0.0..=1.0).contains(&self.value) || !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::param(
                "trigger.value",
                "and `trigger.alpha` must be within 0..=1",
            ));
        }
        Ok(())
    }

    /// The trigger's own pixels, row-major `size`×`size`.
    pub fn pixels(&self) -> Vec<f32> {
        let s = self.size;
        match self.pattern {
            Pattern::Solid => vec![self.value; s * s],
            Pattern::Checkerboard => (0..s * s)
                .map(|i| {
                    if (i / s + i % s).is_multiple_of(2) {
                        self.value
                    } else {
                        1.0 - self.value
                    }
                })
                .collect(),
            Pattern::Random => {
                let mut rng = StdRng::seed_from_u64(self.seed ^ crate::seed::stream::TRIGGER);
                (0..s * s).map(|_| rng.random::<f32>()).collect()
            }
            Pattern::Sinusoid => (0..s * s)
                .map(|i| {
                    let j = (i % s) as f32;
                    self.value * (2.0 * std::f32::consts::PI * j * self.frequency / s as f32).sin()
                })
                .collect(),
        }
    }

    /// Top-left (x, y) of the trigger on image number `index`.
    pub fn position(&self, height: usize, width: usize, index: usize) -> (usize, usize) {
        let (s, m) = (self.size, self.margin);
        let (right, bottom) = match self.corner {
            Corner::TopLeft => (false, false),
            Corner::TopRight => (true, false),
            Corner::BottomLeft => (false, true),
            Corner::BottomRight => (true, true),
        };
        match self.placement {
            Placement::Corner => (
                if right { width - m - s } else { m },
                if bottom { height - m - s } else { m },
            ),
            Placement::Quadrant | Placement::Random => {
                let mut rng = StdRng::seed_from_u64(
                    self.seed
                        .wrapping_mul(crate::seed::step::GOLDEN32)
                        .wrapping_add(index as u64),
                );
                let (x0, x1, y0, y1) = if self.placement == Placement::Random {
                    (0, width, 0, height)
                } else {
                    let (hw, hh) = (width / 2, height / 2);
                    let (x0, y0) = (
                        if right { width - hw } else { 0 },
                        if bottom { height - hh } else { 0 },
                    );
                    (x0, x0 + hw, y0, y0 + hh)
                };
                (
                    rng.random_range(x0 + m..=x1 - m - s),
                    rng.random_range(y0 + m..=y1 - m - s),
                )
            }
        }
    }

    /// Stamps the trigger on every channel of a CHW image.
    pub fn stamp(
        &self,
        img: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        index: usize,
    ) {
        let (x, y) = self.position(height, width, index);
        let pattern = self.pixels();
        let s = self.size;
        for c in 0..channels {
            for dy in 0..s {
                for dx in 0..s {
                    let p = &mut img[c * height * width + (y + dy) * width + x + dx];
                    let t = pattern[dy * s + dx];
                    *p = match self.pattern {
                        Pattern::Sinusoid => (*p + self.alpha * t).clamp(0.0, 1.0),
                        _ => (1.0 - self.alpha) * *p + self.alpha * t,
                    };
                }
            }
        }
    }

    /// A copy of `set` with the trigger on every image; labels stay the true ones.
    pub fn apply_all(&self, set: &ImageSet) -> ImageSet {
        let mut out = set.clone();
        // Test images get positions disjoint from training indices' streams.
        let offset = 1usize << 40;
        for i in 0..out.len() {
            let (c, h, w) = (out.channels, out.height, out.width);
            self.stamp(out.image_mut(i), c, h, w, offset + i);
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backdoor {
    /// Class the trigger should produce (name or index).
    pub target: String,
    /// Share of the whole training set that is poisoned.
    pub rate: f64,
    #[serde(default)]
    pub selection: Selection,
    /// Poison only images of these classes (empty: all classes).
    #[serde(default)]
    pub source_classes: Vec<String>,
    /// Never pick images that already belong to the target class.
    #[serde(default = "yes")]
    pub exclude_target: bool,
    /// Relabel poisoned images to the target (false: clean-label, trigger only).
    #[serde(default = "yes")]
    pub relabel: bool,
    #[serde(default)]
    pub trigger: Trigger,
}

fn yes() -> bool {
    true
}

impl Backdoor {
    pub fn validate(&self, classes: &[String]) -> Result<()> {
        class_id(classes, &self.target, "attack.target")?;
        for c in &self.source_classes {
            class_id(classes, c, "attack.source_classes")?;
        }
        check_rate(self.rate, "attack.rate")
    }

    pub fn target_id(&self, classes: &[String]) -> Result<i64> {
        class_id(classes, &self.target, "attack.target")
    }

    fn allowed(&self, classes: &[String]) -> Result<Vec<bool>> {
        let target = self.target_id(classes)?;
        let mut allowed = vec![self.source_classes.is_empty(); classes.len()];
        for c in &self.source_classes {
            allowed[class_id(classes, c, "attack.source_classes")? as usize] = true;
        }
        if self.exclude_target {
            allowed[target as usize] = false;
        }
        Ok(allowed)
    }

    pub fn poison(&self, set: &mut ImageSet, seed: u64) -> Result<PoisonReport> {
        self.validate(&set.classes)?;
        self.trigger.validate(set.height, set.width)?;
        let target = self.target_id(&set.classes)?;
        let indices = select(
            set,
            self.rate,
            &self.allowed(&set.classes)?,
            self.selection,
            seed,
        )?;
        let mut per_class = vec![0; set.num_classes()];
        let (c, h, w) = (set.channels, set.height, set.width);
        for &i in &indices {
            per_class[set.labels[i] as usize] += 1;
            self.trigger.stamp(set.image_mut(i), c, h, w, i);
            if self.relabel {
                set.labels[i] = target;
            }
        }
        Ok(PoisonReport {
            indices,
            per_class,
            of: set.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(n_per_class: usize, side: usize) -> ImageSet {
        let classes: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut set = ImageSet::empty(1, side, side, classes);
        for c in 0..4 {
            for i in 0..n_per_class * (c + 1) {
                set.push(&vec![0.0; side * side], c as i64, format!("{c}-{i}"));
            }
        }
        set
    }

    #[test]
    fn corner_trigger_pixel_by_pixel() {
        let t = Trigger {
            size: 4,
            margin: 2,
            ..Default::default()
        };
        let mut img = vec![0.0f32; 16 * 16];
        t.stamp(&mut img, 1, 16, 16, 0);
        for y in 0..16 {
            for x in 0..16 {
                let inside = (10..14).contains(&x) && (10..14).contains(&y);
                assert_eq!(
                    img[y * 16 + x],
                    if inside { 1.0 } else { 0.0 },
                    "pixel ({x},{y})"
                );
            }
        }
        let tl = Trigger {
            corner: Corner::TopLeft,
            margin: 0,
            size: 2,
            pattern: Pattern::Checkerboard,
            value: 0.8,
            ..Default::default()
        };
        let mut img = vec![0.5f32; 2 * 6 * 6];
        tl.stamp(&mut img, 2, 6, 6, 0);
        for c in 0..2 {
            let o = c * 36;
            assert!((img[o] - 0.8).abs() < 1e-6 && (img[o + 1] - 0.2).abs() < 1e-6);
            assert!((img[o + 6] - 0.2).abs() < 1e-6 && (img[o + 7] - 0.8).abs() < 1e-6);
            assert_eq!(img[o + 2], 0.5);
        }
    }

    #[test]
    fn sig_adds_a_sinusoid_over_the_image() {
        // Δ = 20/255, f = 3 periods across a 12-pixel-wide trigger; added, clipped to [0, 1].
        let t = Trigger {
            pattern: Pattern::Sinusoid,
            value: 20.0 / 255.0,
            frequency: 3.0,
            size: 12,
            margin: 0,
            ..Default::default()
        };
        let v = t.pixels();
        let delta = 20.0 / 255.0;
        // f = 3 over 12 columns: period 4; column 1 at +Δ, column 3 at −Δ.
        assert!(v[0].abs() < 1e-6 && (v[1] - delta).abs() < 1e-6 && (v[3] + delta).abs() < 1e-6);
        assert!(
            (0..12).all(|row| (v[row * 12 + 1] - delta).abs() < 1e-6),
            "rows alike"
        );
        let mut img = vec![0.5f32; 144];
        img[3] = 0.01;
        t.stamp(&mut img, 1, 12, 12, 0);
        assert!((img[1] - (0.5 + delta)).abs() < 1e-6);
        assert_eq!(img[3], 0.0, "clipped at black");
        assert!(t.validate(12, 12).is_ok());
        let bad = Trigger {
            frequency: 0.0,
            ..t
        };
        assert!(
            bad.validate(12, 12)
                .unwrap_err()
                .to_string()
                .contains("trigger.frequency")
        );
    }

    #[test]
    fn blending_and_quadrant() {
        let t = Trigger {
            alpha: 0.25,
            margin: 0,
            size: 1,
            ..Default::default()
        };
        let mut img = vec![0.4f32; 9];
        t.stamp(&mut img, 1, 3, 3, 0);
        assert!((img[8] - (0.75 * 0.4 + 0.25)).abs() < 1e-6);
        let q = Trigger {
            placement: Placement::Quadrant,
            corner: Corner::BottomRight,
            margin: 1,
            size: 3,
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let (x, y) = q.position(32, 32, i);
            assert!(
                (17..=28).contains(&x) && (17..=28).contains(&y),
                "({x},{y})"
            );
            seen.insert((x, y));
        }
        assert!(seen.len() > 20, "quadrant placement should vary");
        assert_eq!(q.position(32, 32, 7), q.position(32, 32, 7));
        assert!(
            Trigger {
                size: 30,
                ..Default::default()
            }
            .validate(16, 16)
            .is_err()
        );
    }

    #[test]
    fn poisoned_counts_per_class() {
        let mut set = blank(10, 8); // classes of 10, 20, 30, 40 images
        let b = Backdoor {
            target: "d".into(),
            rate: 0.1,
            selection: Selection::Proportional,
            source_classes: vec![],
            exclude_target: true,
            relabel: true,
            trigger: Trigger {
                size: 2,
                margin: 0,
                ..Default::default()
            },
        };
        let r = b.poison(&mut set, 3).unwrap();
        // 10 of 100 images, spread 10:20:30 over the non-target classes.
        assert_eq!(r.indices.len(), 10);
        assert_eq!(r.per_class, vec![2, 3, 5, 0]);
        assert_eq!(r.fraction(), "10/100");
        for &i in &r.indices {
            assert_eq!(set.labels[i], 3);
            assert_eq!(set.image(i)[63], 1.0);
        }
        let clean = set.len() - r.indices.len();
        assert_eq!(
            (0..set.len()).filter(|&i| set.image(i)[63] == 0.0).count(),
            clean
        );

        let mut set = blank(10, 8);
        let only_b = Backdoor {
            source_classes: vec!["b".into()],
            selection: Selection::Uniform,
            ..b.clone()
        };
        let r = only_b.poison(&mut set, 3).unwrap();
        assert_eq!(r.per_class, vec![0, 10, 0, 0]);
        let too_many = Backdoor {
            rate: 0.5,
            ..only_b
        };
        assert!(too_many.poison(&mut blank(10, 8), 3).is_err());
    }
}
