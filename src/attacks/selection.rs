//! Which training samples an attack touches.

use crate::data::ImageSet;
use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Uniformly among the candidates.
    #[default]
    Uniform,
    /// Each candidate class contributes in proportion to its size (largest remainder).
    Proportional,
}

/// Picks `round(rate · |set|)` indices among samples whose label is in `allowed`.
pub fn select(
    set: &ImageSet,
    rate: f64,
    allowed: &[bool],
    selection: Selection,
    seed: u64,
) -> Result<Vec<usize>> {
    let want = (rate * set.len() as f64).round() as usize;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); set.num_classes()];
    for (i, &l) in set.labels.iter().enumerate() {
        if allowed[l as usize] {
            by_class[l as usize].push(i);
        }
    }
    let available: usize = by_class.iter().map(Vec::len).sum();
    if want > available {
        return Err(Error::Invalid(format!(
            "poison rate {rate} asks for {want} samples but only {available} are eligible"
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = match selection {
        Selection::Uniform => {
            let mut all: Vec<usize> = by_class.concat();
            all.sort_unstable();
            all.shuffle(&mut rng);
            all.truncate(want);
            all
        }
        Selection::Proportional => {
            let quotas =
                largest_remainder(&by_class.iter().map(Vec::len).collect::<Vec<_>>(), want);
            let mut out = Vec::with_capacity(want);
            for (mut idx, q) in by_class.into_iter().zip(quotas) {
                idx.shuffle(&mut rng);
                out.extend_from_slice(&idx[..q]);
            }
            out
        }
    };
    chosen.sort_unstable();
    Ok(chosen)
}

/// Splits `total` over groups in proportion to `sizes`, never exceeding a group's size.
pub fn largest_remainder(sizes: &[usize], total: usize) -> Vec<usize> {
    let sum: usize = sizes.iter().sum();
    if sum == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&s| s as f64 * total as f64 / sum as f64)
        .collect();
    let mut q: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut left = total - q.iter().sum::<usize>();
    for &i in order.iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if q[i] < sizes[i] {
            q[i] += 1;
            left -= 1;
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_sums() {
        assert_eq!(largest_remainder(&[10, 20, 30], 6), vec![1, 2, 3]);
        assert_eq!(largest_remainder(&[1, 1, 1], 2).iter().sum::<usize>(), 2);
        assert_eq!(largest_remainder(&[5, 0], 3), vec![3, 0]);
    }
}
