//! One client's local training: load the global model, poison the local data when the client is
//! malicious, train, send the weights back. The model exists only for the duration of the call.

use super::strategy::{ClientUpdate, RoundConfig};
use crate::attacks::evasion::EvasionConfig;
use crate::attacks::{PoisonReport, Poisoning};
use crate::data::augment::AugmentConfig;
use crate::data::normalize::Normalizer;
use crate::data::{Dataset, ImageSet};
use crate::error::Result;
use crate::models::params;
use crate::models::{FineTune, Net, Recipe};
use crate::seed::{mix, stream};
use crate::train::TrainConfig;
use crate::train::{self, Proximal};
use std::sync::Arc;
use tch::Device;

/// A client: index lists into the shared training set; when malicious, the rate at which it
/// poisons its data (if it does).
#[derive(Debug, Clone)]
pub struct Client {
    pub id: usize,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub malicious: bool,
    pub poison_rate: Option<f64>,
}

/// Everything clients share: data, model recipe, local training settings.
#[derive(Clone)]
pub struct Shared {
    pub data: Arc<Dataset>,
    pub model: Recipe,
    pub size: usize,
    pub fine_tune: FineTune,
    pub device: Device,
    pub norm: Normalizer,
    pub train: TrainConfig,
    pub augment: AugmentConfig,
    pub attack: Option<Poisoning>,
    pub seed: u64,
    /// libtorch threads inside one client's training (fixed, so results do not depend on how
    /// many clients train at once).
    pub threads: usize,
    /// Adversarial training: the attack whose examples are added to local training.
    pub adversarial: Option<EvasionConfig>,
}

#[derive(Debug, Clone)]
pub struct FitResult {
    pub update: ClientUpdate,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub seconds: f64,
}

impl Shared {
    pub fn new_net(&self) -> Result<Net> {
        self.model.build(
            self.data.train.num_classes(),
            self.data.train.channels,
            self.size,
            self.device,
        )
    }

    /// The client's training set, poisoned when it is malicious. The poisoned samples are the
    /// same every round: a malicious hospital's data does not change between rounds.
    pub fn local_train(&self, c: &Client) -> Result<(ImageSet, Option<PoisonReport>)> {
        let mut set = self.data.train.subset(&c.train);
        let report = match (&self.attack, c.poison_rate) {
            (Some(a), Some(rate)) => Some(
                a.with_rate(rate)
                    .poison(&mut set, mix(self.seed, stream::POISON, c.id as u64))?,
            ),
            _ => None,
        };
        Ok((set, report))
    }

    /// Trains client `c` from the global model for one round, as the round's configuration
    /// asks (FedProx's μ). Every random draw is seeded by (seed, round, client).
    pub fn fit(
        &self,
        c: &Client,
        global: &[f32],
        round: usize,
        config: &RoundConfig,
    ) -> Result<FitResult> {
        let start = std::time::Instant::now();
        tch::set_num_threads(self.threads as i32);
        let net = self.new_net()?;
        params::load(&net, global)?;
        net.apply_fine_tune(self.fine_tune)?;
        let (mut set, _) = self.local_train(c)?;
        if let Some(a) = &self.adversarial {
            // Crafted on the received model, before this round's updates.
            let seed = mix(
                self.seed,
                round as u64,
                stream::ADVERSARIAL_TRAINING ^ c.id as u64,
            );
            let adv = crate::defenses::adaptation::adversarial_set(&net, &set, &self.norm, a, seed);
            for i in 0..adv.len() {
                set.push(adv.image(i), adv.labels[i], String::new());
            }
        }
        let mu = config.proximal_mu;
        let prox = (mu > 0.0).then(|| Proximal::anchored_at(&net, mu));
        let hist = train::fit(
            &net,
            &set,
            None,
            &self.norm,
            &self.train,
            &self.augment,
            mix(self.seed, round as u64, c.id as u64),
            &train::Objective {
                proximal: prox.as_ref(),
                ..Default::default()
            },
            &mut |_, _| {},
        )?;
        let last = hist.last().expect("at least one local epoch");
        Ok(FitResult {
            update: ClientUpdate {
                client: c.id,
                params: params::flatten(&net),
                num_examples: set.len(),
            },
            train_loss: last.train_loss,
            train_accuracy: last.train_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
