//! Flat parameter vectors: the update a client sends, and the arithmetic on such vectors that
//! the aggregation rules and the model-poisoning attacks share. Sums run in f64 so that results do
//! not depend on vector length or order of magnitude.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// One client's result of local training.
#[derive(Debug, Clone)]
pub struct ClientUpdate {
    pub client: usize,
    pub params: Vec<f32>,
    /// Training examples behind the update (FedAvg's weight).
    pub num_examples: usize,
}

impl ClientUpdate {
    pub fn new(client: usize, params: Vec<f32>, num_examples: usize) -> ClientUpdate {
        ClientUpdate {
            client,
            params,
            num_examples,
        }
    }
}

/// Test updates from literal vectors: 1 example each, ids 0, 1, 2, …
#[cfg(test)]
pub fn unit_updates(vectors: &[&[f32]]) -> Vec<ClientUpdate> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| ClientUpdate::new(i, v.to_vec(), 1))
        .collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

pub fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

pub fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum()
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na * nb)
    }
}

/// Δ = w − w_global.
pub fn delta(params: &[f32], global: &[f32]) -> Vec<f32> {
    params.iter().zip(global).map(|(w, g)| w - g).collect()
}

/// The updates Δᵢ = wᵢ − w_global of a round.
pub fn deltas(updates: &[ClientUpdate], global: &[f32]) -> Vec<Vec<f32>> {
    updates.iter().map(|u| delta(&u.params, global)).collect()
}

/// Σ wᵢ·vᵢ / Σ wᵢ; `None` when the weights sum to zero.
pub fn weighted_mean(vectors: &[&[f32]], weights: &[f64]) -> Option<Vec<f32>> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || vectors.is_empty() {
        return None;
    }
    let mut sum = vec![0.0f64; vectors[0].len()];
    for (v, &w) in vectors.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        for (s, &x) in sum.iter_mut().zip(*v) {
            *s += w * x as f64;
        }
    }
    Some(sum.iter().map(|s| (s / total) as f32).collect())
}

/// w_global moved by the weighted mean of `deltas`; unchanged when no delta has weight.
pub fn step(global: &[f32], deltas: &[Vec<f32>], weights: &[f64]) -> Vec<f32> {
    let refs: Vec<&[f32]> = deltas.iter().map(|d| d.as_slice()).collect();
    match weighted_mean(&refs, weights) {
        Some(mean) => apply(global, &mean),
        None => global.to_vec(),
    }
}

/// w_global + Δ.
pub fn apply(global: &[f32], delta: &[f32]) -> Vec<f32> {
    global.iter().zip(delta).map(|(g, d)| g + d).collect()
}

/// Scales `v` to norm at most `max`; returns the factor applied.
pub fn clip(v: &mut [f32], max: f64) -> f64 {
    let n = norm(v);
    if n <= max || n == 0.0 {
        return 1.0;
    }
    let s = max / n;
    for x in v.iter_mut() {
        *x = (*x as f64 * s) as f32;
    }
    s
}

/// Adds N(0, σ²) to the values inside `ranges` (all values when `None`), seeded.
pub fn add_gaussian_to(
    v: &mut [f32],
    sigma: f64,
    seed: u64,
    ranges: Option<&[std::ops::Range<usize>]>,
) {
    match ranges {
        None => add_gaussian(v, sigma, seed),
        Some(rs) => {
            for (k, r) in rs.iter().enumerate() {
                add_gaussian(
                    &mut v[r.clone()],
                    sigma,
                    crate::seed::item(seed, k as u64, crate::seed::step::GOLDEN32),
                );
            }
        }
    }
}

/// Adds N(0, σ²) to every value, seeded.
pub fn add_gaussian(v: &mut [f32], sigma: f64, seed: u64) {
    if sigma <= 0.0 {
        return;
    }
    let normal = Normal::new(0.0, sigma).expect("σ > 0 and finite");
    let mut rng = StdRng::seed_from_u64(seed);
    for x in v.iter_mut() {
        *x += normal.sample(&mut rng) as f32;
    }
}

/// Applies `f` to the n values of each coordinate (sorted ascending) and collects the results.
pub fn coordinatewise(vectors: &[&[f32]], f: impl Fn(&[f32]) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let dim = vectors[0].len();
    // Chunks of coordinates in parallel; each chunk reuses one column buffer.
    let mut out = vec![0.0f32; dim];
    out.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
        let mut col = vec![0.0f32; vectors.len()];
        for (k, o) in chunk.iter_mut().enumerate() {
            let j = c * 4096 + k;
            for (slot, v) in col.iter_mut().zip(vectors) {
                *slot = v[j];
            }
            col.sort_unstable_by(|a, b| a.total_cmp(b));
            *o = f(&col);
        }
    });
    out
}

/// Median of sorted values (mean of the middle two for even n).
pub fn median_sorted(col: &[f32]) -> f32 {
    let n = col.len();
    if n % 2 == 1 {
        col[n / 2]
    } else {
        ((col[n / 2 - 1] as f64 + col[n / 2] as f64) / 2.0) as f32
    }
}

/// Mean of values, in f64.
pub fn mean(col: &[f32]) -> f32 {
    (col.iter().map(|&x| x as f64).sum::<f64>() / col.len() as f64) as f32
}

/// Pairwise squared Euclidean distances.
pub fn sq_distances(vectors: &[&[f32]]) -> Vec<Vec<f64>> {
    let n = vectors.len();
    let mut d = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let x = sq_dist(vectors[i], vectors[j]);
            d[i][j] = x;
            d[j][i] = x;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_arithmetic() {
        assert_eq!(dot(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        let mut v = vec![3.0, 4.0];
        assert_eq!(clip(&mut v, 1.0), 0.2);
        assert!((norm(&v) - 1.0).abs() < 1e-6);
        assert_eq!(
            weighted_mean(&[&[1.0, 2.0], &[3.0, 6.0]], &[1.0, 3.0]).unwrap(),
            vec![2.5, 5.0]
        );
        assert_eq!(weighted_mean(&[&[1.0]], &[0.0]), None);
    }

    #[test]
    fn coordinatewise_sorts_each_column() {
        let a = [5.0, 1.0, 0.0];
        let b = [1.0, 2.0, 0.0];
        let c = [3.0, 3.0, 9.0];
        let med = coordinatewise(&[&a, &b, &c], median_sorted);
        assert_eq!(med, vec![3.0, 2.0, 0.0]);
        let even = coordinatewise(&[&a, &b], median_sorted);
        assert_eq!(even, vec![3.0, 1.5, 0.0]);
    }
}
