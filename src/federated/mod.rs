//! Federated learning: partition → clients → rounds (fit, aggregate with a `Strategy`,
//! evaluate). [`Federation`] is the round-by-round API; [`simulate`] runs it in one process.
//!
//! Clients hold index lists into one shared dataset; a client's model exists only while it
//! trains. Every random draw is seeded by (seed, round, client), so results depend neither on
//! the number of workers nor on who drives the rounds.
//!
//! Over 500 lines on purpose: the `[federation]` settings with their validation; the round loop lives in `simulation.rs`; the last 250 lines are its tests.

pub mod aggregator;
pub mod client;
pub mod detection;
pub mod federation;
pub mod partition;
pub mod rules;
pub mod sampling;
pub mod server_data;
pub mod simulation;
pub mod strategy;
pub mod transfer;

pub use aggregator::Aggregator;
pub use federation::{Federation, RoundAggregate, RoundAggregator, RoundPlan};
pub use simulation::{ClientRecord, RoundRecord, Simulation, simulate};

use crate::attacks::Poisoning;
use crate::attacks::model::ModelPoisoning;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::seed::{mix, stream};
use client::Client;
use partition::PartitionConfig;
use rand::{SeedableRng, rngs::StdRng, seq::index};
use rules::Rule;
use sampling::Sampling;
use serde::{Deserialize, Serialize};

/// `[federation]` in an experiment file. `[train]` then describes each client's local training
/// (its `epochs` are the local epochs per round).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    pub clients: usize,
    pub rounds: usize,
    #[serde(default)]
    pub strategy: Rule,
    /// Share of clients that train each round, and the least that do (Flower's names).
    #[serde(default = "one_f")]
    pub fraction_fit: f64,
    #[serde(default = "one")]
    pub min_fit_clients: usize,
    /// Share of clients that evaluate the global model on their validation sets each round.
    #[serde(default = "one_f")]
    pub fraction_evaluate: f64,
    #[serde(default)]
    pub min_evaluate_clients: usize,
    #[serde(default)]
    pub partition: PartitionConfig,
    /// Share of each client's samples held out as its validation set.
    #[serde(default = "default_client_val")]
    pub client_val_fraction: f64,
    #[serde(default)]
    pub malicious: Option<MaliciousConfig>,
    /// Evaluate the global model on the server's test sets every this many rounds (and after
    /// the last round).
    #[serde(default = "one")]
    pub evaluate_every: usize,
    /// Clients trained at once (0 = one per CPU core). Does not change results.
    #[serde(default, skip_serializing)]
    pub workers: usize,
    /// libtorch threads inside one client's training.
    #[serde(default = "one")]
    pub threads_per_client: usize,
    /// Training images the server keeps for itself before the partition (0: none); no client
    /// holds them or a pixel twin of them (see `server_data`). Fed-Safe's adaptation needs them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_images: usize,
    /// Adversarial training: each client adds adversarial copies of its training images, crafted
    /// on the model it received, to every round's local training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversarial_training: Option<crate::attacks::evasion::EvasionConfig>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn default_client_val() -> f64 {
    0.2
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}

/// Which clients are malicious: explicit ids, or `count` drawn with the run's seed. They poison
/// their local training data with `[attack]` at the attack's rate, or at `rates[i]` each, and/or
/// manipulate the update they send (`model_poisoning`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaliciousConfig {
    pub clients: Vec<usize>,
    pub count: Option<usize>,
    pub rates: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_poisoning: Option<ModelPoisoning>,
}

impl FederationConfig {
    pub fn validate(&self, has_attack: bool) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::param(key, why));
        if self.clients == 0 {
            return bad("federation.clients", "must be at least 1".into());
        }
        if self.rounds == 0 {
            return bad("federation.rounds", "must be at least 1".into());
        }
        if self.evaluate_every == 0 {
            return bad("federation.evaluate_every", "must be at least 1".into());
        }
        if self.threads_per_client == 0 {
            return bad("federation.threads_per_client", "must be at least 1".into());
        }
        if !(0.0..0.9).contains(&self.client_val_fraction) {
            return bad(
                "federation.client_val_fraction",
                format!("must be within 0..0.9, got {}", self.client_val_fraction),
            );
        }
        self.sampling().validate(self.clients)?;
        let s = self.sampling();
        let per_round = ((s.fraction_fit * self.clients as f64).floor() as usize)
            .max(s.min_fit_clients)
            .min(self.clients);
        self.strategy.validate(per_round)?;
        self.partition
            .validate(self.clients, None, "federation.partition")?;
        if let Some(m) = &self.malicious {
            if !has_attack && m.model_poisoning.is_none() && m.count.unwrap_or(m.clients.len()) > 0
            {
                return bad(
                    "federation.malicious",
                    "needs an `[attack]` table or `model_poisoning` to carry out".into(),
                );
            }
            if let Some(mp) = &m.model_poisoning {
                mp.validate()?;
            }
            if !has_attack && !m.rates.is_empty() {
                return bad(
                    "federation.malicious.rates",
                    "needs an `[attack]` table".into(),
                );
            }
            if m.count.is_some() && !m.clients.is_empty() {
                return bad(
                    "federation.malicious",
                    "give either `clients` (ids) or `count`, not both".into(),
                );
            }
            if let Some(&id) = m.clients.iter().find(|&&id| id >= self.clients) {
                return bad(
                    "federation.malicious.clients",
                    format!("client {id} does not exist (ids 0..{})", self.clients),
                );
            }
            if m.count.is_some_and(|c| c > self.clients) {
                return bad(
                    "federation.malicious.count",
                    format!(
                        "{} exceeds the {} clients",
                        m.count.unwrap_or(0),
                        self.clients
                    ),
                );
            }
            let n = m.count.unwrap_or(m.clients.len());
            if !m.rates.is_empty() && m.rates.len() != n {
                return bad(
                    "federation.malicious.rates",
                    format!("has {} entries for {n} malicious clients", m.rates.len()),
                );
            }
            for &r in &m.rates {
                crate::attacks::check_rate(r, "federation.malicious.rates")?;
            }
        }
        Ok(())
    }

    pub fn sampling(&self) -> Sampling {
        Sampling {
            fraction_fit: self.fraction_fit,
            min_fit_clients: self.min_fit_clients,
            fraction_evaluate: self.fraction_evaluate,
            min_evaluate_clients: self.min_evaluate_clients,
        }
    }

    /// Malicious client ids (ascending) with their data-poison rates (none without `[attack]`).
    pub fn malicious_clients(
        &self,
        attack: Option<&Poisoning>,
        seed: u64,
    ) -> Vec<(usize, Option<f64>)> {
        let Some(m) = &self.malicious else {
            return Vec::new();
        };
        if attack.is_none() && m.model_poisoning.is_none() {
            return Vec::new();
        }
        let ids: Vec<usize> = match m.count {
            Some(k) => {
                let mut v = index::sample(
                    &mut StdRng::seed_from_u64(mix(seed, stream::MALICIOUS, 0)),
                    self.clients,
                    k,
                )
                .into_vec();
                v.sort_unstable();
                v
            }
            None => {
                let mut v = m.clients.clone();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        ids.iter()
            .enumerate()
            .map(|(i, &id)| {
                (
                    id,
                    attack.map(|a| m.rates.get(i).copied().unwrap_or(a.rate())),
                )
            })
            .collect()
    }

    /// Worker threads actually used.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

/// Clients with their train/validation splits and poison rates.
pub fn make_clients(
    fed: &FederationConfig,
    data: &Dataset,
    attack: Option<&Poisoning>,
    seed: u64,
) -> Result<(Vec<Client>, Vec<Vec<usize>>)> {
    let parts = fed.partition.split(
        &data.train.labels,
        data.train.num_classes(),
        fed.clients,
        mix(seed, stream::PARTITION, 0),
    )?;
    let counts = partition::class_counts(&parts, &data.train.labels, data.train.num_classes());
    let malicious = fed.malicious_clients(attack, seed);
    let clients = parts
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let (train, val) = partition::train_val_split(
                p,
                fed.client_val_fraction,
                mix(seed, stream::VALIDATION, id as u64),
            );
            let m = malicious.iter().find(|(m, _)| *m == id);
            Client {
                id,
                train,
                val,
                malicious: m.is_some(),
                poison_rate: m.and_then(|(_, r)| *r),
            }
        })
        .collect();
    Ok((clients, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::backdoor::{Backdoor, Trigger};
    use crate::data::augment::AugmentConfig;
    use crate::data::normalize::Normalizer;
    use crate::data::synthetic::{PhantomConfig, generate};
    use crate::models::params;
    use crate::models::{Arch, FineTune, Net};
    use crate::train::TrainConfig;
    use client::Shared;
    use strategy::{Action, ClientUpdate};

    fn fed_config(workers: usize) -> FederationConfig {
        toml::from_str::<FederationConfig>(&format!(
            "clients = 4\nrounds = 2\nworkers = {workers}\n[malicious]\nclients = [1, 3]\nrates = [0.3, 0.5]\n[partition]\nkind = \"dirichlet\"\nalpha = 1.0\nmin_size = 5"
        ))
        .unwrap()
    }

    fn backdoor() -> Poisoning {
        Poisoning::Backdoor(Backdoor {
            target: "notumor".into(),
            rate: 0.1,
            selection: Default::default(),
            source_classes: vec![],
            exclude_target: false,
            relabel: true,
            trigger: Trigger {
                size: 3,
                margin: 1,
                ..Default::default()
            },
        })
    }

    fn local_training() -> TrainConfig {
        TrainConfig::adam(1, 8)
    }

    fn simulate_with(
        workers: usize,
        data: &Dataset,
        attack: &Poisoning,
        initial: Vec<f32>,
    ) -> Simulation {
        simulate_fed(&fed_config(workers), data, attack, initial)
    }

    fn shared(data: &Dataset, attack: &Poisoning, arch: Arch, size: usize) -> Shared {
        Shared {
            data: std::sync::Arc::new(data.clone()),
            model: arch.into(),
            size,
            fine_tune: FineTune::Full,
            device: tch::Device::Cpu,
            norm: Normalizer::from_set(&data.train),
            train: local_training(),
            augment: AugmentConfig::default(),
            attack: Some(attack.clone()),
            seed: 5,
            threads: 1,
            adversarial: None,
        }
    }

    fn simulate_fed(
        fed: &FederationConfig,
        data: &Dataset,
        attack: &Poisoning,
        initial: Vec<f32>,
    ) -> Simulation {
        let federation = Federation::new(
            fed.clone(),
            shared(data, attack, Arch::DarziCnn, 32),
            initial,
            attack.as_backdoor(),
            true,
        )
        .unwrap();
        simulate(&federation, &mut |_| {}).unwrap()
    }

    #[test]
    fn malformed_updates_are_rejected_not_averaged() {
        let data = generate(&PhantomConfig {
            size: 28,
            train_per_class: 4,
            test_per_class: 1,
            ..Default::default()
        });
        let fed: FederationConfig = toml::from_str("clients = 4\nrounds = 1").unwrap();
        let attack = backdoor();
        let federation = Federation::new(
            fed,
            shared(&data, &attack, Arch::SmallCnn, 28),
            vec![0.0; 2],
            None,
            true,
        )
        .unwrap();
        let global = [0.0f32; 2];
        let up = |client, params: Vec<f32>| ClientUpdate::new(client, params, 1);
        let out = federation
            .aggregate(
                1,
                &global,
                vec![
                    up(0, vec![1.0, 2.0]),
                    up(1, vec![f32::NAN, 0.0]),
                    up(2, vec![3.0]),
                    up(3, vec![3.0, 4.0]),
                ],
                &Default::default(),
            )
            .unwrap();
        assert_eq!(out.params, vec![2.0, 3.0]);
        assert_eq!(out.accepted, vec![0, 3]);
        let rejected: Vec<(usize, Action)> = out
            .flags
            .iter()
            .map(|f| (f.client, f.action.clone()))
            .collect();
        assert_eq!(rejected, vec![(1, Action::Rejected), (2, Action::Rejected)]);
        assert!(out.flags[0].reason.contains("non-finite"));
        // Nothing acceptable: the global model stays as it was.
        let none = federation
            .aggregate(2, &global, vec![up(0, vec![1.0])], &Default::default())
            .unwrap();
        assert_eq!(none.params, global.to_vec());
        assert!(none.accepted.is_empty());
    }

    #[test]
    fn results_do_not_depend_on_worker_count() {
        let data = generate(&PhantomConfig {
            size: 32,
            train_per_class: 20,
            test_per_class: 5,
            ..Default::default()
        });
        let attack = backdoor();
        // One initial model for both runs (libtorch's global generator is shared with tests
        // running beside this one).
        let net = Net::new(Arch::DarziCnn, 4, 1, 32, tch::Device::Cpu).unwrap();
        let initial = params::flatten(&net);
        // The thesis CNN has dropout, so this also covers per-client dropout streams.
        let one = simulate_with(1, &data, &attack, initial.clone());
        let two = simulate_with(2, &data, &attack, initial);
        assert_eq!(one.final_params, two.final_params);
        assert_eq!(one.test_pred, two.test_pred);
        assert_eq!(one.test_loss.to_bits(), two.test_loss.to_bits());
        let losses = |s: &Simulation| s.clients.iter().map(|c| c.train_loss).collect::<Vec<_>>();
        assert_eq!(losses(&one), losses(&two));
    }

    #[test]
    fn an_excluded_client_neither_trains_nor_receives_the_model_again() {
        let data = generate(&PhantomConfig {
            size: 32,
            train_per_class: 20,
            test_per_class: 2,
            ..Default::default()
        });
        // Clients 1 and 3 send pure noise, far outside the honest cluster: MAD (trust starting
        // at 0) excludes them as soon as K-means separates them.
        let fed: FederationConfig = toml::from_str(
            "clients = 5\nrounds = 3\n[strategy]\nrule = \"mad\"\n[malicious]\nclients = [1, 3]\nmodel_poisoning = { kind = \"gaussian_noise\", sigma = 10.0 }\n[partition]\nkind = \"iid\"",
        )
        .unwrap();
        let net = Net::new(Arch::DarziCnn, 4, 1, 32, tch::Device::Cpu).unwrap();
        let sim = simulate_fed(&fed, &data, &backdoor(), params::flatten(&net));
        // Round of exclusion per client (MAD repeats the flag every later round).
        let mut since = std::collections::BTreeMap::new();
        for d in sim.defense.iter().filter(|d| d.action == Action::Excluded) {
            since.entry(d.client).or_insert(d.round);
        }
        // K-means with k = 2 may first pair one noisy client with the honest ones; by round 2
        // both are out.
        assert_eq!(since.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert!(since.values().all(|&r| r <= 2), "{since:?}");
        for r in &sim.clients {
            if let Some(&x) = since.get(&r.client) {
                // It trains in its exclusion round (and is dropped from that average), but is
                // sent no model afterwards: no evaluation then, nothing later.
                assert!(
                    r.round < x || (r.round == x && r.val_accuracy.is_none()),
                    "client {} (excluded in round {x}) active in round {}",
                    r.client,
                    r.round
                );
            }
        }
        let active = |round: usize, trained: bool| -> Vec<usize> {
            sim.clients
                .iter()
                .filter(|r| r.round == round)
                .filter(|r| {
                    if trained {
                        r.train_loss.is_some()
                    } else {
                        r.val_accuracy.is_some()
                    }
                })
                .map(|r| r.client)
                .collect()
        };
        assert_eq!(active(3, true), vec![0, 2, 4]);
        assert_eq!(active(3, false), vec![0, 2, 4]);
        // Benign clients' validation accuracy is the honest-only mean (all honest here).
        let last = sim.rounds.last().unwrap();
        assert_eq!(last.benign_val_accuracy, last.val_accuracy);
        assert_eq!(sim.rounds[2].malicious_fit, 0);
    }

    #[test]
    fn malicious_clients_poison_their_own_share() {
        let data = generate(&PhantomConfig {
            size: 28,
            train_per_class: 50,
            test_per_class: 2,
            ..Default::default()
        });
        let fed = fed_config(1);
        let attack = backdoor();
        let (clients, _) = make_clients(&fed, &data, Some(&attack), 5).unwrap();
        let rates: Vec<Option<f64>> = clients.iter().map(|c| c.poison_rate).collect();
        assert_eq!(rates, vec![None, Some(0.3), None, Some(0.5)]);
        let shared = shared(&data, &attack, Arch::SmallCnn, 28);
        for c in &clients {
            let (set, report) = shared.local_train(c).unwrap();
            assert_eq!(set.len(), c.train.len());
            match c.poison_rate {
                Some(rate) => {
                    let r = report.unwrap();
                    let want = (rate * c.train.len() as f64).round() as usize;
                    assert_eq!(r.fraction(), format!("{want}/{}", c.train.len()));
                    // Poisoned samples carry the target label.
                    assert!(r.indices.iter().all(|&i| set.labels[i] == 2));
                }
                None => assert!(report.is_none()),
            }
        }
        // Validation sets stay clean and disjoint from training.
        for c in &clients {
            assert!(c.val.iter().all(|i| !c.train.contains(i)));
        }
    }
}
