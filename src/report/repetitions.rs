//! Mean ± standard deviation over repetition seeds. Grid cells that differ only in their `seed`
//! value are repetitions of one setting; the thesis' model-comparison tables (accuracy, F1 and
//! training time per model × freezing) report each setting this way.

use crate::error::Result;
use crate::report::summary::Summary;
use serde::Serialize;
use std::path::Path;

/// The grid key whose values are repetitions rather than settings.
pub const SEED_KEY: &str = "seed";

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
}

impl MeanStd {
    pub fn of(xs: &[f64]) -> Option<MeanStd> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let std = if xs.len() > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(MeanStd { mean, std })
    }

    /// `mean ± std` with the values scaled (100 for percentages).
    pub fn show(&self, scale: f64, decimals: usize) -> String {
        format!(
            "{:.d$} ± {:.d$}",
            self.mean * scale,
            self.std * scale,
            d = decimals
        )
    }
}

/// One setting: its grid values without the seed, and its metrics over the seeds it ran with.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub params: serde_json::Map<String, serde_json::Value>,
    pub model: String,
    pub fine_tune: String,
    /// The backbone share asked to be frozen, in percent (full 0, classifier-only 100).
    pub freeze_percent: f64,
    /// The share actually frozen (whole layers freeze, so it only approximates the request).
    pub frozen_fraction: f64,
    pub seeds: Vec<u64>,
    pub clean_accuracy: MeanStd,
    pub f1_macro: MeanStd,
    pub asr: Option<MeanStd>,
    pub clean_accuracy_drop: Option<MeanStd>,
    pub train_s: MeanStd,
}

/// Groups items whose grid values other than `seed` and whose `extra` (e.g. the attack) are
/// equal, in the order they first appear; each group with its grid values without `seed`.
pub fn by_setting<T, E: PartialEq>(
    items: &[T],
    params: impl Fn(&T) -> &serde_json::Map<String, serde_json::Value>,
    extra: impl Fn(&T) -> E,
) -> Vec<(serde_json::Map<String, serde_json::Value>, Vec<&T>)> {
    let mut groups: Vec<(serde_json::Map<String, serde_json::Value>, E, Vec<&T>)> = Vec::new();
    for item in items {
        let mut key = params(item).clone();
        key.remove(SEED_KEY);
        let e = extra(item);
        match groups.iter_mut().find(|(k, x, _)| *k == key && *x == e) {
            Some(g) => g.2.push(item),
            None => groups.push((key, e, vec![item])),
        }
    }
    groups.into_iter().map(|(k, _, m)| (k, m)).collect()
}

/// Groups cells by their grid values other than `seed`, in the order they first appear.
pub fn settings(cells: &[Summary]) -> Vec<Setting> {
    by_setting(cells, |s| &s.params, |_| ())
        .into_iter()
        .map(|(params, members)| {
            let all =
                |f: &dyn Fn(&Summary) -> f64| members.iter().map(|s| f(s)).collect::<Vec<_>>();
            let some = |f: &dyn Fn(&Summary) -> Option<f64>| {
                let v: Vec<f64> = members.iter().filter_map(|s| f(s)).collect();
                MeanStd::of(&v)
            };
            let first = members[0];
            Setting {
                params,
                model: first.model.clone(),
                fine_tune: first.fine_tune.clone(),
                freeze_percent: first
                    .config
                    .model
                    .fine_tune()
                    .map(|f| f.percent())
                    .unwrap_or(f64::NAN),
                frozen_fraction: first.frozen_fraction,
                seeds: members.iter().map(|s| s.seed).collect(),
                clean_accuracy: MeanStd::of(&all(&|s| s.clean_accuracy)).expect("non-empty"),
                f1_macro: MeanStd::of(&all(&|s| s.f1_macro)).expect("non-empty"),
                asr: some(&|s| s.asr),
                clean_accuracy_drop: some(&|s| s.clean_accuracy_drop),
                train_s: MeanStd::of(&all(&|s| s.train_s)).expect("non-empty"),
            }
        })
        .collect()
}

/// Whether any setting ran with more than one seed (only then is there something to average).
pub fn repeated(settings: &[Setting]) -> bool {
    settings.iter().any(|s| s.seeds.len() > 1)
}

/// `<out>/mean_std.csv`: one row per setting. Training time varies between runs, so unlike
/// results.csv this file is not reproducible to the digit.
pub fn write_csv(path: &Path, settings: &[Setting]) -> Result<()> {
    let keys = crate::io::param_keys(settings.iter().map(|s| &s.params));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let header = crate::io::header(
        &keys,
        &[
            "model",
            "fine_tune",
            "freeze_percent",
            "frozen_fraction",
            "seeds",
            "clean_accuracy_mean",
            "clean_accuracy_std",
            "f1_macro_mean",
            "f1_macro_std",
            "asr_mean",
            "asr_std",
            "clean_accuracy_drop_mean",
            "clean_accuracy_drop_std",
            "train_s_mean",
            "train_s_std",
        ],
    );
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|s| {
            let mut r = crate::io::param_values(&keys, &s.params);
            r.extend([
                s.model.clone(),
                s.fine_tune.clone(),
                format!("{}", s.freeze_percent),
                format!("{:.6}", s.frozen_fraction),
                s.seeds
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                f(Some(s.clean_accuracy.mean)),
                f(Some(s.clean_accuracy.std)),
                f(Some(s.f1_macro.mean)),
                f(Some(s.f1_macro.std)),
                f(s.asr.map(|m| m.mean)),
                f(s.asr.map(|m| m.std)),
                f(s.clean_accuracy_drop.map(|m| m.mean)),
                f(s.clean_accuracy_drop.map(|m| m.std)),
                f(Some(s.train_s.mean)),
                f(Some(s.train_s.std)),
            ]);
            r
        })
        .collect();
    crate::io::write_csv(path, &header, &rows)
}

/// The printed table: model × freezing → accuracy, F1 and training time, mean ± std.
pub fn table(settings: &[Setting]) -> String {
    let (header, rows) = rows(settings);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    crate::io::table(&header, &rows)
}

/// The headings and rows of [`table`].
pub fn rows(settings: &[Setting]) -> (Vec<String>, Vec<Vec<String>>) {
    let with_asr = settings.iter().any(|s| s.asr.is_some());
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|s| {
            let setting: Vec<String> = s
                .params
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(t) => format!("{k}={t}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            let mut r = vec![
                setting.join(","),
                s.model.clone(),
                format!("{}", s.freeze_percent),
                format!("{:.1}", 100.0 * s.frozen_fraction),
                s.seeds.len().to_string(),
                s.clean_accuracy.show(100.0, 2),
                s.f1_macro.show(100.0, 2),
            ];
            if with_asr {
                r.push(
                    s.asr
                        .map(|m| m.show(100.0, 2))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            r.push(s.train_s.show(1.0, 1));
            r
        })
        .collect();
    let mut header = vec![
        "setting",
        "model",
        "freeze %",
        "frozen %",
        "seeds",
        "accuracy %",
        "F1 %",
    ];
    if with_asr {
        header.push("ASR %");
    }
    header.push("train s");
    (header.into_iter().map(String::from).collect(), rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let m = MeanStd::of(&[0.8, 0.9, 1.0]).unwrap();
        assert!((m.mean - 0.9).abs() < 1e-12);
        assert!((m.std - 0.1).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[0.5]).unwrap().std, 0.0);
        assert!(MeanStd::of(&[]).is_none());
        assert_eq!(m.show(100.0, 1), "90.0 ± 10.0");
    }
}
