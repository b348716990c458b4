//! Image folders: `<root>/<split>/<class>/*.{jpg,jpeg,png,tif,tiff}` (the Kaggle brain-MRI
//! layout; also the Bhuvaji MRI of Darzi et al. as downloaded, and Kaggle's PCam-derived
//! histopathology tiles once sorted into class folders: README, "The papers' data sets").

use super::ImageSet;
use super::duplicates::{Hash, hash_bytes};
use super::preprocess::Preprocess;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "tif", "tiff"];

/// A folder's entries, sorted, without hidden ones.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Hidden entries (".ipynb_checkpoints", ".DS_Store") are tooling leftovers, not data.
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// Class names of a split: its sorted sub-folders.
pub fn class_names(split_dir: &Path) -> Result<Vec<String>> {
    if !split_dir.is_dir() {
        return Err(Error::data(split_dir, "split folder not found"));
    }
    let classes: Vec<String> = list_dir(split_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect();
    if classes.len() < 2 {
        return Err(Error::data(
            split_dir,
            "expected one sub-folder per class (at least two)",
        ));
    }
    Ok(classes)
}

/// Decodes one file into CHW planes in [0, 1] (1 plane for grayscale files, 3 otherwise).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(Vec<f32>, usize, usize, usize)> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::data(path, format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::data(path, "image has zero size"));
    }
    if img.color().has_color() {
        let rgb = img.to_rgb8();
        let mut chw = vec![0f32; 3 * w * h];
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                chw[c * w * h + i] = p.0[c] as f32 / 255.0;
            }
        }
        Ok((chw, 3, w, h))
    } else {
        Ok((
            img.to_luma8()
                .into_raw()
                .iter()
                .map(|&v| v as f32 / 255.0)
                .collect(),
            1,
            w,
            h,
        ))
    }
}

/// Loads one split; returns the set and the SHA-256 of every file (for duplicate checks).
pub fn load_split(
    root: &Path,
    split: &str,
    classes: &[String],
    prep: &Preprocess,
) -> Result<(ImageSet, Vec<Hash>)> {
    let split_dir = root.join(split);
    let mut files = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        let dir = split_dir.join(class);
        if !dir.is_dir() {
            return Err(Error::data(
                &dir,
                format!("class folder `{class}` missing in split `{split}`"),
            ));
        }
        for p in list_dir(&dir)? {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase());
            if p.is_file() && ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
                files.push((p, c));
            }
        }
    }
    if files.is_empty() {
        return Err(Error::data(
            &split_dir,
            "no .jpg/.jpeg/.png/.tif images found",
        ));
    }
    let decoded: Vec<Result<(Vec<f32>, Hash)>> = files
        .par_iter()
        .map(|(p, _)| {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            let (chw, c, w, h) = decode(p, &bytes)?;
            Ok((prep.apply(&chw, c, w, h), hash_bytes(&bytes)))
        })
        .collect();
    let mut set = ImageSet::empty(prep.channels, prep.size, prep.size, classes.to_vec());
    let mut hashes = Vec::with_capacity(files.len());
    for ((path, c), r) in files.iter().zip(decoded) {
        let (pixels, hash) = r?;
        let name = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        set.push(&pixels, *c as i64, name);
        hashes.push(hash);
    }
    Ok((set, hashes))
}

/// Saves image `i` of a set as an 8-bit PNG.
pub fn save_png(set: &ImageSet, i: usize, path: &Path) -> Result<()> {
    let (w, h) = (set.width as u32, set.height as u32);
    let img = set.image(i);
    let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let result = if set.channels == 1 {
        image::GrayImage::from_raw(w, h, img.iter().map(|&v| to8(v)).collect())
            .map(|b| b.save(path))
    } else {
        let n = (w * h) as usize;
        let raw = (0..n)
            .flat_map(|p| (0..3).map(move |c| to8(img[c * n + p])))
            .collect();
        image::RgbImage::from_raw(w, h, raw).map(|b| b.save(path))
    };
    match result {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::data(path, format!("cannot write PNG: {e}"))),
        None => Err(Error::data(path, "image buffer has the wrong size")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep() -> Preprocess {
        Preprocess {
            size: 8,
            channels: 1,
            roi: None,
        }
    }

    #[test]
    fn loads_and_reports_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("fedsentry-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for class in ["a", "b"] {
            std::fs::create_dir_all(dir.join("train").join(class)).unwrap();
            let img = image::GrayImage::from_pixel(
                12,
                10,
                image::Luma([if class == "a" { 10 } else { 200 }]),
            );
            img.save(dir.join("train").join(class).join("x.png"))
                .unwrap();
        }
        let classes = class_names(&dir.join("train")).unwrap();
        assert_eq!(classes, vec!["a", "b"]);
        let (set, hashes) = load_split(&dir, "train", &classes, &prep()).unwrap();
        assert_eq!(set.labels, vec![0, 1]);
        assert_eq!(hashes.len(), 2);
        assert!((set.image(1)[0] - 200.0 / 255.0).abs() < 1e-3);

        std::fs::write(dir.join("train/b/broken.jpg"), b"not a jpeg at all").unwrap();
        let err = load_split(&dir, "train", &classes, &prep())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.jpg") && err.contains("cannot decode"),
            "{err}"
        );

        let err = load_split(&dir, "test", &classes, &prep())
            .unwrap_err()
            .to_string();
        assert!(err.contains("test"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writes `n` images of `w`×`h` per class under `<root>/<split>/<class>/`, brighter for
    /// later classes, in the given format.
    fn tiny_folder(root: &Path, split: &str, classes: &[&str], n: usize, ext: &str, rgb: bool) {
        for (k, class) in classes.iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let v = (40 + 80 * k + i) as u8;
                let path = dir.join(format!("{i:03}.{ext}"));
                if rgb {
                    image::RgbImage::from_pixel(96, 96, image::Rgb([v, v / 2, 255 - v]))
                        .save(path)
                        .unwrap();
                } else {
                    image::GrayImage::from_pixel(64, 48, image::Luma([v]))
                        .save(path)
                        .unwrap();
                }
            }
        }
    }

    /// The layouts the README documents for the papers' data sets we cannot ship load through
    /// `[data]` tables exactly as documented.
    #[test]
    fn papers_data_layouts_load_as_documented() {
        let root = std::env::temp_dir().join(format!("fedsentry-layouts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Bhuvaji's "Brain Tumor Classification (MRI)": Training/ and Testing/, one folder per
        // class with the `_tumor` suffix, JPEG files.
        let mri = root.join("brain-tumor-classification-mri");
        let all = [
            "glioma_tumor",
            "meningioma_tumor",
            "no_tumor",
            "pituitary_tumor",
        ];
        tiny_folder(&mri, "Training", &all, 3, "jpg", false);
        tiny_folder(&mri, "Testing", &all, 2, "jpg", false);
        // Kaggle's Histopathologic Cancer Detection (PCam tiles, 96×96 RGB TIFF), sorted by
        // train_labels.csv into 0/ and 1/, with a held-out test/ split made the same way.
        let pcam = root.join("histopathologic-cancer-detection");
        tiny_folder(&pcam, "train", &["0", "1"], 4, "tif", true);
        tiny_folder(&pcam, "test", &["0", "1"], 2, "tif", true);

        let load = |text: &str| {
            let cfg: crate::data::DataConfig = toml::from_str(text).unwrap();
            crate::data::load(&cfg, Some(&root), 0).unwrap()
        };
        let ds = load(
            r#"source = "folder"
path = "brain-tumor-classification-mri"
train_split = "Training"
test_split = "Testing"
classes = ["no_tumor", "glioma_tumor"]
size = 32
val_fraction = 0.0
drop_test_duplicates = false
"#,
        );
        assert_eq!(ds.train.classes, vec!["no_tumor", "glioma_tumor"]);
        assert_eq!((ds.train.len(), ds.test.len()), (6, 4));
        assert_eq!((ds.train.channels, ds.train.height), (1, 32));
        // no_tumor (written third, v = 200) is class 0 as `classes` orders it.
        assert!((ds.train.image(0)[0] - 200.0 / 255.0).abs() < 0.02);

        let ds = load(
            r#"source = "folder"
path = "histopathologic-cancer-detection"
train_split = "train"
test_split = "test"
size = 32
channels = 3
normalize = "none"
val_fraction = 0.0
drop_test_duplicates = false
"#,
        );
        assert_eq!(ds.train.classes, vec!["0", "1"]);
        assert_eq!((ds.train.len(), ds.test.len()), (8, 4));
        assert_eq!(ds.train.channels, 3);
        // Red plane of the first class-1 tile: v = 120.
        let first_tumor = ds.train.labels.iter().position(|&l| l == 1).unwrap();
        assert!((ds.train.image(first_tumor)[0] - 120.0 / 255.0).abs() < 0.02);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
