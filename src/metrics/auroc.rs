//! Area under the ROC curve from scores of negatives and positives: the probability that a
//! random positive scores above a random negative (ties count one half; Mann–Whitney U).

pub fn auroc(negatives: &[f64], positives: &[f64]) -> Option<f64> {
    if negatives.is_empty() || positives.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = negatives
        .iter()
        .map(|&s| (s, false))
        .chain(positives.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties, then U = Σ ranks of positives − n₊(n₊ + 1)/2.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (np, nn) = (positives.len() as f64, negatives.len() as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.3, 0.4]), Some(1.0));
        assert_eq!(auroc(&[0.3, 0.4], &[0.1, 0.2]), Some(0.0));
        // Pairs (n, p): (1,2) yes, (1,0.5) no, (3,2) no, (3,0.5) no → 1/4.
        assert_eq!(auroc(&[1.0, 3.0], &[2.0, 0.5]), Some(0.25));
        // All tied: 0.5.
        assert_eq!(auroc(&[1.0, 1.0], &[1.0]), Some(0.5));
        assert_eq!(auroc(&[], &[1.0]), None);
    }
}
