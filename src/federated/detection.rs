//! Detection quality of a defense: which clients it excluded or rejected, when, and how that
//! matches the known malicious ids (which the defense itself never sees).

use super::strategy::{Action, Flag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One decision of a defense, as written to `defense.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct DefenseRecord {
    pub round: usize,
    pub client: usize,
    pub malicious: bool,
    pub action: Action,
    pub weight: Option<f64>,
    pub reason: String,
}

/// A per-client score of a defense in one round (`scores.csv`).
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRecord {
    pub round: usize,
    pub client: usize,
    pub malicious: bool,
    pub name: &'static str,
    pub value: f64,
}

/// Detection scored against the known malicious clients. Rates count client-rounds: in each
/// round, every client that sent an update or was kept out is one decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Detection {
    /// Excluded malicious client-rounds / malicious client-rounds (None without malicious).
    pub tpr: Option<f64>,
    /// Excluded honest client-rounds / honest client-rounds.
    pub fpr: Option<f64>,
    /// Clients excluded or rejected at least once.
    pub flagged_clients: Vec<usize>,
    /// First round in which a malicious client was excluded.
    pub first_correct_round: Option<usize>,
    /// First round in which every malicious client was excluded.
    pub all_malicious_round: Option<usize>,
    /// `[client, round]`: the first round each flagged client was excluded or rejected.
    #[serde(default)]
    pub first_flagged: Vec<[usize; 2]>,
    /// Malicious and honest clients excluded or rejected at least once.
    #[serde(default)]
    pub malicious_flagged: usize,
    #[serde(default)]
    pub honest_flagged: usize,
}

/// Scores one run. `rounds[r]` holds the round number, the clients considered (trained or kept
/// out) and the defense's flags.
pub fn score(rounds: &[(usize, Vec<usize>, Vec<Flag>)], malicious: &[usize]) -> Detection {
    let mal: BTreeSet<usize> = malicious.iter().copied().collect();
    let (mut tp, mut pos, mut fp, mut neg) = (0usize, 0usize, 0usize, 0usize);
    let mut flagged = BTreeSet::new();
    let mut first_flagged: Vec<[usize; 2]> = Vec::new();
    let mut first = None;
    let mut all = None;
    for (round, considered, flags) in rounds {
        let excluded: BTreeSet<usize> = flags
            .iter()
            .filter(|f| f.is_exclusion())
            .map(|f| f.client)
            .collect();
        let considered: BTreeSet<usize> = considered
            .iter()
            .copied()
            .chain(excluded.iter().copied())
            .collect();
        for c in &considered {
            let hit = excluded.contains(c);
            if mal.contains(c) {
                pos += 1;
                tp += usize::from(hit);
            } else {
                neg += 1;
                fp += usize::from(hit);
            }
        }
        for &c in &excluded {
            if flagged.insert(c) {
                first_flagged.push([c, *round]);
            }
        }
        if first.is_none() && excluded.iter().any(|c| mal.contains(c)) {
            first = Some(*round);
        }
        if all.is_none() && !mal.is_empty() && mal.is_subset(&excluded) {
            all = Some(*round);
        }
    }
    let rate = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    first_flagged.sort_unstable();
    let malicious_flagged = flagged.iter().filter(|c| mal.contains(c)).count();
    Detection {
        tpr: rate(tp, pos),
        fpr: rate(fp, neg),
        malicious_flagged,
        honest_flagged: flagged.len() - malicious_flagged,
        first_flagged,
        flagged_clients: flagged.into_iter().collect(),
        first_correct_round: first,
        all_malicious_round: all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_client_rounds() {
        let ex = |c| Flag::excluded(c, "test");
        let rounds = vec![
            (1, vec![0, 1, 2, 3], vec![]),
            (2, vec![0, 1, 2, 3], vec![ex(3), ex(1)]),
            // Client 3 no longer trains but is still kept out: it counts as detected.
            (
                3,
                vec![0, 1, 2],
                vec![ex(3), ex(2), Flag::downweighted(0, 0.5, "clipped")],
            ),
        ];
        let d = score(&rounds, &[2, 3]);
        // Malicious client-rounds: 2 per round = 6, excluded: (2,3), (3,3), (3,2) = 3.
        assert_eq!(d.tpr, Some(0.5));
        // Honest client-rounds: 6, excluded: (2,1) = 1; down-weighting is not exclusion.
        assert_eq!(d.fpr, Some(1.0 / 6.0));
        assert_eq!(d.flagged_clients, vec![1, 2, 3]);
        assert_eq!(d.first_correct_round, Some(2));
        assert_eq!(d.all_malicious_round, Some(3));
        assert_eq!(d.first_flagged, vec![[1, 2], [2, 3], [3, 2]]);
        assert_eq!((d.malicious_flagged, d.honest_flagged), (2, 1));
        let none = score(&rounds, &[]);
        assert_eq!(none.tpr, None);
        assert_eq!(none.first_correct_round, None);
    }
}
