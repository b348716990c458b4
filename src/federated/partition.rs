//! Partitioners: which training samples each client holds. Clients get index lists into one
//! shared dataset, never copies. Every partitioner is deterministic for a seed.
//!
//! - IID: a seeded shuffle dealt into near-equal parts.
//! - Dirichlet(α) over labels (Hsu et al. 2019): per class, client shares ~ Dir(α); redrawn until
//!   every client holds at least `min_size` samples. Large α approaches IID, small α is skewed.
//! - Shards (McMahan et al. 2017): samples sorted by label cut into `clients × shards_per_client`
//!   contiguous shards; each client draws only from its own shards.
//! - Chunks (Darzi et al. §IV-A): the samples, in label order or as stored, cut into
//!   non-overlapping contiguous chunks of `chunk_size`; the chunks are shuffled and dealt out,
//!   so each client holds only its own chunks and every client as many as the count allows.
//! - k classes per client ("pathological" non-IID): each client sees exactly `k` classes.
//! - Explicit sizes: client `i` gets `sizes[i]` samples of a shuffle.
//!
//! Over 500 lines on purpose: the five partitioners share the dealing and validation code; the last 189 lines are its tests.

use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionConfig {
    #[default]
    Iid,
    Dirichlet {
        alpha: f64,
        #[serde(default = "default_min_size")]
        min_size: usize,
    },
    Shards {
        #[serde(default = "two")]
        shards_per_client: usize,
    },
    Chunks {
        chunk_size: usize,
        #[serde(default)]
        order: ChunkOrder,
    },
    KClasses {
        k: usize,
    },
    Sizes {
        sizes: Vec<usize>,
    },
}

/// The order in which the samples are cut into chunks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ChunkOrder {
    /// Sorted by label (ties in a seeded order): a chunk holds one class, or two at a border.
    #[default]
    Label,
    /// As the data set stores them (a folder data set stores class by class, file name order).
    Stored,
}

fn default_min_size() -> usize {
    10
}
fn two() -> usize {
    2
}

/// Redraws allowed before a Dirichlet partition with `min_size` is declared impossible.
const MAX_DRAWS: usize = 1000;

impl PartitionConfig {
    /// Short label for tables and figures, e.g. `dirichlet(1)`.
    pub fn label(&self) -> String {
        match self {
            PartitionConfig::Iid => "iid".into(),
            PartitionConfig::Dirichlet { alpha, .. } => format!("dirichlet({alpha})"),
            PartitionConfig::Shards { shards_per_client } => format!("shards({shards_per_client})"),
            PartitionConfig::Chunks { chunk_size, .. } => format!("chunks({chunk_size})"),
            PartitionConfig::KClasses { k } => format!("{k}_classes"),
            PartitionConfig::Sizes { .. } => "sizes".into(),
        }
    }

    /// Checks what can be checked without data (`prefix` names the table in errors).
    pub fn validate(&self, clients: usize, classes: Option<usize>, prefix: &str) -> Result<()> {
        let bad = |k: &str, why: String| Err(Error::param(format!("{prefix}.{k}"), why));
        match self {
            PartitionConfig::Dirichlet { alpha, .. } if !(*alpha > 0.0 && alpha.is_finite()) => {
                bad("alpha", format!("must be positive, got {alpha}"))
            }
            PartitionConfig::Shards { shards_per_client } if *shards_per_client == 0 => {
                bad("shards_per_client", "must be at least 1".into())
            }
            PartitionConfig::Chunks { chunk_size, .. } if *chunk_size == 0 => {
                bad("chunk_size", "must be at least 1".into())
            }
            PartitionConfig::KClasses { k } if *k == 0 || classes.is_some_and(|c| *k > c) => bad(
                "k",
                format!(
                    "must be within 1..=classes ({}), got {k}",
                    classes.unwrap_or(0)
                ),
            ),
            PartitionConfig::Sizes { sizes } if sizes.len() != clients => bad(
                "sizes",
                format!(
                    "has {} entries but there are {clients} clients",
                    sizes.len()
                ),
            ),
            _ => Ok(()),
        }
    }

    /// Splits the samples with these `labels` (`classes` distinct) among `clients` clients.
    pub fn split(
        &self,
        labels: &[i64],
        classes: usize,
        clients: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>> {
        if clients == 0 {
            return Err(Error::param("federation.clients", "must be at least 1"));
        }
        self.validate(clients, Some(classes), "federation.partition")?;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = labels.len();
        let mut parts = match self {
            PartitionConfig::Iid => iid(n, clients, &mut rng),
            PartitionConfig::Dirichlet { alpha, min_size } => {
                dirichlet(labels, classes, clients, *alpha, *min_size, &mut rng)?
            }
            PartitionConfig::Shards { shards_per_client } => {
                shards(labels, clients, *shards_per_client, &mut rng)?
            }
            PartitionConfig::Chunks { chunk_size, order } => {
                chunks(labels, clients, *chunk_size, *order, &mut rng)?
            }
            PartitionConfig::KClasses { k } => k_classes(labels, classes, clients, *k, &mut rng)?,
            PartitionConfig::Sizes { sizes } => explicit_sizes(n, sizes, &mut rng)?,
        };
        if let Some(empty) = parts.iter().position(Vec::is_empty) {
            return Err(Error::param(
                "federation.partition",
                format!(
                    "client {empty} received no samples ({} for {clients} clients); use fewer clients or more data",
                    self.label()
                ),
            ));
        }
        for p in &mut parts {
            p.sort_unstable();
        }
        Ok(parts)
    }
}

/// Cuts `0..n` into `parts` near-equal contiguous ranges (the first `n % parts` one longer).
fn equal_cuts(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let (q, r) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = q + usize::from(i < r);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

pub fn iid(n: usize, clients: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    equal_cuts(n, clients)
        .into_iter()
        .map(|r| idx[r].to_vec())
        .collect()
}

fn by_class(labels: &[i64], classes: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut per = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        per[l as usize].push(i);
    }
    for p in &mut per {
        p.shuffle(rng);
    }
    per
}

/// Client shares of one class: Gamma(α, 1) draws normalized, i.e. a Dirichlet(α) sample.
fn dirichlet_shares(clients: usize, alpha: f64, rng: &mut StdRng) -> Vec<f64> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha validated positive");
    loop {
        let g: Vec<f64> = (0..clients).map(|_| gamma.sample(rng)).collect();
        let sum: f64 = g.iter().sum();
        // Tiny α can underflow every draw to zero; draw again.
        if sum > 0.0 && sum.is_finite() {
            return g.into_iter().map(|x| x / sum).collect();
        }
    }
}

pub fn dirichlet(
    labels: &[i64],
    classes: usize,
    clients: usize,
    alpha: f64,
    min_size: usize,
    rng: &mut StdRng,
) -> Result<Vec<Vec<usize>>> {
    if min_size * clients > labels.len() {
        return Err(Error::param(
            "federation.partition.min_size",
            format!(
                "{min_size} × {clients} clients exceeds the {} training samples",
                labels.len()
            ),
        ));
    }
    for _ in 0..MAX_DRAWS {
        let per = by_class(labels, classes, rng);
        let mut parts = vec![Vec::new(); clients];
        for idx in &per {
            let shares = dirichlet_shares(clients, alpha, rng);
            // Cumulative cut points over this class's shuffled samples.
            let mut acc = 0.0;
            let mut start = 0;
            for (c, s) in shares.iter().enumerate() {
                acc += s;
                let end = if c + 1 == clients {
                    idx.len()
                } else {
                    ((acc * idx.len() as f64).round() as usize).min(idx.len())
                };
                parts[c].extend_from_slice(&idx[start..end.max(start)]);
                start = end.max(start);
            }
        }
        if parts.iter().all(|p| p.len() >= min_size) {
            return Ok(parts);
        }
    }
    Err(Error::param(
        "federation.partition.min_size",
        format!(
            "no Dirichlet(α={alpha}) draw in {MAX_DRAWS} gave every one of {clients} clients {min_size} samples; lower min_size or raise alpha"
        ),
    ))
}

pub fn shards(
    labels: &[i64],
    clients: usize,
    per_client: usize,
    rng: &mut StdRng,
) -> Result<Vec<Vec<usize>>> {
    let total = clients * per_client;
    if total > labels.len() {
        return Err(Error::param(
            "federation.partition.shards_per_client",
            format!(
                "{total} shards need at least {total} samples, have {}",
                labels.len()
            ),
        ));
    }
    let idx = by_label(labels, rng);
    Ok(deal(&idx, total, clients, rng))
}

/// Sample indices sorted by label, ties in a seeded order.
fn by_label(labels: &[i64], rng: &mut StdRng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..labels.len()).collect();
    idx.shuffle(rng);
    idx.sort_by_key(|&i| labels[i]);
    idx
}

/// Cuts `idx` into `pieces` near-equal contiguous pieces, shuffles them and deals them out:
/// client c gets the c-th of `clients` near-equal runs of the shuffled pieces.
fn deal(idx: &[usize], pieces: usize, clients: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let cuts = equal_cuts(idx.len(), pieces);
    let mut ids: Vec<usize> = (0..pieces).collect();
    ids.shuffle(rng);
    equal_cuts(pieces, clients)
        .into_iter()
        .map(|own| {
            ids[own]
                .iter()
                .flat_map(|&piece| idx[cuts[piece].clone()].iter().copied())
                .collect()
        })
        .collect()
}

pub fn chunks(
    labels: &[i64],
    clients: usize,
    chunk_size: usize,
    order: ChunkOrder,
    rng: &mut StdRng,
) -> Result<Vec<Vec<usize>>> {
    let n = labels.len();
    // Whole chunks only: the remainder spreads over the first chunks (one sample each), so the
    // sizes differ by at most one and no sample is left out.
    let count = n / chunk_size;
    if count < clients {
        return Err(Error::param(
            "federation.partition.chunk_size",
            format!(
                "{n} training samples make {count} chunks of {chunk_size}, fewer than the {clients} clients; lower chunk_size"
            ),
        ));
    }
    let idx = match order {
        ChunkOrder::Label => by_label(labels, rng),
        ChunkOrder::Stored => (0..n).collect(),
    };
    Ok(deal(&idx, count, clients, rng))
}

pub fn k_classes(
    labels: &[i64],
    classes: usize,
    clients: usize,
    k: usize,
    rng: &mut StdRng,
) -> Result<Vec<Vec<usize>>> {
    // Client c holds classes c, c+1, …, c+k-1 (mod classes), after a seeded class relabeling,
    // so every class is covered as evenly as the counts allow.
    let mut order: Vec<usize> = (0..classes).collect();
    order.shuffle(rng);
    let mut holders: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for c in 0..clients {
        for j in 0..k {
            holders[order[(c + j) % classes]].push(c);
        }
    }
    let per = by_class(labels, classes, rng);
    let mut parts = vec![Vec::new(); clients];
    for (class, idx) in per.iter().enumerate() {
        let owners = &holders[class];
        if owners.is_empty() {
            continue;
        }
        for (cut, &owner) in equal_cuts(idx.len(), owners.len()).into_iter().zip(owners) {
            parts[owner].extend_from_slice(&idx[cut]);
        }
    }
    Ok(parts)
}

pub fn explicit_sizes(n: usize, sizes: &[usize], rng: &mut StdRng) -> Result<Vec<Vec<usize>>> {
    let total: usize = sizes.iter().sum();
    if total > n {
        return Err(Error::param(
            "federation.partition.sizes",
            format!("add up to {total} but there are only {n} training samples"),
        ));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&s| {
            let part = idx[start..start + s].to_vec();
            start += s;
            part
        })
        .collect())
}

/// Counts per class (columns) for each client (rows).
pub fn class_counts(parts: &[Vec<usize>], labels: &[i64], classes: usize) -> Vec<Vec<usize>> {
    parts
        .iter()
        .map(|p| {
            let mut c = vec![0; classes];
            for &i in p {
                c[labels[i] as usize] += 1;
            }
            c
        })
        .collect()
}

/// Splits one client's samples into (train, validation), `val_fraction` of them (rounded down,
/// at least one when the client has two or more samples and the fraction is positive) held out.
pub fn train_val_split(part: &[usize], val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx = part.to_vec();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut n_val = (idx.len() as f64 * val_fraction).floor() as usize;
    if n_val == 0 && val_fraction > 0.0 && idx.len() >= 2 {
        n_val = 1;
    }
    let val = idx.split_off(idx.len() - n_val);
    let (mut t, mut v) = (idx, val);
    t.sort_unstable();
    v.sort_unstable();
    (t, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(per_class: usize, classes: usize) -> Vec<i64> {
        (0..per_class * classes)
            .map(|i| (i % classes) as i64)
            .collect()
    }

    fn is_partition(parts: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "every sample exactly once");
    }

    #[test]
    fn iid_is_balanced_and_complete() {
        let l = labels(25, 4);
        let p = PartitionConfig::Iid.split(&l, 4, 3, 7).unwrap();
        is_partition(&p, 100);
        let sizes: Vec<usize> = p.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![34, 33, 33]);
    }

    #[test]
    fn dirichlet_sizes_sum_and_minimum_holds() {
        let l = labels(250, 4);
        for seed in 0..5 {
            let cfg = PartitionConfig::Dirichlet {
                alpha: 0.3,
                min_size: 40,
            };
            let p = cfg.split(&l, 4, 8, seed).unwrap();
            is_partition(&p, 1000);
            assert!(
                p.iter().all(|c| c.len() >= 40),
                "{:?}",
                p.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
        // Same seed, same partition.
        let cfg = PartitionConfig::Dirichlet {
            alpha: 1.0,
            min_size: 10,
        };
        assert_eq!(
            cfg.split(&l, 4, 5, 3).unwrap(),
            cfg.split(&l, 4, 5, 3).unwrap()
        );
    }

    /// Mean absolute deviation of the clients' class shares from the global (uniform) shares.
    fn skew(parts: &[Vec<usize>], l: &[i64], classes: usize) -> f64 {
        let counts = class_counts(parts, l, classes);
        let mut dev = 0.0;
        for c in &counts {
            let n: usize = c.iter().sum();
            for &k in c {
                dev += (k as f64 / n as f64 - 1.0 / classes as f64).abs();
            }
        }
        dev / (counts.len() * classes) as f64
    }

    #[test]
    fn dirichlet_large_alpha_approaches_iid() {
        let l = labels(500, 4);
        let split = |alpha| {
            PartitionConfig::Dirichlet { alpha, min_size: 1 }
                .split(&l, 4, 10, 11)
                .unwrap()
        };
        let (small, mid, large) = (split(0.1), split(1.0), split(1e5));
        let (s, m, g) = (skew(&small, &l, 4), skew(&mid, &l, 4), skew(&large, &l, 4));
        assert!(s > m && m > g, "skew α=0.1 {s}, α=1 {m}, α=1e5 {g}");
        assert!(g < 0.02, "α=1e5 should be near IID, skew {g}");
        // Sizes also even out: each client near 200.
        assert!(large.iter().all(|p| (p.len() as i64 - 200).abs() <= 8));
    }

    #[test]
    fn dirichlet_impossible_minimum_is_an_error() {
        let l = labels(10, 2);
        let e = PartitionConfig::Dirichlet {
            alpha: 1.0,
            min_size: 11,
        }
        .split(&l, 2, 2, 0)
        .unwrap_err();
        assert!(e.to_string().contains("min_size"), "{e}");
    }

    #[test]
    fn shards_stay_within_their_chunks() {
        let l = labels(50, 4);
        let p = PartitionConfig::Shards {
            shards_per_client: 2,
        }
        .split(&l, 4, 4, 1)
        .unwrap();
        is_partition(&p, 200);
        let counts = class_counts(&p, &l, 4);
        for c in counts {
            // Two label-sorted shards of 25 touch at most two classes each.
            assert!(c.iter().filter(|&&k| k > 0).count() <= 4);
            assert_eq!(c.iter().sum::<usize>(), 50);
        }
    }

    #[test]
    fn chunks_are_disjoint_covering_contiguous_and_dealt_evenly() {
        // 3 classes × 20 samples, chunks of 6: 10 chunks for 3 clients (4, 3, 3 chunks).
        let l = labels(20, 3);
        let cfg = PartitionConfig::Chunks {
            chunk_size: 6,
            order: ChunkOrder::Stored,
        };
        let parts = cfg.split(&l, 3, 3, 7).unwrap();
        is_partition(&parts, l.len());
        let mut sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![18, 18, 24]);
        // In stored order every chunk is a run of consecutive indices starting at a multiple
        // of 6: each client's sorted indices split into such runs.
        for p in &parts {
            for run in p.chunks(6) {
                assert_eq!(run[0] % 6, 0, "{p:?}");
                assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "{p:?}");
            }
        }
        // Label order: also a partition, and the same seed gives the same split.
        let by_label = PartitionConfig::Chunks {
            chunk_size: 6,
            order: ChunkOrder::Label,
        };
        let a = by_label.split(&l, 3, 3, 7).unwrap();
        is_partition(&a, l.len());
        assert_eq!(a, by_label.split(&l, 3, 3, 7).unwrap());
        // Too few chunks for the clients is a clear error naming the key.
        let e = PartitionConfig::Chunks {
            chunk_size: 25,
            order: ChunkOrder::Label,
        }
        .split(&l, 3, 3, 7)
        .unwrap_err();
        assert!(e.to_string().contains("chunk_size"), "{e}");
    }

    #[test]
    fn k_classes_gives_each_client_k_classes() {
        let l = labels(60, 5);
        let p = PartitionConfig::KClasses { k: 2 }
            .split(&l, 5, 5, 2)
            .unwrap();
        is_partition(&p, 300);
        for c in class_counts(&p, &l, 5) {
            assert_eq!(c.iter().filter(|&&k| k > 0).count(), 2, "{c:?}");
        }
    }

    #[test]
    fn explicit_sizes_are_respected() {
        let l = labels(10, 3);
        let p = PartitionConfig::Sizes {
            sizes: vec![5, 10, 15],
        }
        .split(&l, 3, 3, 0)
        .unwrap();
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 10, 15]);
        let e = PartitionConfig::Sizes {
            sizes: vec![20, 20],
        }
        .split(&l, 3, 2, 0)
        .unwrap_err();
        assert!(e.to_string().contains("sizes"), "{e}");
    }

    #[test]
    fn client_split_holds_out_a_fifth() {
        let part: Vec<usize> = (100..150).collect();
        let (t, v) = train_val_split(&part, 0.2, 3);
        assert_eq!((t.len(), v.len()), (40, 10));
        let mut all = [t, v].concat();
        all.sort_unstable();
        assert_eq!(all, part);
    }
}
