//! Sweep-level evasion tables. A cell's `evasion.csv` holds its source × target matrices; a
//! study (the ε sweep of Darzi et al., Fed-Safe against its baselines) compares attacks across
//! cells, so the sweep writes one row per cell × attack (`<out>/evasion.csv`) and, when the grid
//! repeats seeds, means ± std over them (`<out>/evasion_mean_std.csv`).

use crate::attacks::evasion::EvasionConfig;
use crate::error::Result;
use crate::report::repetitions::{MeanStd, SEED_KEY, by_setting};
use crate::report::summary::Summary;

/// An attack's kind and budget: (kind, ε, step α, steps); FGSM is one step of size ε.
pub fn budget(a: &EvasionConfig) -> (&'static str, f64, f64, usize) {
    match a {
        EvasionConfig::Fgsm(f) => ("fgsm", f.eps, f.eps, 1),
        EvasionConfig::Bim(b) => ("bim", b.eps, b.alpha, b.steps),
        EvasionConfig::Pgd(p) => ("pgd", p.eps, p.alpha, p.steps),
    }
}

/// One attack of one cell, as the sweep tables show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub params: serde_json::Map<String, serde_json::Value>,
    pub cell: String,
    pub attack: String,
    pub kind: &'static str,
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    pub holds: String,
    pub self_asr: f64,
    /// Over all clients (Darzi's AASR), and over the clients other than the source.
    pub aasr: f64,
    pub aasr_others: f64,
    pub aetr: Option<f64>,
    /// Attack accuracy: accuracy on the adversarial examples, over every source and target.
    pub aa: f64,
    /// Mean over clients of each client model's clean accuracy on its validation samples, and
    /// on the whole test set (absent in summaries written before it was measured).
    pub clean_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub ms_per_batch: f64,
}

/// Every evaluated attack of every cell, in cell order, then attack order.
pub fn rows(cells: &[Summary]) -> Vec<Row> {
    let mut out = Vec::new();
    for s in cells {
        let (Some(fed), Some(cfg)) = (&s.federation, &s.config.evasion) else {
            continue;
        };
        let holds = serde_json::to_value(cfg.holds)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        for (rep, a) in fed.evasion.iter().zip(&cfg.attacks) {
            let (kind, eps, alpha, steps) = budget(a);
            let n = rep.clean_accuracy.len().max(1) as f64;
            out.push(Row {
                params: s.params.clone(),
                cell: s.cell.clone(),
                attack: rep.attack.clone(),
                kind,
                eps,
                alpha,
                steps,
                holds: holds.clone(),
                self_asr: rep.mean_self_asr,
                aasr: rep.mean_aasr,
                aasr_others: rep.mean_aasr_others,
                aetr: rep.mean_aetr,
                aa: rep.mean_aa,
                clean_accuracy: rep.clean_accuracy.iter().sum::<f64>() / n,
                test_accuracy: (!rep.test_accuracy.is_empty()).then(|| {
                    rep.test_accuracy.iter().sum::<f64>() / rep.test_accuracy.len() as f64
                }),
                ms_per_batch: rep.ms_per_batch,
            });
        }
    }
    out
}

/// An attack setting over seeds: the grid values without `seed`, the attack, and its metrics.
#[derive(Debug, Clone)]
pub struct Averaged {
    pub params: serde_json::Map<String, serde_json::Value>,
    pub attack: String,
    pub eps: f64,
    pub seeds: usize,
    pub self_asr: MeanStd,
    pub aasr: MeanStd,
    pub aasr_others: MeanStd,
    pub aetr: Option<MeanStd>,
    pub aa: MeanStd,
    pub clean_accuracy: MeanStd,
    pub test_accuracy: Option<MeanStd>,
}

/// Groups rows that differ only in their seed, in the order they first appear.
pub fn averaged(rows: &[Row]) -> Vec<Averaged> {
    let stat = |rs: &[&Row], f: &dyn Fn(&Row) -> f64| {
        MeanStd::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).expect("a group has rows")
    };
    by_setting(rows, |r| &r.params, |r| r.attack.clone())
        .into_iter()
        .map(|(params, rs)| {
            let aetr: Vec<f64> = rs.iter().filter_map(|r| r.aetr).collect();
            let test: Vec<f64> = rs.iter().filter_map(|r| r.test_accuracy).collect();
            Averaged {
                params,
                attack: rs[0].attack.clone(),
                eps: rs[0].eps,
                seeds: rs.len(),
                self_asr: stat(&rs, &|r| r.self_asr),
                aasr: stat(&rs, &|r| r.aasr),
                aasr_others: stat(&rs, &|r| r.aasr_others),
                aetr: MeanStd::of(&aetr),
                aa: stat(&rs, &|r| r.aa),
                clean_accuracy: stat(&rs, &|r| r.clean_accuracy),
                test_accuracy: MeanStd::of(&test),
            }
        })
        .collect()
}

fn f6(v: f64) -> String {
    format!("{v:.6}")
}

/// Writes `<out>/evasion.csv` and, with repeated seeds, `<out>/evasion_mean_std.csv`; nothing
/// when no cell evaluated evasion attacks.
pub fn write(out: &std::path::Path, cells: &[Summary]) -> Result<()> {
    let rows = rows(cells);
    if rows.is_empty() {
        return Ok(());
    }
    let keys = crate::io::param_keys(rows.iter().map(|r| &r.params));
    let header = crate::io::header(
        &keys,
        &[
            "cell",
            "attack",
            "kind",
            "eps",
            "alpha",
            "steps",
            "holds",
            "self_asr",
            "aasr",
            "aasr_others",
            "aetr",
            "aa",
            "client_clean_accuracy",
            "client_test_accuracy",
            "ms_per_batch",
        ],
    );
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = crate::io::param_values(&keys, &r.params);
            v.extend([
                r.cell.clone(),
                r.attack.clone(),
                r.kind.to_string(),
                r.eps.to_string(),
                r.alpha.to_string(),
                r.steps.to_string(),
                r.holds.clone(),
                f6(r.self_asr),
                f6(r.aasr),
                f6(r.aasr_others),
                r.aetr.map(f6).unwrap_or_default(),
                f6(r.aa),
                f6(r.clean_accuracy),
                r.test_accuracy.map(f6).unwrap_or_default(),
                format!("{:.1}", r.ms_per_batch),
            ]);
            v
        })
        .collect();
    crate::io::write_csv(&out.join("evasion.csv"), &header, &table)?;

    let avg = averaged(&rows);
    crate::report::evasion_figures::evasion_figure(out, &avg, &rows)?;
    crate::report::evasion_figures::fraction_figures(out, &avg)?;
    if avg.iter().all(|a| a.seeds < 2) {
        return Ok(());
    }
    let keys: Vec<String> = keys.into_iter().filter(|k| k != SEED_KEY).collect();
    let header = crate::io::header(
        &keys,
        &[
            "attack",
            "eps",
            "seeds",
            "self_asr_mean",
            "self_asr_std",
            "aasr_mean",
            "aasr_std",
            "aasr_others_mean",
            "aasr_others_std",
            "aetr_mean",
            "aetr_std",
            "aa_mean",
            "aa_std",
            "client_clean_accuracy_mean",
            "client_clean_accuracy_std",
            "client_test_accuracy_mean",
            "client_test_accuracy_std",
        ],
    );
    let table: Vec<Vec<String>> = avg
        .iter()
        .map(|a| {
            let mut v = crate::io::param_values(&keys, &a.params);
            v.extend([
                a.attack.clone(),
                a.eps.to_string(),
                a.seeds.to_string(),
                f6(a.self_asr.mean),
                f6(a.self_asr.std),
                f6(a.aasr.mean),
                f6(a.aasr.std),
                f6(a.aasr_others.mean),
                f6(a.aasr_others.std),
                a.aetr.map(|m| f6(m.mean)).unwrap_or_default(),
                a.aetr.map(|m| f6(m.std)).unwrap_or_default(),
                f6(a.aa.mean),
                f6(a.aa.std),
                f6(a.clean_accuracy.mean),
                f6(a.clean_accuracy.std),
                a.test_accuracy.map(|m| f6(m.mean)).unwrap_or_default(),
                a.test_accuracy.map(|m| f6(m.std)).unwrap_or_default(),
            ]);
            v
        })
        .collect();
    crate::io::write_csv(&out.join("evasion_mean_std.csv"), &header, &table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seed: u64, attack: &str, self_asr: f64, aasr: f64) -> Row {
        let mut params = serde_json::Map::new();
        params.insert("holds".into(), "local".into());
        params.insert(SEED_KEY.into(), seed.into());
        Row {
            params,
            cell: format!("seed={seed}"),
            attack: attack.into(),
            kind: "pgd",
            eps: 0.03,
            alpha: 0.0075,
            steps: 20,
            holds: "local".into(),
            self_asr,
            aasr,
            aasr_others: aasr / 2.0,
            aetr: Some(aasr / self_asr),
            aa: 1.0 - aasr,
            clean_accuracy: 0.7,
            test_accuracy: Some(0.6 + seed as f64 / 10.0),
            ms_per_batch: 1.0,
        }
    }

    #[test]
    fn seeds_of_one_attack_average_together() {
        let rows = [
            row(1, "a", 0.5, 0.25),
            row(1, "b", 0.9, 0.8),
            row(2, "a", 0.7, 0.35),
            row(2, "b", 1.0, 0.9),
        ];
        let avg = averaged(&rows);
        assert_eq!(avg.len(), 2);
        assert_eq!((avg[0].attack.as_str(), avg[0].seeds), ("a", 2));
        assert!((avg[0].self_asr.mean - 0.6).abs() < 1e-12);
        assert!((avg[0].aasr.mean - 0.3).abs() < 1e-12);
        // Sample std of {0.5, 0.7}.
        assert!((avg[0].self_asr.std - 0.2 / 2f64.sqrt()).abs() < 1e-12);
        assert!((avg[1].aasr.mean - 0.85).abs() < 1e-12);
        assert!((avg[0].test_accuracy.unwrap().mean - 0.75).abs() < 1e-12);
        assert!(!avg[0].params.contains_key(SEED_KEY));
    }
}
