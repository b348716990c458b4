//! `fedsentry inspect`: what a dataset holds before anyone trains on it — classes, images per
//! class and split, image sizes and colour, unreadable files, and images shared between splits
//! (train/test leakage inflates every accuracy measured on such a test set).
//!
//! Over 500 lines on purpose: one command's scan and its text and JSON rendering; the last 123 lines are its tests.

use super::duplicates::{Hash, hash_bytes, hash_pixels};
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub name: String,
    pub images: usize,
    /// Images per class, in the order of `DatasetSummary::classes` (multi-label sets: positives).
    pub per_class: Vec<usize>,
    /// (width, height) → images.
    pub sizes: BTreeMap<String, usize>,
    /// Colour planes (1 grayscale, 3 colour) → images.
    pub channels: BTreeMap<usize, usize>,
    /// Files that could not be decoded, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Images whose pixels repeat an earlier image of the same split.
    pub duplicates_within: usize,
}

/// Images of `split` that also occur in `other`.
#[derive(Debug, Clone, Serialize)]
pub struct Overlap {
    pub split: String,
    pub other: String,
    /// Same file bytes (image folders only).
    pub byte_identical: Option<usize>,
    /// Same decoded pixels at the stored resolution.
    pub pixel_identical: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    pub path: PathBuf,
    pub kind: String,
    pub classes: Vec<String>,
    pub multi_label: bool,
    pub splits: Vec<SplitSummary>,
    pub overlaps: Vec<Overlap>,
}

/// One image as inspection sees it.
struct Item {
    class: usize,
    size: (usize, usize),
    channels: usize,
    bytes: Option<Hash>,
    pixels: Hash,
}

/// Summarizes an image folder (`<root>/<split>/<class>/*`, or `<root>/<class>/*` as one split)
/// or a MedMNIST-style `.npz`.
pub fn inspect(path: &Path) -> Result<DatasetSummary> {
    if path.is_dir() {
        inspect_folder(path)
    } else if path.is_file() {
        inspect_npz(path)
    } else {
        Err(Error::data(path, "no such file or folder"))
    }
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(super::folder::list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect())
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn inspect_folder(root: &Path) -> Result<DatasetSummary> {
    // Splits are sub-folders that themselves hold class folders; otherwise the root is one split.
    let top = subdirs(root)?;
    let mut splits: Vec<(String, PathBuf)> = Vec::new();
    for d in &top {
        if !subdirs(d)?.is_empty() {
            splits.push((name_of(d), d.clone()));
        }
    }
    if splits.is_empty() {
        if top.is_empty() {
            return Err(Error::data(
                root,
                "expected class sub-folders (<root>/<class>/*) or split folders (<root>/<split>/<class>/*)",
            ));
        }
        splits.push((".".into(), root.to_path_buf()));
    }
    let mut classes: Vec<String> = Vec::new();
    for (_, dir) in &splits {
        for c in subdirs(dir)? {
            let c = name_of(&c);
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
    }
    classes.sort();
    let mut summaries = Vec::new();
    let mut items_by_split = Vec::new();
    for (name, dir) in &splits {
        let mut files: Vec<(PathBuf, usize)> = Vec::new();
        for (ci, class) in classes.iter().enumerate() {
            let cdir = dir.join(class);
            if !cdir.is_dir() {
                continue;
            }
            files.extend(
                super::folder::list_dir(&cdir)?
                    .into_iter()
                    .filter(|p| p.is_file())
                    .map(|p| (p, ci)),
            );
        }
        let decoded: Vec<std::result::Result<Item, (String, String)>> = files
            .par_iter()
            .map(|(p, class)| {
                let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
                let bytes = std::fs::read(p).map_err(|e| (rel.clone(), e.to_string()))?;
                let (chw, channels, w, h) = super::folder::decode(p, &bytes).map_err(|e| {
                    let why = match e {
                        Error::Data { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    (rel, why)
                })?;
                Ok(Item {
                    class: *class,
                    size: (w, h),
                    channels,
                    bytes: Some(hash_bytes(&bytes)),
                    pixels: hash_pixels(&chw),
                })
            })
            .collect();
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        for d in decoded {
            match d {
                Ok(i) => items.push(i),
                Err(u) => unreadable.push(u),
            }
        }
        summaries.push(split_summary(name, &items, classes.len(), unreadable, None));
        items_by_split.push(items);
    }
    Ok(DatasetSummary {
        path: root.to_path_buf(),
        kind: "image folder".into(),
        classes,
        multi_label: false,
        overlaps: overlaps(&summaries, &items_by_split),
        splits: summaries,
    })
}

fn split_summary(
    name: &str,
    items: &[Item],
    classes: usize,
    unreadable: Vec<(String, String)>,
    per_class: Option<Vec<usize>>,
) -> SplitSummary {
    let per_class = per_class.unwrap_or_else(|| {
        let mut v = vec![0; classes];
        for i in items {
            v[i.class] += 1;
        }
        v
    });
    let mut sizes = BTreeMap::new();
    let mut channels = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut duplicates_within = 0;
    for i in items {
        *sizes
            .entry(format!("{}x{}", i.size.0, i.size.1))
            .or_insert(0) += 1;
        *channels.entry(i.channels).or_insert(0) += 1;
        if !seen.insert(i.pixels) {
            duplicates_within += 1;
        }
    }
    SplitSummary {
        name: name.to_string(),
        images: items.len(),
        per_class,
        sizes,
        channels,
        unreadable,
        duplicates_within,
    }
}

/// Every ordered pair of splits (leakage is counted from the side one evaluates on).
fn overlaps(splits: &[SplitSummary], items: &[Vec<Item>]) -> Vec<Overlap> {
    let mut out = Vec::new();
    for (o, other) in items.iter().enumerate() {
        let bytes: HashSet<Hash> = other.iter().filter_map(|i| i.bytes).collect();
        let pixels: HashSet<Hash> = other.iter().map(|i| i.pixels).collect();
        for (s, split) in items.iter().enumerate().filter(|(s, _)| *s != o) {
            let has_bytes = split.iter().all(|i| i.bytes.is_some());
            out.push(Overlap {
                split: splits[s].name.clone(),
                other: splits[o].name.clone(),
                byte_identical: has_bytes.then(|| {
                    split
                        .iter()
                        .filter(|i| i.bytes.is_some_and(|h| bytes.contains(&h)))
                        .count()
                }),
                pixel_identical: split.iter().filter(|i| pixels.contains(&i.pixels)).count(),
            });
        }
    }
    out.sort_by(|a, b| (&a.split, &a.other).cmp(&(&b.split, &b.other)));
    out
}

fn inspect_npz(path: &Path) -> Result<DatasetSummary> {
    let mut archive = npyz::npz::NpzArchive::open(path)
        .map_err(|e| Error::data(path, format!("not a readable .npz archive: {e}")))?;
    let names: HashSet<String> = archive.array_names().map(String::from).collect();
    let splits: Vec<&str> = ["train", "val", "test"]
        .into_iter()
        .filter(|s| names.contains(&format!("{s}_images")))
        .collect();
    if splits.is_empty() {
        let mut listed: Vec<&String> = names.iter().collect();
        listed.sort();
        return Err(Error::data(
            path,
            format!(
                "no `train_images`, `val_images` or `test_images` array (archive has: {})",
                listed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let known = super::medmnist::find(stem);
    let mut label_width = 1;
    let mut max_label = 0usize;
    let mut loaded = Vec::new();
    for s in &splits {
        let (shape, pixels) = super::npz::read_u8(&mut archive, path, &format!("{s}_images"))?;
        let (lshape, labels) = super::npz::read_u8(&mut archive, path, &format!("{s}_labels"))?;
        let (n, h, w, c) = super::npz::image_dims(path, s, &shape)?;
        let width = match lshape[..] {
            [m] if m as usize == n => 1,
            [m, k] if m as usize == n => k as usize,
            _ => {
                return Err(Error::data(
                    path,
                    format!("`{s}_labels` has shape {lshape:?}, expected ({n},) or ({n},K)"),
                ));
            }
        };
        label_width = label_width.max(width);
        max_label = max_label.max(labels.iter().copied().max().unwrap_or(0) as usize);
        loaded.push((s.to_string(), n, h, w, c, pixels, labels, width));
    }
    let multi_label = label_width > 1;
    let classes: Vec<String> = match known {
        Some(k)
            if k.classes.len()
                == if multi_label {
                    label_width
                } else {
                    k.classes.len()
                } =>
        {
            k.class_names()
        }
        _ => {
            let n = if multi_label {
                label_width
            } else {
                max_label + 1
            };
            (0..n).map(|i| i.to_string()).collect()
        }
    };
    let mut summaries = Vec::new();
    let mut items_by_split = Vec::new();
    for (name, n, h, w, c, pixels, labels, width) in loaded {
        let per = h * w * c;
        let items: Vec<Item> = (0..n)
            .map(|i| Item {
                class: if width == 1 { labels[i] as usize } else { 0 },
                size: (w, h),
                channels: c,
                bytes: None,
                pixels: hash_bytes(&pixels[i * per..(i + 1) * per]),
            })
            .collect();
        let per_class = if width == 1 {
            let mut v = vec![0; classes.len()];
            for i in &items {
                if let Some(x) = v.get_mut(i.class) {
                    *x += 1;
                }
            }
            v
        } else {
            (0..width)
                .map(|k| (0..n).filter(|&i| labels[i * width + k] > 0).count())
                .collect()
        };
        summaries.push(split_summary(
            &name,
            &items,
            classes.len(),
            Vec::new(),
            Some(per_class),
        ));
        items_by_split.push(items);
    }
    Ok(DatasetSummary {
        path: path.to_path_buf(),
        kind: match known {
            Some(k) => format!("MedMNIST {} (.npz)", k.flag),
            None => ".npz".into(),
        },
        classes,
        multi_label,
        overlaps: overlaps(&summaries, &items_by_split),
        splits: summaries,
    })
}

impl DatasetSummary {
    /// The summary as text tables.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} ({}), {} classes{}\n\n",
            self.path.display(),
            self.kind,
            self.classes.len(),
            if self.multi_label {
                " (multi-label: counts are positives per label)"
            } else {
                ""
            }
        );
        let mut header: Vec<&str> = vec!["split", "images"];
        header.extend(self.classes.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = self
            .splits
            .iter()
            .map(|s| {
                let mut r = vec![s.name.clone(), s.images.to_string()];
                r.extend(s.per_class.iter().map(|c| c.to_string()));
                r
            })
            .collect();
        out += &crate::io::table(&header, &rows);
        out += "\n\nImage sizes (width x height: images) and stored colour:\n";
        for s in &self.splits {
            let mut sizes: Vec<(&String, &usize)> = s.sizes.iter().collect();
            sizes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = sizes
                .iter()
                .take(5)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let more = if sizes.len() > 5 {
                format!(" … ({} sizes in all)", sizes.len())
            } else {
                String::new()
            };
            let colour: Vec<String> = s
                .channels
                .iter()
                .map(|(c, n)| format!("{}: {n}", if *c == 1 { "gray" } else { "RGB" }))
                .collect();
            out += &format!(
                "  {}: {}{more}; {}\n",
                s.name,
                shown.join(", "),
                colour.join(", ")
            );
        }
        out += "\nUnreadable files:";
        let bad: Vec<&SplitSummary> = self
            .splits
            .iter()
            .filter(|s| !s.unreadable.is_empty())
            .collect();
        if bad.is_empty() {
            out += " none\n";
        } else {
            out += "\n";
            for s in bad {
                for (f, why) in s.unreadable.iter().take(10) {
                    out += &format!("  {f}: {why}\n");
                }
                if s.unreadable.len() > 10 {
                    out += &format!("  … {} in {} in all\n", s.unreadable.len(), s.name);
                }
            }
        }
        out += "\nDuplicates:\n";
        for o in &self.overlaps {
            let bytes = o
                .byte_identical
                .map(|b| format!("{b} byte-identical, "))
                .unwrap_or_default();
            out += &format!(
                "  {} images also in {}: {bytes}{} pixel-identical\n",
                o.split, o.other, o.pixel_identical
            );
        }
        for s in &self.splits {
            out += &format!(
                "  within {}: {} images repeat an earlier one\n",
                s.name, s.duplicates_within
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageEncoder, Luma};

    fn png(img: &GrayImage, best: bool) -> Vec<u8> {
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        let mut out = Vec::new();
        let (c, f) = if best {
            (CompressionType::Best, FilterType::Paeth)
        } else {
            (CompressionType::Fast, FilterType::NoFilter)
        };
        PngEncoder::new_with_quality(&mut out, c, f)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::L8,
            )
            .unwrap();
        out
    }

    fn gradient(w: u32, h: u32, k: u8) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            Luma([(x as u8).wrapping_mul(k).wrapping_add(y as u8)])
        })
    }

    #[test]
    fn folder_counts_sizes_leaks_and_corrupt_files() {
        let root = std::env::temp_dir().join(format!("fedsentry-inspect-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        let put = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        let a = gradient(16, 16, 3);
        let b = gradient(16, 16, 5);
        put("Training/cat/a.png", &png(&a, false));
        put("Training/cat/b.png", &png(&b, false));
        put("Training/dog/c.png", &png(&gradient(20, 12, 7), false));
        put("Training/dog/c_copy.png", &png(&gradient(20, 12, 7), true));
        // Leaks: one byte-identical copy, one re-encoded (same pixels, other bytes).
        put("Testing/cat/a_leak.png", &png(&a, false));
        put("Testing/dog/b_reencoded.png", &png(&b, true));
        put("Testing/dog/d.png", &png(&gradient(16, 16, 11), false));
        put("Testing/dog/broken.png", b"not an image");
        let s = inspect(&root).unwrap();
        assert_eq!(s.classes, ["cat", "dog"]);
        let names: Vec<&str> = s.splits.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["Testing", "Training"]);
        let (test, train) = (&s.splits[0], &s.splits[1]);
        assert_eq!(train.per_class, [2, 2]);
        assert_eq!(test.per_class, [1, 2]);
        assert_eq!(train.sizes["16x16"], 2);
        assert_eq!(train.sizes["20x12"], 2);
        assert_eq!(train.duplicates_within, 1);
        assert_eq!(test.unreadable.len(), 1);
        assert!(test.unreadable[0].0.ends_with("broken.png"));
        let o = &s.overlaps[0];
        assert_eq!(
            (o.split.as_str(), o.other.as_str()),
            ("Testing", "Training")
        );
        // Testing images also in Training: a_leak (bytes and pixels), b_reencoded (pixels).
        assert_eq!(o.byte_identical, Some(1));
        assert_eq!(o.pixel_identical, 2);
        assert_eq!(s.overlaps.len(), 2);
        let text = s.render();
        assert!(text.contains("broken.png"), "{text}");
        assert!(
            text.contains("1 byte-identical, 2 pixel-identical"),
            "{text}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn npz_splits_labels_and_overlap() {
        use npyz::WriterBuilder;
        let dir =
            std::env::temp_dir().join(format!("fedsentry-inspect-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("breastmnist.npz");
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        // train: 3 images of 2×2 (the last equals test's first), labels 0,1,1; test: 2 images.
        let arrays: [(&str, Vec<u64>, Vec<u8>); 4] = [
            (
                "train_images",
                vec![3, 2, 2],
                vec![0, 1, 2, 3, 4, 5, 6, 7, 9, 9, 9, 9],
            ),
            ("train_labels", vec![3, 1], vec![0, 1, 1]),
            ("test_images", vec![2, 2, 2], vec![9, 9, 9, 9, 1, 1, 1, 1]),
            ("test_labels", vec![2, 1], vec![1, 0]),
        ];
        for (name, shape, data) in arrays {
            let mut w = npz
                .array(name, Default::default())
                .unwrap()
                .default_dtype()
                .shape(&shape)
                .begin_nd()
                .unwrap();
            w.extend(data).unwrap();
            w.finish().unwrap();
        }
        drop(npz);
        let s = inspect(&path).unwrap();
        assert_eq!(s.classes, ["malignant", "normal_benign"]);
        assert_eq!(s.splits[0].per_class, [1, 2]);
        assert_eq!(s.splits[1].per_class, [1, 1]);
        assert_eq!(s.splits[0].sizes["2x2"], 3);
        assert_eq!(s.overlaps.len(), 2);
        assert!(s.overlaps.iter().all(|o| o.byte_identical.is_none()));
        assert!(s.overlaps.iter().all(|o| o.pixel_identical == 1));
        std::fs::remove_dir_all(&dir).ok();
    }
}
