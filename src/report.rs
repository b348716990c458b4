//! Writing results: JSON summaries, CSV tables and the console table.

use crate::error::{Error, Result};
use crate::train::EpochRecord;
use serde::Serialize;
use std::path::Path;

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    write_atomic(path, text.as_bytes())
}

/// Writes via a temporary file and rename, so a killed run never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("in-memory csv");
    for r in rows {
        w.write_record(r).expect("in-memory csv");
    }
    w.into_inner().expect("in-memory csv")
}

type Params = serde_json::Map<String, serde_json::Value>;

/// Grid parameters as CSV columns: every key any row has, in first-seen order.
pub fn param_keys<'a>(rows: impl IntoIterator<Item = &'a Params>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for p in rows {
        for k in p.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// One row's values for `keys`: strings bare, numbers as written, missing ones empty.
pub fn param_values(keys: &[String], params: &Params) -> Vec<String> {
    keys.iter()
        .map(|k| match params.get(k) {
            Some(serde_json::Value::String(v)) => v.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect()
}

/// A CSV header: the grid's parameter keys, then the table's own columns.
pub fn header(keys: &[String], columns: &[&str]) -> Vec<String> {
    keys.iter()
        .cloned()
        .chain(columns.iter().map(|c| c.to_string()))
        .collect()
}

pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    write_atomic(path, &csv_bytes(header, rows))
}

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

/// One CSV row per record, columns from the record's field names (None → empty cell).
pub fn write_rows<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.serialize(r)
            .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
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
    crate::figures::partition_chart(&dir.join("partition.svg"), classes, counts, malicious)
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

/// A plain aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
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
    crate::figures::defense_chart(&dir.join("defense.svg"), &loss, &exclusions, &trust)
}

/// `evasion.csv` (per attack, source and target client: ASR, error transfer rate and attack
/// accuracy) and one
/// ASR heatmap per attack, `evasion_<k>.svg`.
pub fn write_evasion(
    dir: &Path,
    reports: &[crate::evasion::transfer::TransferReport],
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
    let examples: Vec<(&str, &crate::evasion::examples::Example)> = reports
        .iter()
        .filter_map(|r| Some((r.attack.as_str(), r.example.as_ref()?)))
        .collect();
    crate::evasion::examples::write(
        &dir.join("adversarial_examples.png"),
        &dir.join("adversarial_examples.csv"),
        &examples,
    )?;
    for (k, r) in reports.iter().enumerate() {
        crate::figures::heatmap(
            &dir.join(format!("evasion_{k}.svg")),
            &format!("{}: ASR % (changed predictions), source → target", r.attack),
            &r.sources,
            &r.asr,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_table() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y");
    }
}
