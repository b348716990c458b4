//! Input normalization and gray→RGB expansion, applied per batch on the device.

use crate::data::ImageSet;
use crate::data::Normalize;
use tch::Tensor;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    pub fn identity() -> Self {
        Normalizer {
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    pub fn from_set(set: &ImageSet) -> Self {
        let (mean, std) = set.channel_stats();
        Normalizer { mean, std }
    }

    pub fn new(kind: Normalize, train: &ImageSet) -> Self {
        match kind {
            Normalize::TrainStats => Self::from_set(train),
            Normalize::Imagenet => Normalizer {
                mean: IMAGENET_MEAN.to_vec(),
                std: IMAGENET_STD.to_vec(),
            },
            Normalize::None => Self::identity(),
        }
    }

    /// The statistics as (1, C, 1, 1) tensors for a model with `channels` inputs, built once
    /// per loop rather than per batch; statistics of one channel apply to all.
    pub fn on(&self, channels: usize, device: tch::Device) -> BatchNormalizer {
        let pick = |v: &[f32], c: usize| v[c % v.len()];
        let mean: Vec<f32> = (0..channels).map(|c| pick(&self.mean, c)).collect();
        let std: Vec<f32> = (0..channels).map(|c| pick(&self.std, c)).collect();
        let shape = [1, channels as i64, 1, 1];
        BatchNormalizer {
            channels,
            identity: mean.iter().all(|&m| m == 0.0) && std.iter().all(|&s| s == 1.0),
            mean: Tensor::from_slice(&mean).view(shape).to_device(device),
            std: Tensor::from_slice(&std).view(shape).to_device(device),
        }
    }
}

/// A `Normalizer` placed on a device for one model's channel count.
pub struct BatchNormalizer {
    channels: usize,
    mean: Tensor,
    std: Tensor,
    /// Mean 0 and std 1 everywhere: the subtraction and division are skipped (they would cost
    /// two passes forward and two backward through every attack step).
    identity: bool,
}

impl BatchNormalizer {
    /// Expands a 1-channel batch to the model's channels and normalizes each channel.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let x = if size[1] == 1 && self.channels > 1 {
            x.expand([size[0], self.channels as i64, size[2], size[3]], false)
        } else {
            x.shallow_clone()
        };
        if self.identity {
            return x;
        }
        (x - &self.mean) / &self.std
    }
}
