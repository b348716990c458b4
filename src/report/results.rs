//! The sweep's results: `results.csv` (one row per cell), the figures and tables over cells,
//! and the table printed at the end of a run.

use super::summary::Summary;
use crate::error::Result;
use std::path::Path;

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

/// One cell's headline: clean accuracy, CAD, ASR.
pub fn one_line(s: &Summary) -> String {
    // A missing value prints as a bare "-", without its unit.
    let cad = s
        .clean_accuracy_drop
        .map_or("-".into(), |c| format!("{c:.2} pts"));
    let asr = s.asr.map_or("-".into(), |a| format!("{}%", pct(Some(a))));
    format!(
        "clean acc {}%, CAD {cad}, ASR {asr}",
        pct(Some(s.clean_accuracy))
    )
}

// No timings here: a resumed sweep must write the same table as an uninterrupted one
// (`elapsed_s` stays in each cell's summary.json).
const RESULT_COLUMNS: [&str; 28] = [
    "cell",
    "model",
    "fine_tune",
    "partition",
    "strategy",
    "malicious",
    "poison_rate",
    "poisoned_per_client",
    "clean_accuracy",
    "baseline_accuracy",
    "clean_accuracy_drop",
    "asr",
    "asr_all",
    "asr_fraction",
    "f1_macro",
    "model_poisoning",
    "excluded_clients",
    "detection_tpr",
    "detection_fpr",
    "first_exclusion_round",
    "gradcam_auroc",
    "clean_check_flagged",
    "defense_tpr",
    "defense_fpr",
    "retrained_asr",
    "strip_auroc",
    "repaired_asr",
    "seed",
];

pub fn write_results(out: &Path, cells: &[Summary], elapsed: f64) -> Result<()> {
    let param_keys = crate::io::param_keys(cells.iter().map(|s| &s.params));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let header = crate::io::header(&param_keys, &RESULT_COLUMNS);
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            let mut r = crate::io::param_values(&param_keys, &s.params);
            let fed = s.federation.as_ref();
            let data_defense = s.defense.as_ref().and_then(|d| d.data.as_ref());
            r.extend([
                s.cell.clone(),
                s.model.clone(),
                s.fine_tune.clone(),
                fed.map(|f| f.partition.clone()).unwrap_or_default(),
                fed.map(|f| f.strategy.clone()).unwrap_or_default(),
                fed.map(|f| f.malicious_clients.len().to_string())
                    .unwrap_or_default(),
                f(fed.and_then(|f| f.poison_rate)),
                fed.map(|f| f.poisoned_per_client.join(" "))
                    .unwrap_or_default(),
                f(Some(s.clean_accuracy)),
                f(s.baseline_accuracy),
                f(s.clean_accuracy_drop),
                f(s.asr),
                f(s.asr_all),
                s.asr_fraction.clone().unwrap_or_default(),
                f(Some(s.f1_macro)),
                fed.and_then(|f| f.model_poisoning.clone())
                    .unwrap_or_default(),
                fed.map(|f| {
                    f.detection
                        .flagged_clients
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
                f(fed.and_then(|f| f.detection.tpr)),
                f(fed.and_then(|f| f.detection.fpr)),
                fed.and_then(|f| f.detection.first_correct_round)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                f(s.gradcam.as_ref().and_then(|g| g.test.auroc)),
                s.clean_check_flagged
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                f(data_defense.and_then(|d| d.tpr)),
                f(data_defense.and_then(|d| d.fpr)),
                f(data_defense.and_then(|d| d.retrained_asr)),
                f(s.defense
                    .as_ref()
                    .and_then(|d| d.input.as_ref())
                    .and_then(|i| i.auroc)),
                f(s.defense
                    .as_ref()
                    .and_then(|d| d.model.as_ref())
                    .and_then(|m| m.asr)),
                s.seed.to_string(),
            ]);
            r
        })
        .collect();
    crate::io::write_csv(&out.join("results.csv"), &header, &rows)?;
    crate::report::figures::sweep_figures(out, cells)?;
    crate::report::evasion_tables::write(out, cells)?;
    crate::report::defense_table::write(out, cells)?;
    crate::report::rounds_figure::write(out, cells)?;
    let settings = crate::report::repetitions::settings(cells);
    if crate::report::repetitions::repeated(&settings) {
        crate::report::repetitions::write_csv(&out.join("mean_std.csv"), &settings)?;
    }
    crate::report::figures::freeze_figure(out, &settings)?;
    crate::io::write_json(
        &out.join("summary.json"),
        &serde_json::json!({ "elapsed_s": elapsed, "cells": cells }),
    )
}

/// The model × strategy table printed at the end of a run (federated runs add partition,
/// malicious clients and their poison rate).
pub fn results_table(cells: &[Summary]) -> String {
    let (header, rows) = results_rows(cells);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    crate::io::table(&header, &rows)
}

/// The headings and rows of [`results_table`] (percentages, two decimals).
pub fn results_rows(cells: &[Summary]) -> (Vec<String>, Vec<Vec<String>>) {
    let federated = cells.iter().any(|s| s.federation.is_some());
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|s| {
            let fed = s.federation.as_ref();
            let mut row = vec![s.model.clone(), s.fine_tune.clone()];
            if federated {
                row.extend([
                    fed.map(|f| f.partition.clone()).unwrap_or_default(),
                    fed.map(|f| f.strategy.clone()).unwrap_or_default(),
                    fed.map(|f| f.malicious_clients.len().to_string())
                        .unwrap_or_default(),
                    fed.and_then(|f| f.poison_rate)
                        .map(|r| format!("{r}"))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            row.extend([
                pct(Some(s.clean_accuracy)),
                pct(s.baseline_accuracy),
                s.clean_accuracy_drop
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "-".into()),
                pct(s.asr),
                s.asr_fraction.clone().unwrap_or_else(|| "-".into()),
                pct(Some(s.f1_macro)),
            ]);
            if federated {
                let d = fed.map(|f| &f.detection);
                row.extend([pct(d.and_then(|d| d.tpr)), pct(d.and_then(|d| d.fpr))]);
            }
            row
        })
        .collect();
    let mut header = vec!["model", "strategy"];
    if federated {
        header.extend(["partition", "rule", "malicious", "rate"]);
    }
    header.extend([
        "clean acc %",
        "baseline %",
        "CAD pts",
        "ASR %",
        "ASR hits",
        "F1 %",
    ]);
    if federated {
        header.extend(["excl. TPR %", "excl. FPR %"]);
    }
    (header.into_iter().map(String::from).collect(), rows)
}
