//! MedMNIST `.npz` archives: `{train,val,test}_images` (N,H,W) or (N,H,W,3) uint8 and
//! `{split}_labels` shaped (N,1) or (N,).

use super::ImageSet;
use super::preprocess::Preprocess;
use crate::error::{Error, Result};
use npyz::npz::NpzArchive;
use std::path::Path;

/// Class names of a MedMNIST 2D set, by file stem (`pneumoniamnist`).
pub fn known_classes(stem: &str) -> Option<Vec<String>> {
    super::medmnist::find(stem).map(|s| s.class_names())
}

pub(super) fn read_u8(
    archive: &mut NpzArchive<std::io::BufReader<std::fs::File>>,
    path: &Path,
    key: &str,
) -> Result<(Vec<u64>, Vec<u8>)> {
    let names: Vec<String> = archive.array_names().map(String::from).collect();
    let arr = archive
        .by_name(key)
        .map_err(|e| Error::data(path, format!("cannot read `{key}`: {e}")))?
        .ok_or_else(|| {
            Error::data(
                path,
                format!("missing array `{key}` (archive has: {})", names.join(", ")),
            )
        })?;
    let shape = arr.shape().to_vec();
    let dtype = arr.dtype().descr();
    let data: Vec<u8> = match dtype.trim_matches('\'').trim_start_matches(['<', '>', '|']) {
        "u1" => arr.into_vec::<u8>(),
        "i8" => arr
            .into_vec::<i64>()
            .map(|v| v.into_iter().map(|x| x.clamp(0, 255) as u8).collect()),
        "i4" => arr
            .into_vec::<i32>()
            .map(|v| v.into_iter().map(|x| x.clamp(0, 255) as u8).collect()),
        other => {
            return Err(Error::data(
                path,
                format!("`{key}` has dtype {other}, expected uint8 (or integer labels)"),
            ));
        }
    }
    .map_err(|e| Error::data(path, format!("cannot read `{key}`: {e}")))?;
    Ok((shape, data))
}

/// (N, H, W, C) of `{split}_images`, shaped (N,H,W) for grayscale or (N,H,W,3) for colour.
pub(super) fn image_dims(
    path: &Path,
    split: &str,
    shape: &[u64],
) -> Result<(usize, usize, usize, usize)> {
    match *shape {
        [n, h, w] => Ok((n as usize, h as usize, w as usize, 1)),
        [n, h, w, 3] => Ok((n as usize, h as usize, w as usize, 3)),
        _ => Err(Error::data(
            path,
            format!("`{split}_images` has shape {shape:?}, expected (N,H,W) or (N,H,W,3)"),
        )),
    }
}

/// Loads split `split` ("train", "val" or "test").
pub fn load_split(
    path: &Path,
    split: &str,
    classes: &[String],
    prep: &Preprocess,
) -> Result<ImageSet> {
    let mut archive = NpzArchive::open(path)
        .map_err(|e| Error::data(path, format!("not a readable .npz archive: {e}")))?;
    let (shape, pixels) = read_u8(&mut archive, path, &format!("{split}_images"))?;
    let (lshape, labels) = read_u8(&mut archive, path, &format!("{split}_labels"))?;
    let (n, h, w, c) = image_dims(path, split, &shape)?;
    let label_ok = matches!(lshape[..], [m] | [m, 1] if m as usize == n);
    if !label_ok {
        return Err(Error::data(
            path,
            format!("`{split}_labels` has shape {lshape:?}, expected ({n},) or ({n},1)"),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes.len()) {
        return Err(Error::data(
            path,
            format!(
                "`{split}_labels` holds label {bad} but only {} classes are named",
                classes.len()
            ),
        ));
    }
    let mut set = ImageSet::empty(prep.channels, prep.size, prep.size, classes.to_vec());
    let per = h * w * c;
    for i in 0..n {
        let hwc = &pixels[i * per..(i + 1) * per];
        // HWC uint8 → CHW float.
        let chw: Vec<f32> = (0..c)
            .flat_map(|k| (0..h * w).map(move |p| hwc[p * c + k] as f32 / 255.0))
            .collect();
        set.push(
            &prep.apply(&chw, c, w, h),
            labels[i] as i64,
            format!("{split}[{i}]"),
        );
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    fn write_npz(path: &Path, arrays: &[(&str, Vec<u64>, Vec<u8>)]) {
        let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
        for (name, shape, data) in arrays {
            let mut w = npz
                .array(name, Default::default())
                .unwrap()
                .default_dtype()
                .shape(shape)
                .begin_nd()
                .unwrap();
            w.extend(data.iter().copied()).unwrap();
            w.finish().unwrap();
        }
    }

    #[test]
    fn loads_both_label_shapes_and_names_missing_keys() {
        let dir = std::env::temp_dir().join(format!("fedsentry-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.npz");
        write_npz(
            &path,
            &[
                (
                    "train_images",
                    vec![2, 2, 2],
                    vec![0, 255, 0, 255, 10, 10, 10, 10],
                ),
                ("train_labels", vec![2, 1], vec![0, 1]),
                ("test_images", vec![1, 2, 2], vec![1, 2, 3, 4]),
                ("test_labels", vec![1], vec![1]),
            ],
        );
        let classes = vec!["a".to_string(), "b".to_string()];
        let prep = Preprocess {
            size: 2,
            channels: 1,
            roi: None,
        };
        let train = load_split(&path, "train", &classes, &prep).unwrap();
        assert_eq!(train.labels, vec![0, 1]);
        assert_eq!(train.image(0), &[0.0, 1.0, 0.0, 1.0]);
        let test = load_split(&path, "test", &classes, &prep).unwrap();
        assert_eq!(test.labels, vec![1]);
        let err = load_split(&path, "val", &classes, &prep)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tiny.npz") && err.contains("val_images"),
            "{err}"
        );
        let err = load_split(&path, "train", &classes[..1], &prep)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 1"), "{err}");
        std::fs::write(dir.join("bad.npz"), b"garbage").unwrap();
        let err = load_split(&dir.join("bad.npz"), "train", &classes, &prep)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.npz"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The PCam HDF5 arrays saved as documented in the README: (N, H, W, 3) uint8 images and
    /// (N,) labels load as RGB, channel-major.
    #[test]
    fn rgb_arrays_as_the_pcam_layout_documents() {
        let dir = std::env::temp_dir().join(format!("fedsentry-npz-rgb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pcam.npz");
        // One 1×2 image: pixel 0 is (255, 0, 0), pixel 1 is (0, 0, 255).
        write_npz(
            &path,
            &[
                ("train_images", vec![1, 1, 2, 3], vec![255, 0, 0, 0, 0, 255]),
                ("train_labels", vec![1], vec![1]),
            ],
        );
        let classes = vec!["0".to_string(), "1".to_string()];
        let prep = Preprocess {
            size: 2,
            channels: 3,
            roi: None,
        };
        let set = load_split(&path, "train", &classes, &prep).unwrap();
        assert_eq!(set.labels, vec![1]);
        assert_eq!(set.channels, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
