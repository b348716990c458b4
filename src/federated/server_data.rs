//! The server's own data (`federation.server_images`): training images set aside before the
//! partition, so that no client holds them, for server-side steps that need data — Fed-Safe's
//! adversarial adaptation (Darzi et al., Algorithm 1 line 11: "a separate server dataset").
//!
//! Images are reserved by pixel content, not by index: every group of pixel-identical training
//! images (the real MRI folders hold such twins) goes wholly to the server or wholly to the
//! clients. So no image the server trains on, nor a twin of one, can be a client's training or
//! held-out image — and the clients' held-out images are what they attack each other with.

use crate::data::duplicates::{Hash, hash_pixels};
use crate::data::{Dataset, ImageSet};
use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::collections::HashMap;

/// Splits `0..train.len()` into (server, clients) index lists, with `n` server images: whole
/// pixel-twin groups, drawn in a seeded random order (a group that would overshoot `n` is
/// skipped). Both lists are sorted.
pub fn reserve(train: &ImageSet, n: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if n >= train.len() {
        return Err(Error::param(
            "federation.server_images",
            format!(
                "({n}) must be smaller than the {} training images",
                train.len()
            ),
        ));
    }
    let mut groups: HashMap<Hash, Vec<usize>> = HashMap::new();
    let mut order: Vec<Hash> = Vec::new();
    for i in 0..train.len() {
        let h = hash_pixels(train.image(i));
        let g = groups.entry(h).or_default();
        if g.is_empty() {
            order.push(h);
        }
        g.push(i);
    }
    // First-seen order, then a seeded shuffle: independent of the hash map's iteration order.
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut server = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(train.len() - n);
    for h in &order {
        let g = &groups[h];
        if server.len() + g.len() <= n {
            server.extend_from_slice(g);
        } else {
            clients.extend_from_slice(g);
        }
    }
    server.sort_unstable();
    clients.sort_unstable();
    Ok((server, clients))
}

/// The dataset the clients partition (training images without the server's) and the server's
/// own images.
pub fn split(data: &Dataset, n: usize, seed: u64) -> Result<(Dataset, ImageSet)> {
    let (server, clients) = reserve(&data.train, n, seed)?;
    let mut notes = data.notes.clone();
    notes.push(format!(
        "the server holds {} training images of its own (no client holds them or a pixel twin)",
        server.len()
    ));
    Ok((
        Dataset {
            name: data.name.clone(),
            train: data.train.subset(&clients),
            test: data.test.clone(),
            notes,
        },
        data.train.subset(&server),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{PhantomConfig, generate};
    use crate::federated::{FederationConfig, make_clients};
    use std::collections::HashSet;

    #[test]
    fn the_server_set_shares_no_image_or_twin_with_any_client() {
        let mut data = generate(&PhantomConfig {
            size: 16,
            train_per_class: 30,
            test_per_class: 2,
            ..Default::default()
        });
        // Plant pixel twins: images 0–9 repeated at the end of the training set.
        for i in 0..10 {
            let px = data.train.image(i).to_vec();
            let label = data.train.labels[i];
            data.train.push(&px, label, format!("twin-of-{i}"));
        }
        let (clients_ds, server) = split(&data, 40, 3).unwrap();
        assert!(server.len() <= 40 && server.len() >= 38, "{}", server.len());
        assert_eq!(server.len() + clients_ds.train.len(), data.train.len());
        let fed: FederationConfig =
            toml::from_str("clients = 5\nrounds = 1\n[partition]\nkind = \"iid\"").unwrap();
        let (clients, _) = make_clients(&fed, &clients_ds, None, 7).unwrap();
        let server_pixels: HashSet<Hash> = (0..server.len())
            .map(|i| hash_pixels(server.image(i)))
            .collect();
        let mut attack_sources = 0;
        for c in &clients {
            // Training images and held-out images (the attack sources) alike.
            for &i in c.train.iter().chain(&c.val) {
                assert!(
                    !server_pixels.contains(&hash_pixels(clients_ds.train.image(i))),
                    "client {} holds a server image (or its twin)",
                    c.id
                );
            }
            attack_sources += c.val.len();
        }
        assert!(attack_sources > 0);
        // Every planted twin pair sits on one side.
        for i in 0..10 {
            let h = hash_pixels(data.train.image(i));
            let on_server = server_pixels.contains(&h);
            let count = (0..server.len())
                .filter(|&k| hash_pixels(server.image(k)) == h)
                .count();
            assert!(!on_server || count == 2, "twin of {i} split");
        }
        // Deterministic for a seed; another seed draws another set.
        assert_eq!(
            reserve(&data.train, 40, 3).unwrap(),
            reserve(&data.train, 40, 3).unwrap()
        );
        assert_ne!(
            reserve(&data.train, 40, 3).unwrap(),
            reserve(&data.train, 40, 4).unwrap()
        );
        assert!(reserve(&data.train, data.train.len(), 3).is_err());
    }
}
