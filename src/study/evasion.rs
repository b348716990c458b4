//! Evasion between clients after federated training: the models the clients hold (global,
//! one more local round, or a noisy copy, after Fed-Safe's adaptation when configured) and
//! each client's adversarial examples tried on every client.

use super::*;

/// The models the clients hold after training (global, one more local round, or a noisy
/// copy) and the evasion attack between them.
pub(super) fn evasion_between_clients(
    ev: &crate::federated::transfer::TransferConfig,
    federation: &Federation,
    server_set: Option<&ImageSet>,
    global: &[f32],
    label: &str,
) -> Result<Vec<crate::federated::transfer::TransferReport>> {
    use crate::federated::transfer::Holds;
    let sh = federation.shared();
    let clients = federation.clients();
    let rounds = federation.config().rounds;
    let adapted;
    let global = match &ev.adapt {
        Some(a) => {
            let server = server_set.ok_or_else(|| {
                Error::param("evasion.adapt", "needs `federation.server_images` > 0")
            })?;
            let net = sh.new_net()?;
            crate::models::params::load(&net, global)?;
            let start = Instant::now();
            crate::defenses::adaptation::adapt(
                &net,
                server,
                &sh.norm,
                a,
                &sh.train,
                crate::seed::mix(sh.seed, crate::seed::stream::ADAPTATION, 0),
            )?;
            progress::status(format!(
                "{label}: server adapted the global model for {} epoch(s) on {:.0}% of its {} own images, {}, in {:.1}s",
                a.epochs,
                100.0 * a.fraction,
                server.len(),
                a.method.describe(&a.attack.attack().name()),
                start.elapsed().as_secs_f64()
            ));
            adapted = crate::models::params::flatten(&net);
            adapted.as_slice()
        }
        None => global,
    };
    // Noisy copies: weights and biases only (noise on running variances breaks batch norm).
    let trainable = crate::models::params::trainable_ranges(&sh.new_net()?);
    // One more local round, configured as the rule configures rounds (FedProx's μ).
    let local_round = federation.configure(rounds + 1).config;
    let mut models = Vec::with_capacity(clients.len());
    for c in clients {
        let params = match ev.holds {
            Holds::Global => global.to_vec(),
            Holds::Local => sh.fit(c, global, rounds + 1, &local_round)?.update.params,
            Holds::Noisy => {
                let mut p = global.to_vec();
                crate::vector::add_gaussian_to(
                    &mut p,
                    ev.noise_sigma,
                    crate::seed::mix(sh.seed, crate::seed::stream::HELD_NOISE, c.id as u64),
                    Some(&trainable),
                );
                p
            }
        };
        let net = sh.new_net()?;
        crate::models::params::load(&net, &params)?;
        models.push(net);
    }
    let sets: Vec<_> = clients
        .iter()
        .map(|c| sh.data.train.subset(&c.val))
        .collect();
    let test_accuracy: Vec<f64> = models
        .iter()
        .map(|m| {
            let (_, pred) = train::evaluate(m, &sh.data.test, &sh.norm);
            metrics::accuracy(&pred, &sh.data.test.labels)
        })
        .collect();
    let start = Instant::now();
    let mut reports = crate::federated::transfer::run(
        &models,
        &sets,
        &sh.norm,
        ev,
        sh.seed ^ crate::seed::stream::EVASION,
    );
    for r in &mut reports {
        r.test_accuracy = test_accuracy.clone();
        r.mean_test_accuracy =
            test_accuracy.iter().sum::<f64>() / test_accuracy.len().max(1) as f64;
    }
    progress::status(format!(
        "{label}: the models the clients hold score {} on the test set",
        test_accuracy
            .iter()
            .map(|a| format!("{:.2}%", 100.0 * a))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for r in &reports {
        progress::status(format!(
            "{label}: {} from each client: self ASR {:.2}%, AASR (all clients) {:.2}%, other clients {:.2}%, AETR {}, AA {:.2}%, {:.1} ms per batch",
            r.attack,
            100.0 * r.mean_self_asr,
            100.0 * r.mean_aasr,
            100.0 * r.mean_aasr_others,
            r.mean_aetr
                .map(|e| format!("{:.2}%", 100.0 * e))
                .unwrap_or_else(|| "-".into()),
            100.0 * r.mean_aa,
            r.ms_per_batch
        ));
    }
    progress::status(format!(
        "{label}: evasion between clients in {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    Ok(reports)
}
