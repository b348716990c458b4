//! Region-of-interest crop as used for brain MRI: blur, threshold, keep the largest connected
//! component, crop to its bounding box. Removes the empty border so the head fills the frame.

#[derive(Debug, Clone, Copy)]
pub struct RoiConfig {
    /// Threshold on the blurred image, in [0, 1] (45/255 in the thesis).
    pub threshold: f32,
    /// Box-blur radius in pixels before thresholding.
    pub blur_radius: usize,
}

impl Default for RoiConfig {
    fn default() -> Self {
        RoiConfig {
            threshold: 45.0 / 255.0,
            blur_radius: 2,
        }
    }
}

/// Bounding box `(x0, y0, x1, y1)`, end-exclusive.
pub type BBox = (usize, usize, usize, usize);

fn box_blur(img: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    if r == 0 {
        return img.to_vec();
    }
    // Separable mean filter with clamped borders.
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                let (mut sum, mut n) = (0f32, 0f32);
                let (c, len) = if horizontal { (x, w) } else { (y, h) };
                for k in c.saturating_sub(r)..(c + r + 1).min(len) {
                    sum += if horizontal {
                        src[y * w + k]
                    } else {
                        src[k * w + x]
                    };
                    n += 1.0;
                }
                out[y * w + x] = sum / n;
            }
        }
        out
    };
    pass(&pass(img, true), false)
}

/// Pixels of the largest 8-connected component of `mask`, or `None` if the mask is empty.
fn largest_component(mask: &[bool], w: usize, h: usize) -> Option<Vec<usize>> {
    let mut seen = vec![false; w * h];
    let mut best: Option<Vec<usize>> = None;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut members = Vec::new();
        while let Some(p) = stack.pop() {
            members.push(p);
            let (x, y) = (p % w, p / w);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        if best.as_ref().is_none_or(|b| members.len() > b.len()) {
            best = Some(members);
        }
    }
    best
}

/// Bounding box of the largest 8-connected bright component, or `None` if nothing is bright.
pub fn roi_bbox(gray: &[f32], w: usize, h: usize, cfg: &RoiConfig) -> Option<BBox> {
    let blurred = box_blur(gray, w, h, cfg.blur_radius);
    let mask: Vec<bool> = blurred.iter().map(|&v| v > cfg.threshold).collect();
    let members = largest_component(&mask, w, h)?;
    Some(members.iter().fold((w, h, 0, 0), |bb, &p| {
        let (x, y) = (p % w, p / w);
        (bb.0.min(x), bb.1.min(y), bb.2.max(x + 1), bb.3.max(y + 1))
    }))
}

/// The region of interest as a mask: the largest 8-connected component brighter than
/// `threshold`, with its holes filled (dark ventricles or lungs inside the body belong to it).
/// Small bright objects apart from it — a marker, a stamped patch — are outside. All false if
/// nothing is bright.
pub fn roi_mask(gray: &[f32], w: usize, h: usize, threshold: f32) -> Vec<bool> {
    let bright: Vec<bool> = gray.iter().map(|&v| v > threshold).collect();
    let mut inside = vec![false; w * h];
    let Some(members) = largest_component(&bright, w, h) else {
        return inside;
    };
    for p in members {
        inside[p] = true;
    }
    // Background is what the border reaches (4-connected) without crossing the component.
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w * h)
        .filter(|&p| {
            let (x, y) = (p % w, p / w);
            (x == 0 || y == 0 || x + 1 == w || y + 1 == h) && !inside[p]
        })
        .collect();
    for &p in &stack {
        outside[p] = true;
    }
    while let Some(p) = stack.pop() {
        let (x, y) = (p % w, p / w);
        let neighbours = [
            (x > 0).then(|| p - 1),
            (x + 1 < w).then(|| p + 1),
            (y > 0).then(|| p - w),
            (y + 1 < h).then(|| p + w),
        ];
        for q in neighbours.into_iter().flatten() {
            if !inside[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        }
    }
    outside.iter().map(|&o| !o).collect()
}

/// Crops every channel of a CHW image to `bb`.
pub fn crop(img: &[f32], channels: usize, w: usize, h: usize, bb: BBox) -> Vec<f32> {
    let (x0, y0, x1, y1) = bb;
    let mut out = Vec::with_capacity(channels * (x1 - x0) * (y1 - y0));
    for c in 0..channels {
        for y in y0..y1 {
            out.extend_from_slice(&img[c * w * h + y * w + x0..c * w * h + y * w + x1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_to_largest_blob() {
        // A 40x30 black image with a big bright rectangle and a small bright speck elsewhere.
        let (w, h) = (40, 30);
        let mut img = vec![0f32; w * h];
        for y in 8..22 {
            for x in 12..31 {
                img[y * w + x] = 0.9;
            }
        }
        for y in 1..3 {
            for x in 1..3 {
                img[y * w + x] = 1.0;
            }
        }
        let cfg = RoiConfig {
            threshold: 0.5,
            blur_radius: 0,
        };
        assert_eq!(roi_bbox(&img, w, h, &cfg), Some((12, 8, 31, 22)));
        let c = crop(&img, 1, w, h, (12, 8, 31, 22));
        assert_eq!(c.len(), 19 * 14);
        assert!(c.iter().all(|&v| v == 0.9));
    }

    #[test]
    fn roi_mask_fills_holes_and_leaves_out_specks() {
        // A bright ring (rows/columns 4..16) around a dark hole, and a bright 2×2 speck apart.
        let (w, h) = (24, 20);
        let mut img = vec![0f32; w * h];
        for y in 4..16 {
            for x in 4..16 {
                let edge = !(6..14).contains(&y) || !(6..14).contains(&x);
                img[y * w + x] = if edge { 0.8 } else { 0.05 };
            }
        }
        for y in 17..19 {
            for x in 20..22 {
                img[y * w + x] = 1.0;
            }
        }
        let m = roi_mask(&img, w, h, 0.1);
        let at = |x: usize, y: usize| m[y * w + x];
        assert!(at(4, 4) && at(15, 15), "the ring is inside");
        assert!(at(10, 10), "the hole is filled");
        assert!(!at(20, 17) && !at(21, 18), "the speck is outside");
        assert!(
            !at(0, 0) && !at(3, 10) && !at(16, 10),
            "the background is outside"
        );
        assert_eq!(m.iter().filter(|&&v| v).count(), 144);
        assert!(roi_mask(&vec![0f32; w * h], w, h, 0.1).iter().all(|&v| !v));
    }

    #[test]
    fn blur_keeps_bbox_close_and_empty_image_has_none() {
        let (w, h) = (20, 20);
        let mut img = vec![0f32; w * h];
        for y in 5..15 {
            for x in 6..14 {
                img[y * w + x] = 1.0;
            }
        }
        let bb = roi_bbox(&img, w, h, &RoiConfig::default()).unwrap();
        // The 5-pixel mean spreads the edge by at most the radius.
        assert!(bb.0 >= 4 && bb.0 <= 6 && bb.2 >= 14 && bb.2 <= 16, "{bb:?}");
        assert_eq!(
            roi_bbox(&vec![0.0; w * h], w, h, &RoiConfig::default()),
            None
        );
    }
}
