//! The sweep's defense table (BackdoorBench's columns): per setting, over its repetition seeds,
//! the attacked model's clean accuracy and ASR, the data detector's TPR/FPR/AUROC with the
//! retrained model's clean accuracy and ASR, STRIP's AUROC/FRR/FAR, and the repaired model's
//! clean accuracy and ASR — `<out>/defenses_mean_std.csv`, written when any cell ran `[defense]`.

use crate::error::Result;
use crate::report::repetitions::{MeanStd, by_setting};
use crate::report::summary::Summary;
use std::path::Path;

type Metric = (&'static str, fn(&Summary) -> Option<f64>);

const METRICS: [Metric; 13] = [
    ("clean_accuracy", |s| Some(s.clean_accuracy)),
    ("asr", |s| s.asr),
    ("detection_tpr", |s| data(s).and_then(|d| d.tpr)),
    ("detection_fpr", |s| data(s).and_then(|d| d.fpr)),
    ("detection_auroc", |s| data(s).and_then(|d| d.auroc)),
    ("retrained_clean_accuracy", |s| {
        data(s).map(|d| d.retrained_clean_accuracy)
    }),
    ("retrained_asr", |s| data(s).and_then(|d| d.retrained_asr)),
    ("strip_auroc", |s| input(s).and_then(|i| i.auroc)),
    ("strip_frr", |s| input(s).map(|i| i.frr)),
    ("strip_far", |s| input(s).map(|i| i.far)),
    ("repaired_pruned", |s| model(s).map(|m| m.pruned)),
    ("repaired_clean_accuracy", |s| {
        model(s).map(|m| m.clean_accuracy)
    }),
    ("repaired_asr", |s| model(s).and_then(|m| m.asr)),
];

fn data(s: &Summary) -> Option<&crate::defenses::DataDefenseReport> {
    s.defense.as_ref()?.data.as_ref()
}
fn input(s: &Summary) -> Option<&crate::defenses::strip::StripReport> {
    s.defense.as_ref()?.input.as_ref()
}
fn model(s: &Summary) -> Option<&crate::defenses::ModelDefenseReport> {
    s.defense.as_ref()?.model.as_ref()
}

/// Writes the table when any cell ran a defense; returns whether it did.
pub fn write(out: &Path, cells: &[Summary]) -> Result<bool> {
    let with: Vec<Summary> = cells
        .iter()
        .filter(|s| s.defense.is_some())
        .cloned()
        .collect();
    if with.is_empty() {
        return Ok(false);
    }
    let groups = by_setting(&with, |s| &s.params, |_| ());
    let keys = crate::io::param_keys(groups.iter().map(|(p, _)| p));
    let mut columns = vec!["attack", "data_defense", "seeds"];
    let names: Vec<String> = METRICS
        .iter()
        .flat_map(|(m, _)| [format!("{m}_mean"), format!("{m}_std")])
        .collect();
    columns.extend(names.iter().map(String::as_str));
    let header = crate::io::header(&keys, &columns);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(params, members)| {
            let mut r = crate::io::param_values(&keys, params);
            let first = members[0];
            r.push(first.attack.clone().unwrap_or_default());
            r.push(data(first).map(|d| d.method.clone()).unwrap_or_default());
            r.push(members.len().to_string());
            for (_, f) in METRICS {
                let v: Vec<f64> = members.iter().filter_map(|s| f(s)).collect();
                match MeanStd::of(&v) {
                    Some(m) => r.extend([format!("{:.6}", m.mean), format!("{:.6}", m.std)]),
                    None => r.extend([String::new(), String::new()]),
                }
            }
            r
        })
        .collect();
    crate::io::write_csv(&out.join("defenses_mean_std.csv"), &header, &rows)?;
    Ok(true)
}
