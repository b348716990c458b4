//! Strategies over rounds, in the style of MAD's Fig 3 (Korobeinikov et al.): for a federated
//! sweep whose grid varies `federation.strategy`, one figure per remaining setting with every
//! strategy's mean client training loss (a), mean client training accuracy (b) and the honest
//! clients' mean validation accuracy of the global model (c) against the round, the rounds in
//! which a strategy first excluded a client marked on its lines, and — when the sweep ran it — the
//! no-attack FedAvg curve (the FedAvg cell's clean baseline).
//!
//! It reads what the cells wrote (`history.csv`, `defense.csv`), so it also draws sweeps finished
//! by earlier invocations.

use crate::error::{Error, Result};
use crate::report::summary::Summary;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The grid key whose values are compared on one figure.
const STRATEGY: &str = "strategy=";

/// One line of the figure: a strategy's per-round means and its exclusions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    /// (round, mean client training loss, mean client training accuracy, honest clients'
    /// validation accuracy).
    pub rounds: Vec<(usize, f64, f64, Option<f64>)>,
    /// First round in which each excluded client was excluded: (round, client).
    pub exclusions: Vec<(usize, usize)>,
    /// Drawn dashed (the no-attack reference).
    pub reference: bool,
}

#[derive(Deserialize)]
struct HistoryRow {
    round: usize,
    train_loss: f64,
    train_accuracy: f64,
    #[serde(default)]
    benign_val_accuracy: Option<f64>,
    #[serde(default)]
    val_accuracy: Option<f64>,
}

#[derive(Deserialize)]
struct DefenseRow {
    round: usize,
    client: usize,
    action: String,
}

fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::data(path, e.to_string()))?;
    r.deserialize()
        .map(|row| row.map_err(|e| Error::data(path, e.to_string())))
        .collect()
}

/// A cell's series from its folder (`history.csv`, and `defense.csv` when present).
pub fn read_series(dir: &Path, name: &str, reference: bool) -> Result<Series> {
    let history: Vec<HistoryRow> = read_csv(&dir.join("history.csv"))?;
    let rounds = history
        .into_iter()
        .map(|h| {
            // Runs without malicious clients: every evaluating client is honest.
            let benign = h.benign_val_accuracy.or(h.val_accuracy);
            (h.round, h.train_loss, h.train_accuracy, benign)
        })
        .collect();
    let defense = dir.join("defense.csv");
    let mut first: BTreeMap<usize, usize> = BTreeMap::new();
    if defense.is_file() {
        for d in read_csv::<DefenseRow>(&defense)? {
            if d.action != "downweighted" {
                first.entry(d.client).or_insert(d.round);
            }
        }
    }
    let mut exclusions: Vec<(usize, usize)> = first.into_iter().map(|(c, r)| (r, c)).collect();
    exclusions.sort_unstable();
    Ok(Series {
        name: name.to_string(),
        rounds,
        exclusions,
        reference,
    })
}

/// The cell id without its strategy label: cells sharing it go on one figure.
fn group_of(cell: &str) -> Option<String> {
    let parts: Vec<&str> = cell.split(',').collect();
    parts.iter().any(|p| p.starts_with(STRATEGY)).then(|| {
        parts
            .iter()
            .filter(|p| !p.starts_with(STRATEGY))
            .copied()
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Writes `<out>/figures/rounds[_<setting>].svg` for each setting of a sweep over strategies
/// with two strategies or more. Returns the files written.
pub fn write(out: &Path, cells: &[Summary]) -> Result<Vec<PathBuf>> {
    let mut groups: BTreeMap<String, Vec<&Summary>> = BTreeMap::new();
    for s in cells.iter().filter(|s| s.federation.is_some()) {
        if let Some(g) = group_of(&s.cell) {
            groups.entry(g).or_default().push(s);
        }
    }
    let mut written = Vec::new();
    for (group, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let mut series = Vec::new();
        for s in &members {
            let name = s
                .federation
                .as_ref()
                .map(|f| f.strategy.clone())
                .unwrap_or_else(|| s.cell.clone());
            series.push(read_series(&out.join(&s.cell), &name, false)?);
        }
        // The no-attack curve: the clean baseline of the plain-FedAvg cell, when it has one.
        if let Some(fedavg) = members.iter().find(|s| {
            s.attack.is_some()
                && s.federation
                    .as_ref()
                    .is_some_and(|f| f.strategy.starts_with("fedavg"))
        }) {
            let key = crate::config::fingerprint(&fedavg.config.clean());
            let dir = out.join("baselines").join(key);
            if dir.join("history.csv").is_file() {
                series.push(read_series(&dir, "fedavg, no attack", true)?);
            }
        }
        let file = if group.is_empty() {
            "rounds.svg".to_string()
        } else {
            format!("rounds_{group}.svg")
        };
        let path = out.join("figures").join(file);
        let title = if group.is_empty() {
            members[0].name.clone()
        } else {
            format!("{} · {group}", members[0].name)
        };
        draw(&path, &title, &series)?;
        written.push(path);
    }
    Ok(written)
}

/// Three panels stacked: loss, accuracy, honest clients' accuracy; a cross marks each round in
/// which a strategy first excluded clients.
pub fn draw(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    crate::report::figures::ensure_parent(path)?;
    let err = |e| crate::report::figures::plot_err(path, e);
    let last = series
        .iter()
        .flat_map(|s| s.rounds.iter().map(|r| r.0))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let root = SVGBackend::new(path, (900, 1050)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let panels = root.split_evenly((3, 1));
    type Pick = fn(&(usize, f64, f64, Option<f64>)) -> Option<f64>;
    let picks: [(&str, &str, Pick, bool); 3] = [
        (
            "(a) mean client training loss",
            "loss",
            |r| Some(r.1),
            false,
        ),
        (
            "(b) mean client training accuracy",
            "accuracy %",
            |r| Some(100.0 * r.2),
            true,
        ),
        (
            "(c) honest clients' validation accuracy (global model)",
            "accuracy %",
            |r| r.3.map(|a| 100.0 * a),
            true,
        ),
    ];
    for (area, (caption, y, pick, percent)) in panels.iter().zip(picks) {
        let values: Vec<f64> = series
            .iter()
            .flat_map(|s| s.rounds.iter().filter_map(pick))
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = if percent {
            let lo = values.iter().copied().fold(100.0, f64::min);
            ((lo - 5.0).max(0.0).floor(), 101.0)
        } else {
            (
                0.0,
                values.iter().copied().fold(0.0, f64::max).max(1e-6) * 1.05,
            )
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(52)
            .build_cartesian_2d(1f64..last, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("round")
            .y_desc(y)
            .x_label_formatter(&crate::report::figures::whole)
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let c = if s.reference {
                BLACK
            } else {
                crate::report::figures::color(i)
            };
            let pts: Vec<(f64, f64)> = s
                .rounds
                .iter()
                .filter_map(|r| pick(r).map(|v| (r.0 as f64, v)))
                .filter(|p| p.1.is_finite())
                .collect();
            let label = if s.exclusions.is_empty() {
                s.name.clone()
            } else {
                let who: Vec<String> = s
                    .exclusions
                    .iter()
                    .map(|(r, c)| format!("{c}@{r}"))
                    .collect();
                format!("{} (excluded: {})", s.name, who.join(" "))
            };
            let drawn = if s.reference {
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(2)))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?
            };
            drawn.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
            });
            // Exclusion rounds: a cross on the line.
            let mut marked: Vec<usize> = s.exclusions.iter().map(|e| e.0).collect();
            marked.dedup();
            let at: Vec<(f64, f64)> = marked
                .iter()
                .filter_map(|&r| pts.iter().find(|p| p.0 as usize == r).copied())
                .collect();
            chart
                .draw_series(at.into_iter().map(|p| Cross::new(p, 6, c.stroke_width(2))))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_drop_only_the_strategy_label() {
        assert_eq!(group_of("strategy=mad_5,seed=1").as_deref(), Some("seed=1"));
        assert_eq!(group_of("strategy=fedavg").as_deref(), Some(""));
        assert_eq!(group_of("seed=1"), None);
    }

    #[test]
    fn series_read_history_and_first_exclusions() {
        let dir = std::env::temp_dir().join(format!("fedsentry-rounds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("history.csv"),
            "round,train_loss,train_accuracy,val_accuracy,benign_val_accuracy\n1,0.9,0.5,0.6,0.7\n2,0.5,0.8,0.85,0.9\n3,0.4,0.85,,\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("defense.csv"),
            "round,client,malicious,action,weight,reason\n2,7,true,excluded,0,x\n2,3,false,downweighted,0.5,y\n3,7,true,excluded,0,x\n3,1,true,excluded,0,x\n",
        )
        .unwrap();
        let s = read_series(&dir, "mad", false).unwrap();
        assert_eq!(
            s.rounds,
            vec![
                (1, 0.9, 0.5, Some(0.7)),
                (2, 0.5, 0.8, Some(0.9)),
                (3, 0.4, 0.85, None)
            ]
        );
        // Down-weighting is no exclusion; a repeated flag keeps its first round.
        assert_eq!(s.exclusions, vec![(2, 7), (3, 1)]);
        let svg = dir.join("rounds.svg");
        draw(
            &svg,
            "test",
            &[
                s.clone(),
                Series {
                    reference: true,
                    ..s
                },
            ],
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&svg)
                .unwrap()
                .contains("excluded: 7@2 1@3")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
