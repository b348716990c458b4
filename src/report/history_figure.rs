//! One cell's training curves, `<cell>/history.svg`, drawn from its `history.csv`: accuracies
//! (and, in federated runs, the global model's ASR each evaluated round) on the left, losses
//! on the right, against the epoch or round. Columns a run did not record are left out.

use crate::error::{Error, Result};
use crate::report::figures::{color, ensure_parent, plot_err, whole};
use plotters::prelude::*;
use std::path::Path;

const RATES: [&str; 6] = [
    "train_accuracy",
    "val_accuracy",
    "benign_val_accuracy",
    "test_accuracy",
    "asr",
    "asr_all",
];
const LOSSES: [&str; 4] = ["train_loss", "val_loss", "benign_val_loss", "test_loss"];

/// The curves of a history table: the x column's name and (column, points) for every known
/// column with at least one value.
pub type Curves = (String, Vec<Curve>);

/// A column's name and its (x, y) points.
pub type Curve = (String, Vec<(f64, f64)>);

/// Reads `history.csv`: the first column is the epoch or round.
pub fn read(path: &Path) -> Result<Curves> {
    let (header, rows) = crate::io::read_csv_text(path)?;
    let x_name = header
        .first()
        .cloned()
        .ok_or_else(|| Error::data(path, "has no columns"))?;
    let mut curves: Vec<Curve> = header
        .iter()
        .filter(|h| RATES.contains(&h.as_str()) || LOSSES.contains(&h.as_str()))
        .map(|h| (h.clone(), Vec::new()))
        .collect();
    for row in &rows {
        let Some(x) = row.first().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        for (name, points) in curves.iter_mut() {
            let col = header
                .iter()
                .position(|h| h == name)
                .expect("from the header");
            if let Some(y) = row.get(col).and_then(|v| v.parse::<f64>().ok())
                && y.is_finite()
            {
                points.push((x, y));
            }
        }
    }
    curves.retain(|(_, p)| !p.is_empty());
    Ok((x_name, curves))
}

/// Draws `<dir>/history.svg` from `<dir>/history.csv`; false when there is nothing to draw.
pub fn write(dir: &Path) -> Result<bool> {
    let (x_name, curves) = read(&dir.join("history.csv"))?;
    if curves.is_empty() {
        return Ok(false);
    }
    let path = dir.join("history.svg");
    ensure_parent(&path)?;
    let err = |e| plot_err(&path, e);
    let x_max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(&path, (900, 340)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(450);
    for (area, names, title, percent) in [
        (&left, &RATES[..], "accuracy / ASR (%)", true),
        (&right, &LOSSES[..], "loss", false),
    ] {
        let shown: Vec<(usize, &Curve)> = curves
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| names.contains(&n.as_str()))
            .map(|(_, c)| c)
            .enumerate()
            .collect();
        let scale = if percent { 100.0 } else { 1.0 };
        let y_max = if percent {
            100.0
        } else {
            shown
                .iter()
                .flat_map(|(_, (_, p))| p.iter().map(|q| q.1))
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.1
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..x_max + 0.5, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_name.as_str())
            .x_labels((x_max as usize + 1).min(12))
            .x_label_formatter(&whole)
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in shown {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, y)| (x, y * scale)),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y * scale), 2, c.filled())),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federated_history_gives_rates_and_losses_and_skips_empty_columns() {
        let dir = std::env::temp_dir().join(format!("fedsentry-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("history.csv"),
            "round,train_loss,train_accuracy,test_accuracy,asr,epsilon\n1,1.5,0.3,0.25,,\n2,1.0,0.5,0.5,0.75,\n",
        )
        .unwrap();
        let (x, curves) = read(&dir.join("history.csv")).unwrap();
        assert_eq!(x, "round");
        let names: Vec<&str> = curves.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            ["train_loss", "train_accuracy", "test_accuracy", "asr"]
        );
        assert_eq!(curves[3].1, vec![(2.0, 0.75)]);
        assert!(write(&dir).unwrap());
        let svg = std::fs::read_to_string(dir.join("history.svg")).unwrap();
        assert!(svg.contains("test_accuracy") && svg.contains("train_loss"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
