//! An aggregation rule on its own, for a server that is not a [`super::Federation`]: a Flower
//! strategy, or any code that holds clients' parameter vectors. It runs the same rule code as
//! the simulation — same checks of malformed updates, same per-round seed for the rule's
//! random draws (`mix(seed, round, AGGREGATION)`), same decisions — and keeps the rule's state
//! (MAD's trust, FoolsGold's history, DP's accountant) from round to round, or across
//! processes through [`Aggregator::state`] / [`Aggregator::restore`].

use super::federation::{RoundAggregate, RoundAggregator};
use super::rules::Rule;
use super::strategy::{RoundConfig, RoundContext, Strategy};
use crate::error::{Error, Result};
use crate::seed::{mix, stream};
use crate::vector::ClientUpdate;

pub struct Aggregator {
    strategy: Box<dyn Strategy>,
    clients: usize,
    rounds: usize,
    seed: u64,
}

impl Aggregator {
    /// `rule` over a federation of `clients` clients, `rounds` rounds long (rules that
    /// calibrate noise to the whole training need it), whose draws derive from `seed`.
    /// The rule's precondition is checked for `clients` updates per round.
    pub fn new(rule: &Rule, clients: usize, rounds: usize, seed: u64) -> Result<Aggregator> {
        if clients == 0 || rounds == 0 {
            return Err(Error::param(
                "federation",
                format!(
                    "needs at least one client and one round, got {clients} clients and {rounds} rounds"
                ),
            ));
        }
        rule.validate(clients)?;
        Ok(Aggregator {
            strategy: rule.build(),
            clients,
            rounds,
            seed,
        })
    }

    /// The rule's name, e.g. `krum(f=1)`.
    pub fn name(&self) -> String {
        self.strategy.name()
    }

    /// What the rule asks of the `selected` clients training in `round` (FedProx's μ,
    /// FLTrust's root-set size, a stop when a privacy budget is spent).
    pub fn configure(&self, round: usize, selected: usize) -> RoundConfig {
        self.strategy.configure(round, selected, self.clients)
    }

    /// The next global parameters from `updates` (in any order: they are sorted by client id,
    /// the order the rules' tie-breaking assumes), with every decision and score.
    /// `server_model` is FLTrust's: the global model trained on the server's root set.
    pub fn aggregate(
        &self,
        round: usize,
        global: &[f32],
        mut updates: Vec<ClientUpdate>,
        server_model: Option<&[f32]>,
    ) -> Result<RoundAggregate> {
        updates.sort_by_key(|u| u.client);
        if let Some(w) = updates.windows(2).find(|w| w[0].client == w[1].client) {
            return Err(Error::param(
                "updates",
                format!("client {} sent two updates in round {round}", w[0].client),
            ));
        }
        if let Some(u) = updates.iter().find(|u| u.client >= self.clients) {
            return Err(Error::param(
                "updates",
                format!(
                    "no client {}: the federation has {}",
                    u.client, self.clients
                ),
            ));
        }
        let ctx = RoundContext {
            round,
            rounds: self.rounds,
            global,
            server_model,
            seed: mix(self.seed, round as u64, stream::AGGREGATION),
            clients: self.clients,
            trainable: None,
        };
        let mut agg = RoundAggregator::new(self.strategy.as_ref(), ctx);
        for u in updates {
            agg.add(u)?;
        }
        agg.finish()
    }

    /// Clients the rule has excluded for good, ascending.
    pub fn excluded(&self) -> Vec<usize> {
        self.strategy.status().excluded
    }

    /// Privacy spent so far, for rules with an accountant.
    pub fn epsilon(&self) -> Option<f64> {
        self.strategy.status().epsilon
    }

    /// The rule's state between rounds (None for stateless rules).
    pub fn state(&self) -> Option<serde_json::Value> {
        self.strategy.state()
    }

    pub fn restore(&self, state: serde_json::Value) -> Result<()> {
        self.strategy.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn krum_by_hand_in_any_order_and_bad_updates_named() {
        // Krum f = 1 over 5 updates: each scores the sum of squared distances to its
        // n − f − 2 = 2 nearest. Points 0, 1, 2, 3 on a line and an outlier at 100:
        // scores 0 → 1 + 4 = 5, 1 → 1 + 1 = 2, 2 → 2, 3 → 1 + 4 = 5, 100 → far. Ties go to the
        // lower client id, so client 1 (value 1) wins.
        let agg = Aggregator::new(&rule("rule = \"krum\"\nf = 1"), 5, 3, 7).unwrap();
        let ups: Vec<ClientUpdate> = [3.0f32, 100.0, 2.0, 0.0, 1.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| ClientUpdate::new([3, 4, 2, 0, 1][i], vec![v], 10))
            .collect();
        let out = agg.aggregate(1, &[0.0], ups, None).unwrap();
        assert_eq!(out.params, vec![1.0]);
        assert_eq!(out.accepted, vec![0, 1, 2, 3, 4]);
        let e = Aggregator::new(&rule("rule = \"krum\"\nf = 1"), 4, 3, 7)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("2f + 3"), "{e}");
        let twice = vec![
            ClientUpdate::new(1, vec![0.0], 1),
            ClientUpdate::new(1, vec![1.0], 1),
        ];
        let e = agg
            .aggregate(1, &[0.0], twice, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("client 1 sent two updates"), "{e}");
        let stranger = vec![ClientUpdate::new(9, vec![0.0], 1)];
        let e = agg
            .aggregate(1, &[0.0], stranger, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no client 9"), "{e}");
    }

    #[test]
    fn fedavg_weights_by_examples_and_rejects_non_finite() {
        let agg = Aggregator::new(&Rule::default(), 3, 1, 0).unwrap();
        let ups = vec![
            ClientUpdate::new(0, vec![1.0, 2.0], 1),
            ClientUpdate::new(1, vec![4.0, 8.0], 3),
            ClientUpdate::new(2, vec![f32::NAN, 0.0], 5),
        ];
        let out = agg.aggregate(1, &[0.0, 0.0], ups, None).unwrap();
        // (1·1 + 3·4) / 4 = 3.25, (1·2 + 3·8) / 4 = 6.5.
        assert_eq!(out.params, vec![3.25, 6.5]);
        assert_eq!(out.flags.len(), 1);
        assert_eq!(out.flags[0].client, 2);
    }
}
