//! Adversarial examples as the eye sees them (Darzi et al., Fig 2): one row per attack, each
//! with the clean image, the perturbed image and the perturbation amplified so that it shows
//! (mid-gray is no change). The same image is attacked in every row, so the rows compare the
//! budgets. `adversarial_examples.csv` beside the picture gives each perturbation's size.

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// One image before and after one attack, channel-major, pixel scale [0, 1].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Example {
    pub clean: Vec<f32>,
    pub adversarial: Vec<f32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Example {
    /// Largest absolute change of a pixel (the L∞ norm of the perturbation).
    pub fn linf(&self) -> f32 {
        self.diffs().fold(0.0, |m, d| m.max(d.abs()))
    }

    /// Mean absolute change over the pixels.
    pub fn mean_abs(&self) -> f32 {
        self.diffs().map(f32::abs).sum::<f32>() / self.clean.len().max(1) as f32
    }

    fn diffs(&self) -> impl Iterator<Item = f32> + '_ {
        self.adversarial.iter().zip(&self.clean).map(|(a, c)| a - c)
    }
}

/// How much the difference column is amplified: 0.5 + AMPLIFY · (adversarial − clean), so a
/// change of ε = 0.05 spans the whole gray range.
pub const AMPLIFY: f32 = 10.0;

/// Side of one enlarged tile, in pixels (nearest-neighbour, at least the image's own size).
const TILE: usize = 128;
const GAP: usize = 4;

/// Writes `png` (rows: attacks; columns: clean, perturbed, amplified difference) and `csv`.
pub fn write(png: &Path, csv: &Path, rows: &[(&str, &Example)]) -> Result<()> {
    let Some((_, first)) = rows.first() else {
        return Ok(());
    };
    let (h, w, c) = (first.height, first.width, first.channels);
    if rows
        .iter()
        .any(|(_, e)| (e.height, e.width, e.channels) != (h, w, c))
    {
        return Err(Error::Invalid(format!(
            "{}: the examples differ in shape",
            png.display()
        )));
    }
    let scale = (TILE / h.max(w)).max(1);
    let (th, tw) = (h * scale, w * scale);
    let width = 3 * tw + 2 * GAP;
    let height = rows.len() * th + (rows.len() - 1) * GAP;
    let mut out = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255; 3]));
    for (r, (_, e)) in rows.iter().enumerate() {
        let diff: Vec<f32> = e
            .diffs()
            .map(|d| (0.5 + AMPLIFY * d).clamp(0.0, 1.0))
            .collect();
        for (col, img) in [&e.clean, &e.adversarial, &diff].into_iter().enumerate() {
            let (x0, y0) = (col * (tw + GAP), r * (th + GAP));
            for y in 0..th {
                for x in 0..tw {
                    let (sy, sx) = (y / scale, x / scale);
                    // Gray images fill all three colour channels.
                    let px: [u8; 3] = std::array::from_fn(|k| {
                        let v = img[(k % c) * h * w + sy * w + sx];
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8
                    });
                    out.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(px));
                }
            }
        }
    }
    let mut bytes = Vec::new();
    out.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Invalid(format!("cannot encode {}: {e}", png.display())))?;
    crate::io::write_atomic(png, &bytes)?;

    #[derive(Serialize)]
    struct Row<'a> {
        row: usize,
        attack: &'a str,
        linf: f32,
        mean_abs_change: f32,
    }
    let table: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, (attack, e))| Row {
            row: i,
            attack,
            linf: e.linf(),
            mean_abs_change: e.mean_abs(),
        })
        .collect();
    crate::io::write_rows(csv, &table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_clean_perturbed_and_amplified_difference() {
        // A 2×2 gray image; the attack adds +0.01 to one pixel and −0.03 to another.
        let e = Example {
            clean: vec![0.2, 0.4, 0.6, 0.8],
            adversarial: vec![0.21, 0.4, 0.57, 0.8],
            channels: 1,
            height: 2,
            width: 2,
        };
        assert!((e.linf() - 0.03).abs() < 1e-6);
        assert!((e.mean_abs() - 0.01).abs() < 1e-6);
        let dir = std::env::temp_dir().join(format!("fedsentry-examples-{}", std::process::id()));
        let (png, csv) = (dir.join("a.png"), dir.join("a.csv"));
        write(
            &png,
            &csv,
            &[("fgsm(eps=0.01)", &e), ("fgsm(eps=0.03)", &e)],
        )
        .unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        let s = TILE / 2;
        assert_eq!(img.width() as usize, 3 * TILE + 2 * GAP);
        assert_eq!(img.height() as usize, 2 * TILE + GAP);
        // Top-left pixel of each column: clean 0.2, perturbed 0.21, difference 0.5 + 10·0.01.
        let at = |col: usize| img.get_pixel((col * (TILE + GAP)) as u32, 0)[0];
        assert_eq!(at(0), 51);
        assert_eq!(at(1), 54);
        assert_eq!(at(2), 153);
        // The unchanged pixel is mid-gray in the difference; the −0.03 one darker (0.2).
        let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32)[0];
        assert_eq!(px(2 * (TILE + GAP) + s, 0), 128);
        assert_eq!(px(2 * (TILE + GAP), s), 51);
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.starts_with("row,attack,linf,mean_abs_change\n0,fgsm(eps=0.01),0.0"));
        std::fs::remove_dir_all(dir).ok();
    }
}
