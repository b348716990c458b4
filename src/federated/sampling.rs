//! Which clients train and evaluate each round (Flower's `fraction_fit` / `min_fit_clients`
//! and their evaluate twins). The draw of a round depends only on the run's seed and the round,
//! so a driver that asks for round r's clients gets the same ones however it got there.

use crate::error::{Error, Result};
use crate::seed::mix;
use rand::{SeedableRng, rngs::StdRng, seq::index};

/// Client sampling per round (Flower's fraction_fit / min_fit_clients and their evaluate twins).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub fraction_fit: f64,
    pub min_fit_clients: usize,
    pub fraction_evaluate: f64,
    pub min_evaluate_clients: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            fraction_fit: 1.0,
            min_fit_clients: 1,
            fraction_evaluate: 1.0,
            min_evaluate_clients: 0,
        }
    }
}

impl Sampling {
    pub fn validate(&self, clients: usize) -> Result<()> {
        for (key, f) in [
            ("fraction_fit", self.fraction_fit),
            ("fraction_evaluate", self.fraction_evaluate),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::param(
                    format!("federation.{key}"),
                    format!("must be within 0..=1, got {f}"),
                ));
            }
        }
        if self.min_fit_clients > clients || self.min_evaluate_clients > clients {
            return Err(Error::param(
                "federation.min_fit_clients",
                format!(
                    "({}) and `min_evaluate_clients` ({}) cannot exceed the {clients} clients",
                    self.min_fit_clients, self.min_evaluate_clients
                ),
            ));
        }
        if self.fraction_fit == 0.0 && self.min_fit_clients == 0 {
            return Err(Error::param(
                "federation.fraction_fit",
                "and `min_fit_clients` are both 0: nobody would train",
            ));
        }
        Ok(())
    }
}

/// max(⌊fraction·n⌋, min) distinct clients drawn uniformly; all of them when that is n.
pub fn sample(n: usize, fraction: f64, min: usize, rng: &mut StdRng) -> Vec<usize> {
    let k = ((fraction * n as f64).floor() as usize).max(min).min(n);
    if k == n {
        return (0..n).collect();
    }
    let mut picked = index::sample(rng, n, k).into_vec();
    picked.sort_unstable();
    picked
}

impl Sampling {
    /// The round's generator: the fit draw comes first, the evaluate draw second.
    fn rng(seed: u64, round: usize) -> StdRng {
        StdRng::seed_from_u64(mix(seed, round as u64, u64::MAX))
    }

    /// Clients that train in `round` (ascending ids), leaving out those a defense has excluded
    /// for good.
    pub fn fit_clients(
        &self,
        seed: u64,
        round: usize,
        clients: usize,
        excluded: &[usize],
    ) -> Vec<usize> {
        self.draw(seed, round, clients, excluded, false)
    }

    /// Clients that evaluate the new global model of `round` on their validation sets.
    pub fn evaluate_clients(
        &self,
        seed: u64,
        round: usize,
        clients: usize,
        excluded: &[usize],
    ) -> Vec<usize> {
        self.draw(seed, round, clients, excluded, true)
    }

    fn draw(
        &self,
        seed: u64,
        round: usize,
        n: usize,
        excluded: &[usize],
        evaluate: bool,
    ) -> Vec<usize> {
        let mut rng = Self::rng(seed, round);
        let mut ids = sample(n, self.fraction_fit, self.min_fit_clients, &mut rng);
        if evaluate {
            ids = sample(
                n,
                self.fraction_evaluate,
                self.min_evaluate_clients,
                &mut rng,
            );
        }
        ids.retain(|c| !excluded.contains(c));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_respects_fraction_and_minimum() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample(4, 1.0, 1, &mut rng), vec![0, 1, 2, 3]);
        let s = sample(1000, 0.1, 2, &mut rng);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample(10, 0.05, 3, &mut rng).len(), 3);
        let a = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        let b = sample(50, 0.2, 0, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }

    #[test]
    fn a_rounds_clients_depend_on_seed_and_round_only() {
        let s = Sampling {
            fraction_fit: 0.5,
            fraction_evaluate: 0.3,
            ..Default::default()
        };
        let fit = s.fit_clients(3, 7, 20, &[]);
        assert_eq!(fit.len(), 10);
        assert_eq!(fit, s.fit_clients(3, 7, 20, &[]));
        assert_ne!(fit, s.fit_clients(3, 8, 20, &[]));
        // The evaluate draw follows the fit draw on the round's generator.
        let mut rng = Sampling::rng(3, 7);
        sample(20, 0.5, 1, &mut rng);
        assert_eq!(
            s.evaluate_clients(3, 7, 20, &[]),
            sample(20, 0.3, 0, &mut rng)
        );
        let without = s.fit_clients(3, 7, 20, &fit[..2]);
        assert_eq!(without, fit[2..].to_vec());
    }
}
