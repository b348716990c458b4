//! K-means (Lloyd's algorithm, k-means++ seeding) over long vectors: the clients' models (MAD),
//! a class's reduced activations (Activation Clustering). Deterministic for a given seed.

use crate::vector;
use rand::{RngExt, SeedableRng, rngs::StdRng};

pub struct Clustering {
    pub labels: Vec<usize>,
    pub centers: Vec<Vec<f32>>,
}

impl Clustering {
    /// The cluster with the most members (the lowest label among equals).
    pub fn largest(&self) -> usize {
        let k = self.centers.len();
        let mut counts = vec![0usize; k];
        for &l in &self.labels {
            counts[l] += 1;
        }
        (0..k)
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0)
    }
}

fn mean_of(points: &[&[f32]], members: &[usize]) -> Vec<f32> {
    let sel: Vec<&[f32]> = members.iter().map(|&i| points[i]).collect();
    vector::weighted_mean(&sel, &vec![1.0; sel.len()]).expect("a non-empty cluster")
}

pub fn kmeans(points: &[&[f32]], k: usize, seed: u64, max_iter: usize) -> Clustering {
    let n = points.len();
    let k = k.min(n).max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    // k-means++: first center uniform, then proportional to squared distance.
    let mut centers: Vec<Vec<f32>> = vec![points[rng.random_range(0..n)].to_vec()];
    while centers.len() < k {
        let d2: Vec<f64> = points
            .iter()
            .map(|p| {
                centers
                    .iter()
                    .map(|c| vector::sq_dist(p, c))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut idx = n - 1;
            for (i, d) in d2.iter().enumerate() {
                if r < *d {
                    idx = i;
                    break;
                }
                r -= d;
            }
            idx
        } else {
            centers.len() // all points coincide
        };
        centers.push(points[pick].to_vec());
    }
    let mut labels = vec![usize::MAX; n];
    for _ in 0..max_iter {
        let new: Vec<usize> = points
            .iter()
            .map(|p| {
                (0..k)
                    .min_by(|&a, &b| {
                        vector::sq_dist(p, &centers[a]).total_cmp(&vector::sq_dist(p, &centers[b]))
                    })
                    .expect("k ≥ 1")
            })
            .collect();
        if new == labels {
            break;
        }
        labels = new;
        for (c, center) in centers.iter_mut().enumerate() {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
            if !members.is_empty() {
                *center = mean_of(points, &members);
            }
        }
    }
    Clustering { labels, centers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_groups() {
        let pts: Vec<Vec<f32>> = vec![
            vec![0.0, 0.0],
            vec![0.1, 0.0],
            vec![0.0, 0.2],
            vec![5.0, 5.0],
            vec![5.1, 5.0],
        ];
        let refs: Vec<&[f32]> = pts.iter().map(|p| p.as_slice()).collect();
        for seed in 0..5 {
            let c = kmeans(&refs, 2, seed, 50);
            assert_eq!(c.labels[0], c.labels[1]);
            assert_eq!(c.labels[0], c.labels[2]);
            assert_eq!(c.labels[3], c.labels[4]);
            assert_ne!(c.labels[0], c.labels[3]);
            assert_eq!(c.largest(), c.labels[0]);
            let main = &c.centers[c.largest()];
            assert!(vector::sq_dist(main, &[0.1 / 3.0, 0.2 / 3.0]) < 1e-10);
        }
    }
}
