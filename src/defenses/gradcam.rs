//! Class activation maps on a model's convolutional feature map, and a detector of triggered
//! inputs built on them.
//!
//! Two maps for class c, both ReLU'd, upsampled to the input and scaled to [0, 1]:
//! - Grad-CAM (Selvaraju et al., ICCV 2017): Σₖ αₖ·Aᵏ with αₖ the spatial mean of ∂y_c/∂Aᵏ;
//! - HiResCAM (Draelos & Carin, 2020): Σₖ ∂y_c/∂Aᵏ ⊙ Aᵏ, the gradient kept per position. Where
//!   the head flattens the map (the small CNN, VGG) or the map is not the last one, averaging the
//!   gradient loses where the evidence is, and Grad-CAM's map can even be empty on a trigger the
//!   model obeys; HiResCAM shows exactly the positions that raise the score (and equals Grad-CAM
//!   after global average pooling and one linear layer).
//!
//! A backdoored model that reacts to a patch looks at the patch. Two detector scores per input:
//! - `outside_roi`: the share of map mass outside the region of interest (the largest bright
//!   component with holes filled, see [`crate::data::roi::roi_mask`]): a trigger stamped on the
//!   background pulls the map off the anatomy, while a lesion keeps it inside;
//! - `concentration`: the largest share of map mass inside any window of `window` × the image
//!   side (for images without background, but a focal lesion concentrates a map too).
//!
//! The evaluator, who knows the trigger, also reports the share inside the trigger box
//! (localization).
//!
//! Over 500 lines on purpose: the maps, the overlays and the detector built on them; the last 92 lines are its tests.

use crate::attacks::backdoor::Backdoor;
use crate::data::ImageSet;
use crate::data::normalize::Normalizer;
use crate::data::preprocess::gray_plane;
use crate::data::roi::roi_mask;
use crate::error::{Error, Result};
use crate::metrics::auroc::auroc;
use crate::models::Net;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Kind, Tensor};

/// `[gradcam]` in an experiment file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GradCamConfig {
    /// Overlays written for this many clean and triggered test images.
    pub overlays: usize,
    /// Side of the detector's window, as a share of the image side.
    pub window: f64,
    /// Test images scored (0 = all).
    pub max_images: usize,
    /// Feature layer whose output is explained (the map after `features[..layer]`); default:
    /// the deepest one whose map is at least 8 × 8 (a 64 px MobileNetV2's last map is 2 × 2,
    /// too coarse to find a 4 px trigger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Which map: `hires_cam` (default) or `grad_cam`.
    pub method: CamMethod,
    /// The score the detector's AUROC (`auroc`) uses: `outside_roi` (default) or
    /// `concentration`; both scores' AUROCs are reported.
    pub detector: Detector,
    /// Pixel value (raw, in [0, 1]) above which a pixel can belong to the region of interest.
    pub roi_threshold: f32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CamMethod {
    GradCam,
    #[default]
    HiresCam,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    #[default]
    OutsideRoi,
    Concentration,
}

impl Default for GradCamConfig {
    fn default() -> Self {
        GradCamConfig {
            overlays: 4,
            window: 0.125,
            max_images: 0,
            layer: None,
            method: CamMethod::default(),
            detector: Detector::default(),
            roi_threshold: 0.1,
        }
    }
}

impl GradCamConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.window > 0.0 && self.window <= 1.0) {
            return Err(Error::param(
                "gradcam.window",
                format!("must be within (0, 1], got {}", self.window),
            ));
        }
        if !(0.0..1.0).contains(&self.roi_threshold) {
            return Err(Error::param(
                "gradcam.roi_threshold",
                format!("must be within [0, 1), got {}", self.roi_threshold),
            ));
        }
        Ok(())
    }
}

/// The deepest feature layer whose output map is at least 8 × 8 for `x` (normalized input).
pub fn default_layer(net: &Net, x: &Tensor) -> usize {
    tch::no_grad(|| {
        let mut y = x.narrow(0, 0, 1);
        // A model without layers of its own (TorchScript) is explained at its input.
        let mut best = net.feature_layers().min(1);
        for k in 1..=net.feature_layers() {
            y = net.features_range_t(&y, k - 1..k, false);
            let s = y.size();
            if s.len() == 4 && s[2] >= 8 && s[3] >= 8 {
                best = k;
            }
        }
        best
    })
}

/// Class activation maps (N × H × W, each scaled to [0, 1]) of `x` (raw pixels, N·C·H·W) for
/// the model's predicted class, explaining the map after `features[..layer]` (default:
/// [`default_layer`]).
pub fn cam(
    net: &Net,
    x: &Tensor,
    norm: &Normalizer,
    layer: Option<usize>,
    method: CamMethod,
) -> Tensor {
    let size = x.size();
    let channels = net.arch.in_channels(size[1] as usize);
    let xn = norm
        .on(channels, net.vs.device())
        .apply(&x.to_device(net.vs.device()));
    let k = layer.unwrap_or_else(|| default_layer(net, &xn));
    let feats = tch::no_grad(|| net.features_range_t(&xn, 0..k, false)).set_requires_grad(true);
    let logits = net.logits_from_t(&feats, k, false);
    let class = logits.argmax(1, true);
    let score = logits.gather(1, &class, false).sum(Kind::Float);
    let grads = Tensor::run_backward(&[score], &[&feats], false, false);
    let weights = match method {
        CamMethod::GradCam => grads[0].mean_dim([2i64, 3].as_slice(), true, Kind::Float),
        CamMethod::HiresCam => grads[0].shallow_clone(),
    };
    let cam = (weights * feats.detach())
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
        .relu();
    let cam = cam
        .upsample_bilinear2d([size[2], size[3]], false, None, None)
        .squeeze_dim(1);
    let max = cam.amax([1i64, 2].as_slice(), true).clamp_min(1e-12);
    (cam / max).to_device(tch::Device::Cpu)
}

/// Largest share of a map's mass inside any w × w window (summed-area table).
pub fn concentration(map: &[f32], h: usize, w: usize, win: usize) -> f64 {
    let win = win.clamp(1, h.min(w));
    let mut sat = vec![0.0f64; (h + 1) * (w + 1)];
    for y in 0..h {
        for x in 0..w {
            sat[(y + 1) * (w + 1) + x + 1] =
                map[y * w + x] as f64 + sat[y * (w + 1) + x + 1] + sat[(y + 1) * (w + 1) + x]
                    - sat[y * (w + 1) + x];
        }
    }
    let total = sat[h * (w + 1) + w];
    if total <= 0.0 {
        return 0.0;
    }
    let mut best = 0.0f64;
    for y in 0..=h - win {
        for x in 0..=w - win {
            let s = sat[(y + win) * (w + 1) + x + win]
                - sat[y * (w + 1) + x + win]
                - sat[(y + win) * (w + 1) + x]
                + sat[y * (w + 1) + x];
            best = best.max(s);
        }
    }
    best / total
}

/// Share of a map's mass inside the box (x, y, side).
pub fn mass_inside(map: &[f32], w: usize, bx: usize, by: usize, side: usize) -> f64 {
    let total: f64 = map.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let h = map.len() / w;
    let mut inside = 0.0;
    for y in by..(by + side).min(h) {
        for x in bx..(bx + side).min(w) {
            inside += map[y * w + x] as f64;
        }
    }
    inside / total
}

/// Share of a map's mass outside the region of interest of its image (`roi`: true inside).
pub fn mass_outside(map: &[f32], roi: &[bool]) -> f64 {
    let total: f64 = map.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let outside: f64 = map
        .iter()
        .zip(roi)
        .filter(|(_, inside)| !**inside)
        .map(|(&v, _)| v as f64)
        .sum();
    outside / total
}

/// Detection and localization on one pair of clean / triggered sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GradCamReport {
    /// Detector AUROC (the configured score): triggered inputs (positives) against clean ones.
    pub auroc: Option<f64>,
    #[serde(default)]
    pub auroc_outside_roi: Option<f64>,
    #[serde(default)]
    pub auroc_concentration: Option<f64>,
    #[serde(default)]
    pub mean_outside_roi_clean: f64,
    #[serde(default)]
    pub mean_outside_roi_triggered: f64,
    pub mean_concentration_clean: f64,
    pub mean_concentration_triggered: f64,
    /// Mean share of the map inside the trigger box, on triggered inputs.
    pub localization_triggered: f64,
    /// The same box on clean inputs (chance level for this model).
    pub localization_clean: f64,
    pub images: usize,
}

/// The whole Grad-CAM inspection of a cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GradCamSummary {
    /// On the server's test set.
    pub test: GradCamReport,
    /// Per federated client, on its validation set (clean vs triggered), with the final model.
    #[serde(default)]
    pub clients: Vec<GradCamReport>,
}

/// Maps of a set, batched, as one flat vector per image.
fn maps(net: &Net, set: &ImageSet, norm: &Normalizer, cfg: &GradCamConfig) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(set.len());
    let n = set.len();
    let per = set.image_len();
    for start in (0..n).step_by(64) {
        let end = (start + 64).min(n);
        let x = Tensor::from_slice(&set.pixels[start * per..end * per]).view([
            (end - start) as i64,
            set.channels as i64,
            set.height as i64,
            set.width as i64,
        ]);
        let cam = cam(net, &x, norm, cfg.layer, cfg.method);
        let flat = Vec::<f32>::try_from(cam.reshape([-1])).expect("a float map");
        let hw = set.height * set.width;
        out.extend(flat.chunks(hw).map(|c| c.to_vec()));
    }
    out
}

/// Scores clean vs triggered copies of `set`.
pub fn report(
    net: &Net,
    set: &ImageSet,
    backdoor: &Backdoor,
    norm: &Normalizer,
    cfg: &GradCamConfig,
) -> (GradCamReport, Vec<Vec<f32>>, Vec<Vec<f32>>, ImageSet) {
    let set = if cfg.max_images > 0 && set.len() > cfg.max_images {
        set.subset(&(0..cfg.max_images).collect::<Vec<_>>())
    } else {
        set.clone()
    };
    let triggered = backdoor.trigger.apply_all(&set);
    let (h, w) = (set.height, set.width);
    let win = ((cfg.window * h.min(w) as f64).round() as usize).max(1);
    let clean_maps = maps(net, &set, norm, cfg);
    let trig_maps = maps(net, &triggered, norm, cfg);
    let conc =
        |ms: &[Vec<f32>]| -> Vec<f64> { ms.iter().map(|m| concentration(m, h, w, win)).collect() };
    let (cc, ct) = (conc(&clean_maps), conc(&trig_maps));
    // The region of interest of each image as stored, on the gray plane the ROI crop uses.
    let outside = |s: &ImageSet, ms: &[Vec<f32>]| -> Vec<f64> {
        ms.iter()
            .enumerate()
            .map(|(i, m)| {
                let gray = gray_plane(s.image(i), s.channels, w, h);
                mass_outside(m, &roi_mask(&gray, w, h, cfg.roi_threshold))
            })
            .collect()
    };
    let (oc, ot) = (outside(&set, &clean_maps), outside(&triggered, &trig_maps));
    let loc = |ms: &[Vec<f32>]| -> f64 {
        if ms.is_empty() {
            return 0.0;
        }
        ms.iter()
            .enumerate()
            .map(|(i, m)| {
                let (bx, by) = backdoor.trigger.position(h, w, i);
                mass_inside(m, w, bx, by, backdoor.trigger.size)
            })
            .sum::<f64>()
            / ms.len() as f64
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let (auroc_outside_roi, auroc_concentration) = (auroc(&oc, &ot), auroc(&cc, &ct));
    let r = GradCamReport {
        auroc: match cfg.detector {
            Detector::OutsideRoi => auroc_outside_roi,
            Detector::Concentration => auroc_concentration,
        },
        auroc_outside_roi,
        auroc_concentration,
        mean_outside_roi_clean: mean(&oc),
        mean_outside_roi_triggered: mean(&ot),
        mean_concentration_clean: mean(&cc),
        mean_concentration_triggered: mean(&ct),
        localization_triggered: loc(&trig_maps),
        localization_clean: loc(&clean_maps),
        images: set.len(),
    };
    (r, clean_maps, trig_maps, triggered)
}

/// Jet-like colour for v in [0, 1].
fn jet(v: f32) -> [f32; 3] {
    let f = |x: f32| x.clamp(0.0, 1.0);
    [
        f(1.5 - (4.0 * v - 3.0).abs()),
        f(1.5 - (4.0 * v - 2.0).abs()),
        f(1.5 - (4.0 * v - 1.0).abs()),
    ]
}

/// Writes the image with its map blended on top, enlarged to at least 256 px.
pub fn write_overlay(path: &Path, set: &ImageSet, i: usize, map: &[f32]) -> Result<()> {
    let (h, w, c) = (set.height, set.width, set.channels);
    let img = set.image(i);
    let scale = (256 / h.max(w)).max(1);
    let mut out = image::RgbImage::new((w * scale) as u32, (h * scale) as u32);
    for y in 0..h * scale {
        for x in 0..w * scale {
            let (sy, sx) = (y / scale, x / scale);
            let gray = |ch: usize| img[(ch % c) * h * w + sy * w + sx];
            let m = map[sy * w + sx];
            let col = jet(m);
            let a = 0.45 * m.sqrt();
            let px: [u8; 3] = std::array::from_fn(|k| {
                (((1.0 - a) * gray(k) + a * col[k]).clamp(0.0, 1.0) * 255.0).round() as u8
            });
            out.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    out.save(path)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))
}

/// Scores the server's test set (and each client's validation set when given), writes
/// `gradcam/{clean,triggered}_NN.png` overlays under `dir`.
pub fn inspect(
    net: &Net,
    test: &ImageSet,
    client_sets: &[ImageSet],
    backdoor: &Backdoor,
    norm: &Normalizer,
    cfg: &GradCamConfig,
    dir: &Path,
) -> Result<GradCamSummary> {
    let (test_report, clean_maps, trig_maps, triggered) = report(net, test, backdoor, norm, cfg);
    // Spread the overlays over the classes: every k-th image.
    let n = clean_maps.len();
    let step = (n / cfg.overlays.max(1)).max(1);
    for (k, i) in (0..n).step_by(step).take(cfg.overlays).enumerate() {
        write_overlay(
            &dir.join(format!("gradcam/clean_{k:02}.png")),
            test,
            i,
            &clean_maps[i],
        )?;
        write_overlay(
            &dir.join(format!("gradcam/triggered_{k:02}.png")),
            &triggered,
            i,
            &trig_maps[i],
        )?;
    }
    let clients = client_sets
        .iter()
        .map(|s| report(net, s, backdoor, norm, cfg).0)
        .collect();
    Ok(GradCamSummary {
        test: test_report,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    #[test]
    fn window_and_box_shares() {
        // 4×4 map with all mass in the 2×2 bottom-right block.
        let mut m = vec![0.0f32; 16];
        for (y, x) in [(2, 2), (2, 3), (3, 2), (3, 3)] {
            m[y * 4 + x] = 1.0;
        }
        assert_eq!(concentration(&m, 4, 4, 2), 1.0);
        assert_eq!(concentration(&m, 4, 4, 1), 0.25);
        assert_eq!(mass_inside(&m, 4, 2, 2, 2), 1.0);
        assert_eq!(mass_inside(&m, 4, 0, 0, 2), 0.0);
        let flat = vec![1.0f32; 16];
        assert_eq!(concentration(&flat, 4, 4, 2), 0.25);
        // Region of interest: the left half; a quarter of the mass lies outside it.
        let roi: Vec<bool> = (0..16).map(|p| p % 4 < 2).collect();
        let m2: Vec<f32> = (0..16).map(|p| if p % 4 < 2 { 1.5 } else { 0.5 }).collect();
        assert_eq!(mass_outside(&m2, &roi), 0.25);
        assert_eq!(mass_outside(&[0.0; 16], &roi), 0.0);
    }

    #[test]
    fn map_peaks_where_the_decision_is_made() {
        // A small CNN whose logits depend only on the 8×8 region at rows 24..32, columns 8..16
        // (asymmetric, so a transposed or flipped map fails): the classifier weights of every
        // other feature position are zeroed. Inputs are blank elsewhere and conv biases zero, so
        // activations outside the region vanish too.
        let net = crate::models::with_torch_rng(Some(0), || {
            Net::new(Arch::SmallCnn, 2, 1, 32, tch::Device::Cpu).unwrap()
        });
        let side = 8i64; // 32 / 4 feature positions per side
        tch::no_grad(|| {
            for (name, mut t) in net.vs.variables() {
                if name == "classifier.0.weight" {
                    // Inputs are (channel, y, x) flattened: keep y in 6..8, x in 2..4, with
                    // non-negative weights so the class-1 evidence only grows with activation.
                    let mask = Tensor::zeros([64, side, side], (Kind::Float, tch::Device::Cpu));
                    let _ = mask.narrow(1, 6, 2).narrow(2, 2, 2).fill_(1.0);
                    let masked = t.abs() * mask.reshape([1, -1]);
                    t.copy_(&masked);
                }
                if name == "classifier.2.weight" {
                    let w = Tensor::from_slice(&[-1.0f32, 1.0])
                        .view([2, 1])
                        .expand([2, 128], false);
                    t.copy_(&(w / 128.0));
                }
                if name.ends_with(".bias") {
                    let _ = t.zero_();
                }
            }
        });
        let x = Tensor::zeros([4, 1, 32, 32], (Kind::Float, tch::Device::Cpu));
        x.narrow(2, 24, 8)
            .narrow(3, 8, 8)
            .copy_(&Tensor::rand([4, 1, 8, 8], (Kind::Float, tch::Device::Cpu)));
        // The small CNN's last map (8 × 8 here) is the default layer.
        assert_eq!(default_layer(&net, &x), net.feature_layers());
        for method in [CamMethod::GradCam, CamMethod::HiresCam] {
            peaks_in_region(&cam(&net, &x, &Normalizer::identity(), None, method));
        }
    }

    fn peaks_in_region(cam: &Tensor) {
        assert_eq!(cam.size(), vec![4, 32, 32]);
        for i in 0..4 {
            let m = Vec::<f32>::try_from(cam.get(i).reshape([-1])).unwrap();
            // The region is 6% of the image; the map puts far more than that there, and all
            // but a sliver within one feature cell's receptive-field halo around it.
            let region = mass_inside(&m, 32, 8, 24, 8);
            assert!(region > 0.3, "map {i}: {region} of its mass in the region");
            let halo = mass_inside(&m, 32, 0, 16, 24);
            assert!(halo > 0.97, "map {i}: {halo} of its mass near the region");
            let peak = m
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            let (py, px) = (peak / 32, peak % 32);
            assert!(
                (22..32).contains(&py) && (6..18).contains(&px),
                "peak at ({py}, {px})"
            );
        }
    }
}
