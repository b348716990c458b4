//! Reports: what a run writes besides its summary — histories, partitions, confusion matrices,
//! defense decisions, evasion matrices — and, in the submodules, the summary schema, figures,
//! repetition statistics, paper-vs-measured tables and sweep-level evasion tables.

pub mod defense_table;
pub mod evasion_figures;
pub mod evasion_tables;
pub mod figures;
pub mod history_figure;
pub mod html;
pub mod manifest;
pub mod page;
pub mod paper_vs_measured;
pub mod png;
pub mod repetitions;
pub mod results;
pub mod rounds_figure;
pub mod summary;

use crate::error::Result;
use crate::io::{write_csv, write_rows};
use crate::train::EpochRecord;
use serde::Serialize;
use std::path::Path;

pub fn write_history(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let header: Vec<String> = [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            vec![
                h.epoch.to_string(),
                format!("{:.6}", h.train_loss),
                format!("{:.6}", h.train_accuracy),
                opt(h.val_loss),
                opt(h.val_accuracy),
                format!("{:.3}", h.seconds),
            ]
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// The partition report: `partition.csv` (samples per class per client) and `partition.svg`.
pub fn write_partition(
    dir: &Path,
    classes: &[String],
    counts: &[Vec<usize>],
    malicious: &[usize],
) -> Result<()> {
    let mut header = vec!["client".to_string(), "malicious".to_string()];
    header.extend(classes.iter().cloned());
    header.push("total".into());
    let rows: Vec<Vec<String>> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = vec![i.to_string(), malicious.contains(&i).to_string()];
            r.extend(c.iter().map(|k| k.to_string()));
            r.push(c.iter().sum::<usize>().to_string());
            r
        })
        .collect();
    write_csv(&dir.join("partition.csv"), &header, &rows)?;
    crate::report::figures::partition_chart(&dir.join("partition.svg"), classes, counts, malicious)
}

/// Confusion matrix with class names: rows are true classes, columns predictions.
pub fn write_confusion(path: &Path, classes: &[String], m: &[Vec<u64>]) -> Result<()> {
    let mut header = vec!["true\\predicted".to_string()];
    header.extend(classes.iter().cloned());
    let rows: Vec<Vec<String>> = m
        .iter()
        .zip(classes)
        .map(|(row, c)| {
            std::iter::once(c.clone())
                .chain(row.iter().map(|v| v.to_string()))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// `defense.csv` (every exclusion, rejection and down-weighting with its reason), `scores.csv`
/// (per-client defense scores) and `defense.svg` (mean client loss with exclusions marked, and
/// trust per client), for runs whose defense made any decision.
pub fn write_defense(
    dir: &Path,
    rounds: &[crate::federated::RoundRecord],
    defense: &[crate::federated::detection::DefenseRecord],
    scores: &[crate::federated::detection::ScoreRecord],
) -> Result<()> {
    if defense.is_empty() && scores.is_empty() {
        return Ok(());
    }
    write_rows(&dir.join("defense.csv"), defense)?;
    if !scores.is_empty() {
        write_rows(&dir.join("scores.csv"), scores)?;
    }
    let loss: Vec<(usize, f64)> = rounds.iter().map(|r| (r.round, r.train_loss)).collect();
    // First round each client was excluded (or rejected).
    let mut first = std::collections::BTreeMap::new();
    for d in defense
        .iter()
        .filter(|d| d.action != crate::federated::strategy::Action::Downweighted)
    {
        first.entry(d.client).or_insert(d.round);
    }
    // Persistent exclusions (trust-based) are marked; per-round rules would mark every round.
    let persistent = scores.iter().any(|s| s.name == "trust");
    let exclusions: Vec<(usize, usize)> = if persistent {
        first.iter().map(|(&c, &r)| (r, c)).collect()
    } else {
        Vec::new()
    };
    let mut trust = std::collections::BTreeMap::new();
    for s in scores.iter().filter(|s| s.name == "trust") {
        trust
            .entry((s.client, s.malicious))
            .or_insert_with(Vec::new)
            .push((s.round, s.value));
    }
    crate::report::figures::defense_chart(&dir.join("defense.svg"), &loss, &exclusions, &trust)
}

/// `evasion.csv` (per attack, source and target client: ASR, error transfer rate and attack
/// accuracy) and one
/// ASR heatmap per attack, `evasion_<k>.svg`.
pub fn write_evasion(
    dir: &Path,
    reports: &[crate::federated::transfer::TransferReport],
) -> Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        attack: &'a str,
        source: usize,
        target: usize,
        asr: f64,
        error_transfer_rate: Option<f64>,
        attack_accuracy: f64,
        target_clean_accuracy: f64,
    }
    let mut rows = Vec::new();
    for r in reports {
        for (i, &s) in r.sources.iter().enumerate() {
            for (t, &a) in r.asr[i].iter().enumerate() {
                rows.push(Row {
                    attack: &r.attack,
                    source: s,
                    target: t,
                    asr: a,
                    error_transfer_rate: r.etr[i][t],
                    attack_accuracy: r.aa[i][t],
                    target_clean_accuracy: r.clean_accuracy[t],
                });
            }
        }
    }
    write_rows(&dir.join("evasion.csv"), &rows)?;
    let examples: Vec<(&str, &crate::attacks::evasion::examples::Example)> = reports
        .iter()
        .filter_map(|r| Some((r.attack.as_str(), r.example.as_ref()?)))
        .collect();
    crate::attacks::evasion::examples::write(
        &dir.join("adversarial_examples.png"),
        &dir.join("adversarial_examples.csv"),
        &examples,
    )?;
    for (k, r) in reports.iter().enumerate() {
        crate::report::figures::heatmap(
            &dir.join(format!("evasion_{k}.svg")),
            &format!("{}: ASR % (changed predictions), source → target", r.attack),
            &r.sources,
            &r.asr,
        )?;
    }
    Ok(())
}
