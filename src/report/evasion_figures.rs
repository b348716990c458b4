//! Evasion figures of a sweep: ASR against ε with one line per setting (Darzi et al. Fig 3),
//! and ASR against the share of the server's images used for adaptation (Fed-Safe Fig 3).

use super::evasion_tables::{Averaged, Row};
use super::figures::{Named, two_panels};
use crate::error::Result;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The grid key of Fed-Safe's retraining fraction.
pub const FRACTION_KEY: &str = "evasion.adapt.fraction";

/// `<out>/figures/evasion_eps.svg`: self ASR and AASR (means over seeds) against ε, one line per
/// setting × attack family (kind, steps and α/ε) that ran at two ε or more. Returns the file if
/// written.
pub fn evasion_figure(out: &Path, attacks: &[Averaged], rows: &[Row]) -> Result<Option<PathBuf>> {
    let mut own = Named::new();
    let mut others = Named::new();
    for a in attacks {
        let Some(r) = rows.iter().find(|r| r.attack == a.attack) else {
            continue;
        };
        let setting = setting_label(&a.params, None);
        let family = if r.kind == "fgsm" {
            "FGSM".to_string()
        } else {
            format!(
                "{}-{} α=ε/{:.0}",
                r.kind.to_uppercase(),
                r.steps,
                r.eps / r.alpha
            )
        };
        let key = [setting, family].join(" ").trim().to_string();
        own.entry(key.clone())
            .or_default()
            .push((a.eps, 100.0 * a.self_asr.mean));
        others
            .entry(key)
            .or_default()
            .push((a.eps, 100.0 * a.aasr_others.mean));
    }
    own.retain(|_, p| p.len() >= 2);
    others.retain(|k, _| own.contains_key(k));
    if own.is_empty() {
        return Ok(None);
    }
    let path = out.join("figures").join("evasion_eps.svg");
    // ASR rises with ε: the lower right stays free.
    two_panels(
        &path,
        600,
        "ε (pixel scale [0, 1])",
        SeriesLabelPosition::LowerRight,
        [
            ("ASR on the attacker's model", "self ASR %", &own),
            (
                "ASR on the other clients (Darzi Fig 3a–c)",
                "ASR on others %",
                &others,
            ),
        ],
    )?;
    Ok(Some(path))
}

/// A grid setting as `key=value` words (last part of each dotted key), leaving out `skip`.
fn setting_label(
    params: &serde_json::Map<String, serde_json::Value>,
    skip: Option<&str>,
) -> String {
    let keys: Vec<String> = params
        .keys()
        .filter(|k| Some(k.as_str()) != skip)
        .cloned()
        .collect();
    keys.iter()
        .zip(crate::io::param_values(&keys, params))
        .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fed-Safe Fig 3: `<out>/figures/asr_vs_fraction_<k>.svg`, one per attack k (in order of
/// appearance): self ASR (the adversary's model) and ASR on the other clients (means over
/// seeds) against the share of the server's images the adaptation used, one line per other
/// setting (e.g. the noise σ: σ = 0 is server-side adversarial training without noise).
/// Written when the grid sweeps `evasion.adapt.fraction` over two values or more.
pub fn fraction_figures(out: &Path, attacks: &[Averaged]) -> Result<Vec<PathBuf>> {
    let mut per_attack: Vec<(String, Named, Named)> = Vec::new();
    for a in attacks {
        let Some(f) = a
            .params
            .get(FRACTION_KEY)
            .and_then(serde_json::Value::as_f64)
        else {
            continue;
        };
        let setting = setting_label(&a.params, Some(FRACTION_KEY));
        let i = match per_attack.iter().position(|(name, ..)| *name == a.attack) {
            Some(i) => i,
            None => {
                per_attack.push((a.attack.clone(), Named::new(), Named::new()));
                per_attack.len() - 1
            }
        };
        let (_, own, others) = &mut per_attack[i];
        own.entry(setting.clone())
            .or_default()
            .push((f, 100.0 * a.self_asr.mean));
        others
            .entry(setting)
            .or_default()
            .push((f, 100.0 * a.aasr_others.mean));
    }
    let mut written = Vec::new();
    for (k, (attack, mut own, mut others)) in per_attack.into_iter().enumerate() {
        own.retain(|_, p| p.len() >= 2);
        others.retain(|_, p| p.len() >= 2);
        if own.is_empty() {
            continue;
        }
        for p in own.values_mut().chain(others.values_mut()) {
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let path = out.join("figures").join(format!("asr_vs_fraction_{k}.svg"));
        let x = format!("retraining fraction of the server's images ({attack})");
        two_panels(
            &path,
            600,
            &x,
            SeriesLabelPosition::UpperRight,
            [
                ("ASR on the adversary's model", "self ASR %", &own),
                ("ASR on the benign clients", "ASR on others %", &others),
            ],
        )?;
        written.push(path);
    }
    Ok(written)
}
