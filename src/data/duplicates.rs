//! Train/test leakage: images whose file bytes or decoded pixels are identical across splits.

use super::ImageSet;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub type Hash = [u8; 32];

pub fn hash_bytes(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

pub fn hash_pixels(pixels: &[f32]) -> Hash {
    let mut h = Sha256::new();
    for v in pixels {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DuplicateReport {
    /// Test indices whose file bytes equal a training file.
    pub byte_identical: Vec<usize>,
    /// Test indices whose preprocessed pixels equal a training image (superset of the above
    /// when preprocessing is deterministic).
    pub pixel_identical: Vec<usize>,
}

impl DuplicateReport {
    /// Indices to drop: every test image with any kind of twin in train.
    pub fn leaked(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self
            .byte_identical
            .iter()
            .chain(&self.pixel_identical)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// Compares test against train; `*_bytes` are per-image file digests (empty when not from files).
pub fn find(
    train: &ImageSet,
    test: &ImageSet,
    train_bytes: &[Hash],
    test_bytes: &[Hash],
) -> DuplicateReport {
    let mut report = DuplicateReport::default();
    if !train_bytes.is_empty() && !test_bytes.is_empty() {
        let seen: std::collections::HashSet<&Hash> = train_bytes.iter().collect();
        report.byte_identical = (0..test_bytes.len())
            .filter(|&i| seen.contains(&test_bytes[i]))
            .collect();
    }
    let seen: HashMap<Hash, usize> = (0..train.len())
        .map(|i| (hash_pixels(train.image(i)), i))
        .collect();
    report.pixel_identical = (0..test.len())
        .filter(|&i| seen.contains_key(&hash_pixels(test.image(i))))
        .collect();
    report
}

/// Indices of `set`'s images that `other` holds too: pixel-identical after preprocessing, or
/// (when both come from one folder, `same_root`) the same file.
pub fn shared_with(set: &ImageSet, other: &ImageSet, same_root: bool) -> Vec<usize> {
    let twins = find(other, set, &[], &[]).pixel_identical;
    let files: std::collections::HashSet<&str> = if same_root {
        other.sources.iter().map(String::as_str).collect()
    } else {
        Default::default()
    };
    (0..set.len())
        .filter(|i| twins.binary_search(i).is_ok() || files.contains(set.sources[*i].as_str()))
        .collect()
}

/// Removes the given indices from a set.
pub fn drop_indices(set: &ImageSet, drop: &[usize]) -> ImageSet {
    let drop: std::collections::HashSet<usize> = drop.iter().copied().collect();
    let keep: Vec<usize> = (0..set.len()).filter(|i| !drop.contains(i)).collect();
    set.subset(&keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pixel_and_byte_twins() {
        let mut train = ImageSet::empty(1, 1, 2, vec!["a".into()]);
        train.push(&[0.1, 0.2], 0, "t0".into());
        train.push(&[0.3, 0.4], 0, "t1".into());
        let mut test = ImageSet::empty(1, 1, 2, vec!["a".into()]);
        test.push(&[0.3, 0.4], 0, "x0".into());
        test.push(&[0.5, 0.6], 0, "x1".into());
        test.push(&[0.7, 0.8], 0, "x2".into());
        let tb = vec![hash_bytes(b"A"), hash_bytes(b"B")];
        let xb = vec![hash_bytes(b"C"), hash_bytes(b"D"), hash_bytes(b"A")];
        let r = find(&train, &test, &tb, &xb);
        assert_eq!(r.pixel_identical, vec![0]);
        assert_eq!(r.byte_identical, vec![2]);
        assert_eq!(r.leaked(), vec![0, 2]);
        let kept = drop_indices(&test, &r.leaked());
        assert_eq!(kept.sources, vec!["x1".to_string()]);
    }

    #[test]
    fn shared_images_by_pixels_and_by_file() {
        let mut own = ImageSet::empty(1, 1, 2, vec!["a".into()]);
        own.push(&[0.1, 0.2], 0, "Training/a/1.jpg".into());
        own.push(&[0.3, 0.4], 0, "Training/a/2.jpg".into());
        let mut rest = ImageSet::empty(1, 1, 2, vec!["a".into()]);
        rest.push(&[0.3, 0.4], 0, "Training/a/9.jpg".into()); // a twin under another name
        rest.push(&[0.5, 0.6], 0, "Training/a/1.jpg".into()); // the same file, re-decoded
        rest.push(&[0.7, 0.8], 0, "Training/a/3.jpg".into());
        assert_eq!(shared_with(&rest, &own, true), vec![0, 1]);
        // Another folder's file names say nothing about these images.
        assert_eq!(shared_with(&rest, &own, false), vec![0]);
    }
}
