//! Per-image preprocessing shared by the loaders: channel conversion, ROI crop, resize.

use super::roi::{self, RoiConfig};
use image::{ImageBuffer, Luma, imageops};

#[derive(Debug, Clone)]
pub struct Preprocess {
    /// Output is `size`×`size`.
    pub size: usize,
    /// 1 (grayscale) or 3 (RGB) channels stored.
    pub channels: usize,
    pub roi: Option<RoiConfig>,
}

/// Bilinear (triangle-filter) resize of one plane; the filter widens when shrinking, so it
/// averages instead of aliasing.
pub fn resize_plane(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    if w == nw && h == nh {
        return src.to_vec();
    }
    let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(w as u32, h as u32, src.to_vec()).expect("plane size matches");
    imageops::resize(&buf, nw as u32, nh as u32, imageops::FilterType::Triangle).into_raw()
}

/// One gray plane of a CHW image with `c` planes: the plane itself, or the luma of RGB.
pub fn gray_plane(chw: &[f32], c: usize, w: usize, h: usize) -> Vec<f32> {
    if c == 1 {
        chw[..w * h].to_vec()
    } else {
        to_gray(chw, w, h)
    }
}

/// Luma of an RGB CHW image (ITU-R 601 weights, as PIL's `convert("L")`).
pub fn to_gray(chw: &[f32], w: usize, h: usize) -> Vec<f32> {
    let n = w * h;
    (0..n)
        .map(|i| 0.299 * chw[i] + 0.587 * chw[n + i] + 0.114 * chw[2 * n + i])
        .collect()
}

impl Preprocess {
    /// `chw` holds `c` planes of `w`×`h` in [0, 1]; returns `channels` planes of `size`².
    pub fn apply(&self, chw: &[f32], c: usize, w: usize, h: usize) -> Vec<f32> {
        let gray = gray_plane(chw, c, w, h);
        let mut planes: Vec<f32> = match (self.channels, c) {
            (1, _) => gray.clone(),
            (3, 1) => gray.repeat(3),
            _ => chw.to_vec(),
        };
        let (mut w, mut h) = (w, h);
        if let Some(cfg) = &self.roi
            && let Some(bb) = roi::roi_bbox(&gray, w, h, cfg)
        {
            planes = roi::crop(&planes, self.channels, w, h, bb);
            (w, h) = (bb.2 - bb.0, bb.3 - bb.1);
        }
        let n = w * h;
        (0..self.channels)
            .flat_map(|k| resize_plane(&planes[k * n..(k + 1) * n], w, h, self.size, self.size))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_and_gray_to_rgb() {
        let p = Preprocess {
            size: 2,
            channels: 3,
            roi: None,
        };
        let img = vec![0.5f32; 16];
        let out = p.apply(&img, 1, 4, 4);
        assert_eq!(out.len(), 12);
        assert!(out.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn roi_removes_border() {
        let p = Preprocess {
            size: 4,
            channels: 1,
            roi: Some(RoiConfig {
                threshold: 0.5,
                blur_radius: 0,
            }),
        };
        // 8x8 with a bright 4x4 block at (2..6, 2..6): the crop keeps only the block.
        let mut img = vec![0f32; 64];
        for y in 2..6 {
            for x in 2..6 {
                img[y * 8 + x] = 1.0;
            }
        }
        let out = p.apply(&img, 1, 8, 8);
        assert!(out.iter().all(|&v| v == 1.0));
    }
}
