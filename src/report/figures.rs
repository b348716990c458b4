//! SVG figures in the thesis' style: clean accuracy and ASR against the poison rate with one
//! line per number of malicious clients (one figure per model × strategy × partition), and the
//! partition bar chart (samples per class per client), and accuracy against the frozen share of
//! the backbone per model. The evasion figures live with the evasion tables
//! ([`super::evasion_tables`]).
//!
//! Over 500 lines on purpose: the figures share one plotting style and its helpers; the last 18 lines are its tests.

use crate::error::{Error, Result};
use crate::report::repetitions::Setting;
use crate::report::summary::Summary;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("cannot draw {}: {e}", path.display()))
}

/// Axis label for whole epochs and rounds: ticks between them stay blank (plotters places
/// ticks at 0.5 steps on short runs, which would print every round twice).
pub(crate) fn whole(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

pub(crate) fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    Ok(())
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Stacked bars: one per client, one colour per class; malicious clients are marked with `*`.
pub fn partition_chart(
    path: &Path,
    classes: &[String],
    counts: &[Vec<usize>],
    malicious: &[usize],
) -> Result<()> {
    ensure_parent(path)?;
    let err = |e| plot_err(path, e);
    let n = counts.len().max(1);
    let top = counts
        .iter()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let width = (120 + 40 * n).clamp(480, 1600) as u32;
    let root = SVGBackend::new(path, (width, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Samples per class per client", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("client (* malicious)")
        .y_desc("samples")
        .x_labels(n.min(40))
        .x_label_formatter(&|x| {
            let i = x.round() as usize;
            if malicious.contains(&i) {
                format!("{i}*")
            } else {
                i.to_string()
            }
        })
        .draw()
        .map_err(err)?;
    for (k, class) in classes.iter().enumerate() {
        let c = color(k);
        chart
            .draw_series(counts.iter().enumerate().map(|(i, row)| {
                let below: usize = row[..k].iter().sum();
                let x = i as f64;
                Rectangle::new(
                    [
                        (x - 0.35, below as f64),
                        (x + 0.35, (below + row[k]) as f64),
                    ],
                    c.filled(),
                )
            }))
            .map_err(err)?
            .label(class.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// One line: (malicious clients, [(poison rate, value)]).
type Lines = BTreeMap<usize, Vec<(f64, f64)>>;

/// (model, fine-tuning, partition) → (ASR lines, clean-accuracy lines, baseline accuracies).
type Groups = BTreeMap<(String, String, String), (Lines, Lines, Vec<f64>)>;

/// Axes of a line panel: x label, y label, how a line's key is named in the legend, and where
/// the legend sits (where the lines are not).
pub(super) struct Axes<'a, K> {
    pub x: &'a str,
    pub y: &'a str,
    pub name: &'a dyn Fn(&K) -> String,
    pub legend: SeriesLabelPosition,
}

pub(super) fn line_panel<K: Ord>(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    axes: &Axes<K>,
    lines: &BTreeMap<K, Vec<(f64, f64)>>,
    reference: Option<f64>,
    path: &Path,
) -> Result<()> {
    let err = |e| plot_err(path, e);
    let xs = lines.values().flatten().map(|p| p.0);
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let pad = ((hi - lo) * 0.08).max(0.02);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(46)
        .build_cartesian_2d(lo - pad..hi + pad, 0f64..101f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(axes.x)
        .y_desc(axes.y)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    for (i, (m, pts)) in lines.iter().enumerate() {
        let c = color(i);
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label((axes.name)(m))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    if let Some(r) = reference {
        chart
            .draw_series(LineSeries::new(
                vec![(lo - pad, r), (hi + pad, r)],
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(err)?
            .label("clean baseline")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
    }
    chart
        .configure_series_labels()
        .position(axes.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Sweep figures under `<out>/figures/`: for each model × strategy × partition with federated
/// backdoor cells, clean accuracy and ASR against poison rate, one line per malicious count.
/// Returns the files written.
pub fn sweep_figures(out: &Path, cells: &[Summary]) -> Result<Vec<PathBuf>> {
    let mut groups = Groups::new();
    for s in cells {
        let Some(f) = &s.federation else { continue };
        let (Some(rate), Some(asr)) = (f.poison_rate, s.asr) else {
            continue;
        };
        let g = groups
            .entry((s.model.clone(), s.fine_tune.clone(), f.partition.clone()))
            .or_default();
        let m = f.malicious_clients.len();
        g.0.entry(m).or_default().push((rate, 100.0 * asr));
        g.1.entry(m)
            .or_default()
            .push((rate, 100.0 * s.clean_accuracy));
        g.2.extend(s.baseline_accuracy);
    }
    let mut written = Vec::new();
    for ((model, ft, part), (asr, acc, base)) in groups {
        let safe: String = format!("{model}_{ft}_{part}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = out.join("figures").join(format!("{safe}.svg"));
        ensure_parent(&path)?;
        let baseline =
            (!base.is_empty()).then(|| 100.0 * base.iter().sum::<f64>() / base.len() as f64);
        {
            let root = SVGBackend::new(&path, (960, 400)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_err(&path, e))?;
            let (left, right) = root.split_horizontally(480);
            let title = format!("{model}, {ft}, {part}");
            let name = |m: &usize| format!("{m} malicious");
            let axes = |y| Axes {
                x: "poison rate",
                y,
                name: &name,
                legend: SeriesLabelPosition::LowerRight,
            };
            line_panel(
                &left,
                &format!("ASR — {title}"),
                &axes("ASR %"),
                &asr,
                None,
                &path,
            )?;
            line_panel(
                &right,
                &format!("Clean accuracy — {title}"),
                &axes("clean accuracy %"),
                &acc,
                baseline,
                &path,
            )?;
            root.present().map_err(|e| plot_err(&path, e))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// `<out>/figures/freeze.svg`: accuracy and F1 (means over seeds) against the frozen share of
/// the backbone, one line per model (the thesis' model comparison). Written only when each
/// model ran with several freezing levels and nothing else varies; returns the file if written.
pub fn freeze_figure(out: &Path, settings: &[Setting]) -> Result<Option<PathBuf>> {
    let mut acc = Named::new();
    let mut f1 = Named::new();
    for s in settings {
        let pts = acc.entry(s.model.clone()).or_default();
        if pts.iter().any(|p| p.0 == s.freeze_percent) {
            return Ok(None);
        }
        pts.push((s.freeze_percent, 100.0 * s.clean_accuracy.mean));
        f1.entry(s.model.clone())
            .or_default()
            .push((s.freeze_percent, 100.0 * s.f1_macro.mean));
    }
    if acc.is_empty() || acc.values().any(|p| p.len() < 2) {
        return Ok(None);
    }
    let path = out.join("figures").join("freeze.svg");
    // Accuracy falls as more is frozen: the upper right stays free.
    two_panels(
        &path,
        480,
        "backbone frozen %",
        SeriesLabelPosition::UpperRight,
        [("Accuracy", "accuracy %", &acc), ("Macro F1", "F1 %", &f1)],
    )?;
    Ok(Some(path))
}

/// Lines named by a label: points (x, y).
pub(super) type Named = BTreeMap<String, Vec<(f64, f64)>>;

/// A figure of two line panels side by side, each `width` wide, sharing the x axis and legend
/// position; lines are named by their keys.
pub(super) fn two_panels(
    path: &Path,
    width: u32,
    x: &str,
    legend: SeriesLabelPosition,
    panels: [(&str, &str, &Named); 2],
) -> Result<()> {
    ensure_parent(path)?;
    let root = SVGBackend::new(path, (2 * width, width * 5 / 6)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let (left, right) = root.split_horizontally(width);
    let name = |k: &String| k.clone();
    for (area, (title, y, lines)) in [left, right].iter().zip(panels) {
        let axes = Axes {
            x,
            y,
            name: &name,
            legend: legend.clone(),
        };
        line_panel(area, title, &axes, lines, None, path)?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// The defense over rounds: the clients' mean training loss (top, with the rounds in which
/// clients were first excluded marked) and each client's trust or weight (bottom, malicious
/// clients dashed) when the defense scores clients.
pub fn defense_chart(
    path: &Path,
    loss: &[(usize, f64)],
    exclusions: &[(usize, usize)],
    trust: &BTreeMap<(usize, bool), Vec<(usize, f64)>>,
) -> Result<()> {
    ensure_parent(path)?;
    let err = |e| plot_err(path, e);
    let rounds = loss.iter().map(|r| r.0).max().unwrap_or(1).max(2) as f64;
    let root =
        SVGBackend::new(path, (760, if trust.is_empty() { 320 } else { 620 })).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = if trust.is_empty() {
        (root.clone(), None)
    } else {
        let (a, b) = root.split_vertically(320);
        (a, Some(b))
    };
    let ymax = loss
        .iter()
        .map(|r| r.1)
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption("Mean client training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(1f64..rounds, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("loss")
        .x_label_formatter(&whole)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            loss.iter()
                .filter(|r| r.1.is_finite())
                .map(|r| (r.0 as f64, r.1)),
            color(0).stroke_width(2),
        ))
        .map_err(err)?;
    // One marker per round, naming every client excluded in it.
    let mut by_round: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for &(round, client) in exclusions {
        by_round.entry(round).or_default().push(client.to_string());
    }
    for (k, (round, clients)) in by_round.iter().enumerate() {
        let x = *round as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(x, 0.0), (x, ymax)],
                color(3).stroke_width(1),
            )))
            .map_err(err)?;
        let who = if clients.len() == 1 {
            "client"
        } else {
            "clients"
        };
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {who} {} excluded", clients.join(", ")),
                (x, ymax * (0.95 - 0.07 * (k % 4) as f64)),
                ("sans-serif", 12).into_font().color(&color(3)),
            )))
            .map_err(err)?;
    }
    if let Some(area) = bottom {
        let mut chart = ChartBuilder::on(&area)
            .caption("Trust per client (dashed: malicious)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(1f64..rounds, 0f64..1.05)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("trust")
            .x_label_formatter(&whole)
            .draw()
            .map_err(err)?;
        for (k, ((client, malicious), pts)) in trust.iter().enumerate() {
            let c = color(k);
            let series: Vec<(f64, f64)> = pts.iter().map(|p| (p.0 as f64, p.1)).collect();
            if *malicious {
                chart
                    .draw_series(DashedLineSeries::new(series, 6, 4, c.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("{client}*"));
            } else {
                chart
                    .draw_series(LineSeries::new(series, c.stroke_width(1)))
                    .map_err(err)?
                    .label(client.to_string());
            }
        }
    }
    root.present().map_err(err)
}

/// A matrix as a heatmap (rows: `row_labels`, columns 0..n), values in [0, 1] printed in
/// each cell.
pub fn heatmap(path: &Path, title: &str, row_labels: &[usize], m: &[Vec<f64>]) -> Result<()> {
    ensure_parent(path)?;
    let err = |e| plot_err(path, e);
    let rows = m.len().max(1);
    let cols = m.first().map_or(1, |r| r.len()).max(1);
    let root = SVGBackend::new(path, ((120 + 56 * cols) as u32, (110 + 44 * rows) as u32))
        .into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..cols as f64, 0f64..rows as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("target client")
        .y_desc("source client")
        .x_labels(cols)
        .y_labels(rows)
        .x_label_formatter(&|x| format!("{}", x.floor() as usize))
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            row_labels
                .get(rows.saturating_sub(1 + i))
                .map(|c| c.to_string())
                .unwrap_or_default()
        })
        .draw()
        .map_err(err)?;
    for (r, row) in m.iter().enumerate() {
        let y = (rows - 1 - r) as f64;
        for (c, &v) in row.iter().enumerate() {
            let shade = RGBColor(255, (255.0 * (1.0 - v)) as u8, (255.0 * (1.0 - v)) as u8);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(c as f64, y), (c as f64 + 1.0, y + 1.0)],
                    shade.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.0}", 100.0 * v),
                    (c as f64 + 0.3, y + 0.6),
                    ("sans-serif", 12),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_chart_draws_every_bar() {
        let dir = std::env::temp_dir().join(format!("fedsentry-fig-{}", std::process::id()));
        let path = dir.join("p.svg");
        let classes: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        partition_chart(&path, &classes, &[vec![3, 1], vec![0, 5], vec![2, 2]], &[1]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // Two classes × three clients = six bars (plus two legend swatches).
        assert!(svg.matches("<rect").count() >= 8, "{svg}");
        assert!(svg.contains("1*"));
        std::fs::remove_dir_all(dir).ok();
    }
}
