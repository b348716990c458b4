//! `<out>/report.html`: one self-contained page per sweep. What a reader sees first is the
//! headline table (sortable; mean ± std over seeds below it when the sweep repeats settings)
//! and the cells that failed or never ran; then paper vs measured, the sweep's figures and
//! tables, and one collapsible section per cell with its numbers, training curves, partition,
//! defense timeline, evasion heatmaps, Grad-CAM overlays (clean and triggered side by side),
//! the configuration it ran and the command that reruns it.
//!
//! It reads only what the run wrote (the cells' `summary.json`, CSV tables and figures, and
//! `sweep.json`), so `fedsentry report` also works on sweeps made by earlier invocations.

use super::html::{self, escape};
use super::manifest::{CellStatus, Manifest};
use super::summary::Summary;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub const FILE: &str = "report.html";

/// Folders of a run that are not cells.
const NOT_CELLS: [&str; 3] = ["baselines", "pretrained", "figures"];

/// One planned or found cell and what became of it.
enum CellState {
    Done(Box<Summary>),
    /// A summary that no longer parses (an older schema) or cannot be read.
    Unreadable(String),
    Failed(String),
    /// Started but never finished: still running, or the process was stopped.
    Interrupted,
    NotRun,
}

struct CellEntry {
    id: String,
    state: CellState,
    status: Option<CellStatus>,
    seconds: Option<f64>,
}

/// Writes `<out>/report.html` (and, first, the PNG copies of every SVG figure and each cell's
/// `history.svg`); returns the page's path.
pub fn write(out: &Path) -> Result<PathBuf> {
    if !out.is_dir() {
        return Err(Error::data(out, "is not a run folder (no such directory)"));
    }
    let manifest = Manifest::read(out)?;
    let cells = entries(out, manifest.as_ref())?;
    for c in &cells {
        let dir = out.join(&c.id);
        if dir.join("history.csv").is_file()
            && crate::io::is_stale(&dir.join("history.svg"), &dir.join("history.csv"))
        {
            super::history_figure::write(&dir)?;
        }
    }
    super::png::write_all(out)?;
    let page = render(out, manifest.as_ref(), &cells)?;
    let path = out.join(FILE);
    crate::io::write_atomic(&path, page.as_bytes())?;
    Ok(path)
}

/// A cell's id, recorded status, error and seconds.
type Planned = (String, Option<CellStatus>, Option<String>, Option<f64>);

/// The cells: the manifest's plan when there is one, else every folder with a summary.
fn entries(out: &Path, manifest: Option<&Manifest>) -> Result<Vec<CellEntry>> {
    let planned: Vec<Planned> = match manifest {
        Some(m) => m
            .cells
            .iter()
            .map(|c| (c.id.clone(), Some(c.status), c.error.clone(), c.seconds))
            .collect(),
        None => {
            let mut ids = Vec::new();
            for e in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
                let p = e.map_err(|e| Error::io(out, e))?.path();
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if p.join("summary.json").is_file() && !NOT_CELLS.contains(&name.as_str()) {
                    ids.push(name);
                }
            }
            ids.sort();
            ids.into_iter().map(|id| (id, None, None, None)).collect()
        }
    };
    Ok(planned
        .into_iter()
        .map(|(id, status, error, seconds)| {
            let file = out.join(&id).join("summary.json");
            let state = match (status, error) {
                (Some(CellStatus::Failed), Some(e)) => CellState::Failed(e),
                (Some(CellStatus::Failed), None) => CellState::Failed("failed".into()),
                _ if file.is_file() => match std::fs::read_to_string(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<Summary>(&t).map_err(|e| e.to_string()))
                {
                    Ok(s) => CellState::Done(Box::new(s)),
                    Err(e) => CellState::Unreadable(format!("{}: {e}", file.display())),
                },
                (Some(CellStatus::Running), _) => CellState::Interrupted,
                _ => CellState::NotRun,
            };
            CellEntry {
                id,
                state,
                status,
                seconds,
            }
        })
        .collect())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.2}", 100.0 * x))
}

/// `2026-12-04 18:13 UTC` from seconds since the Unix epoch (proleptic Gregorian calendar).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn render(out: &Path, manifest: Option<&Manifest>, cells: &[CellEntry]) -> Result<String> {
    let done: Vec<Summary> = cells
        .iter()
        .filter_map(|c| match &c.state {
            CellState::Done(s) => Some((**s).clone()),
            _ => None,
        })
        .collect();
    let name = manifest
        .map(|m| m.name.clone())
        .or_else(|| done.first().map(|s| s.name.clone()))
        .unwrap_or_else(|| {
            out.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        });
    let mut b = String::new();
    b.push_str(&format!("<h1>{}</h1>", escape(&name)));
    b.push_str(&meta(out, manifest, cells, &done));

    b.push_str("<h2 id=\"results\">Results</h2>");
    if done.is_empty() {
        b.push_str("<p class=\"bad\">No cell finished.</p>");
    } else {
        let (header, rows) = super::results::results_rows(&done);
        let mut header = header;
        header.insert(0, "cell".into());
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .zip(&done)
            .map(|(mut r, s)| {
                r.insert(0, s.cell.clone());
                r
            })
            .collect();
        b.push_str(&html::table(
            "One row per cell (click a heading to sort)",
            &header,
            &rows,
        ));
        let settings = super::repetitions::settings(&done);
        if super::repetitions::repeated(&settings) {
            let (h, r) = super::repetitions::rows(&settings);
            b.push_str(&html::table("Mean ± std over seeds", &h, &r));
        }
    }
    b.push_str(&problems(out, manifest, cells));

    let pvm = out.join("paper_vs_measured.csv");
    if pvm.is_file() {
        b.push_str("<h2 id=\"paper\">Paper vs measured</h2>");
        b.push_str(&csv_table(&pvm, "")?);
    }

    let sweep_figures = figures_in(&out.join("figures"))?
        .into_iter()
        .chain(figures_in(out)?)
        .collect::<Vec<_>>();
    if !sweep_figures.is_empty() {
        b.push_str("<h2 id=\"figures\">Figures</h2>");
        for f in &sweep_figures {
            b.push_str(&inline(f, out)?);
        }
    }

    let tables: Vec<PathBuf> = crate::io::files_with_extension(out, "csv")?
        .into_iter()
        .filter(|p| {
            p.parent() == Some(out) && p.file_name().is_some_and(|n| n != "paper_vs_measured.csv")
        })
        .collect();
    if !tables.is_empty() {
        b.push_str("<h2 id=\"tables\">Tables</h2>");
        for t in &tables {
            let label = t
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let open = label != "results.csv";
            b.push_str(&html::details(
                &format!("table-{label}"),
                &format!("<code>{}</code>", escape(&label)),
                &csv_table(t, "")?,
                open,
            ));
        }
    }

    b.push_str("<h2 id=\"cells\">Cells</h2>");
    for c in cells {
        b.push_str(&cell_section(out, manifest, c)?);
    }
    b.push_str(&format!(
        "<p class=\"meta\">Written {} by fedsentry {} from <code>{}</code>.</p>",
        utc(now_unix()),
        env!("CARGO_PKG_VERSION"),
        escape(&out.display().to_string())
    ));
    Ok(html::document(&format!("{name} — fedsentry report"), &b))
}

fn meta(out: &Path, manifest: Option<&Manifest>, cells: &[CellEntry], done: &[Summary]) -> String {
    let mut m = String::from("<div class=\"meta\">");
    if let Some(man) = manifest {
        if let Some(c) = &man.command {
            m.push_str(&format!("<div>Command: <code>{}</code></div>", escape(c)));
        }
        if let Some(e) = &man.experiment {
            m.push_str(&format!(
                "<div>Experiment file: <code>{}</code></div>",
                escape(&e.display().to_string())
            ));
        }
        m.push_str(&format!("<div>Started {}</div>", utc(man.started_unix)));
    }
    m.push_str(&format!(
        "<div>Output folder: <code>{}</code></div>",
        escape(&out.display().to_string())
    ));
    let count = |f: &dyn Fn(&CellEntry) -> bool| cells.iter().filter(|c| f(c)).count();
    let finished = count(&|c| matches!(c.state, CellState::Done(_)));
    let reused =
        count(&|c| matches!(c.state, CellState::Done(_)) && c.status == Some(CellStatus::Reused));
    let failed = count(&|c| matches!(c.state, CellState::Failed(_) | CellState::Unreadable(_)));
    let missing = count(&|c| matches!(c.state, CellState::NotRun | CellState::Interrupted));
    let class = if failed + missing > 0 { "warn" } else { "ok" };
    m.push_str(&format!(
        "<div class=\"{class}\">{finished} of {} cells finished{}{}{}</div>",
        cells.len(),
        if reused > 0 {
            format!(" ({reused} reused from an earlier run)")
        } else {
            String::new()
        },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        },
        if missing > 0 {
            format!(", {missing} not finished")
        } else {
            String::new()
        },
    ));
    if let Some(s) = done.first() {
        m.push_str(&format!(
            "<div>Data: {} · CPU kernels: {}</div>",
            escape(&s.dataset),
            s.numerics.cpu_kernels.label()
        ));
    }
    m.push_str("</div>");
    m
}

/// The cells that failed, could not be read or never finished, each with its reason.
fn problems(out: &Path, manifest: Option<&Manifest>, cells: &[CellEntry]) -> String {
    let rows: Vec<(String, String, String)> = cells
        .iter()
        .filter_map(|c| {
            let (what, why) = match &c.state {
                CellState::Done(_) => return None,
                CellState::Failed(e) => ("failed", e.clone()),
                CellState::Unreadable(e) => ("unreadable summary", e.clone()),
                CellState::Interrupted => (
                    "not finished",
                    "started, but the sweep stopped (or is still running) before it finished"
                        .into(),
                ),
                CellState::NotRun => (
                    "not run",
                    "the sweep stopped before this cell started".into(),
                ),
            };
            let rerun = manifest
                .and_then(|m| m.rerun_command(out, &c.id))
                .unwrap_or_default();
            Some((
                c.id.clone(),
                what.to_string(),
                format!(
                    "{why}{}",
                    if rerun.is_empty() {
                        String::new()
                    } else {
                        format!("\nrerun: {rerun}")
                    }
                ),
            ))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<h2 id=\"problems\" class=\"bad\">Cells without a result ({})</h2><table class=\"kv\"><tbody>",
        rows.len()
    );
    for (id, what, why) in rows {
        h.push_str(&format!(
            "<tr><th><a href=\"#{}\">{}</a></th><td class=\"bad\">{}</td><td><pre>{}</pre></td></tr>",
            escape(&html::anchor(&format!("cell-{id}"))),
            escape(&id),
            escape(&what),
            escape(&why)
        ));
    }
    h.push_str("</tbody></table>");
    h
}

/// A CSV file as a sortable table.
fn csv_table(path: &Path, caption: &str) -> Result<String> {
    let (header, rows) = crate::io::read_csv_text(path)?;
    Ok(html::table(caption, &header, &rows))
}

/// The figures directly in `dir`: every SVG, and every PNG that is not an SVG's copy.
fn figures_in(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| match p.extension().and_then(|e| e.to_str()) {
            Some("svg") => true,
            Some("png") => !p.with_extension("svg").is_file(),
            _ => false,
        })
        .collect();
    // Training curves first, then the rest by name.
    found.sort_by_key(|p| (p.file_stem().is_none_or(|s| s != "history"), p.clone()));
    Ok(found)
}

fn inline(path: &Path, base: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path
        .strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string();
    Ok(html::figure(&bytes, html::mime(&name), &name))
}

/// Grad-CAM overlays: each `clean_<k>.png` next to its `triggered_<k>.png`.
fn gradcam_pairs(dir: &Path, base: &Path) -> Result<String> {
    let gc = dir.join("gradcam");
    let mut h = String::new();
    for clean in figures_in(&gc)? {
        let name = clean
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some(rest) = name.strip_prefix("clean_") else {
            if !name.starts_with("triggered_") {
                h.push_str(&inline(&clean, base)?);
            }
            continue;
        };
        let triggered = gc.join(format!("triggered_{rest}"));
        h.push_str("<div class=\"pair\">");
        h.push_str(&inline(&clean, base)?);
        if triggered.is_file() {
            h.push_str(&inline(&triggered, base)?);
        }
        h.push_str("</div>");
    }
    if h.is_empty() {
        return Ok(h);
    }
    Ok(format!(
        "<h4>Grad-CAM: clean (left) and triggered (right)</h4>{h}"
    ))
}

fn cell_section(out: &Path, manifest: Option<&Manifest>, c: &CellEntry) -> Result<String> {
    let dir = out.join(&c.id);
    let id = format!("cell-{}", c.id);
    let rerun = manifest.and_then(|m| m.rerun_command(out, &c.id));
    let s = match &c.state {
        CellState::Done(s) => s,
        other => {
            let (what, why) = match other {
                CellState::Failed(e) => ("failed", e.clone()),
                CellState::Unreadable(e) => ("unreadable summary", e.clone()),
                CellState::Interrupted => ("not finished", String::new()),
                _ => ("not run", String::new()),
            };
            let mut body = html::pre(&why);
            if let Some(r) = &rerun {
                body.push_str(&format!("<p>Rerun:</p>{}", html::pre(r)));
            }
            return Ok(html::details(
                &id,
                &format!(
                    "<code>{}</code> — <span class=\"bad\">{what}</span>",
                    escape(&c.id)
                ),
                &body,
                false,
            ));
        }
    };
    let mut body = String::new();
    body.push_str(&html::key_values(&numbers(s, c.seconds)));
    let mut figs = String::new();
    for f in figures_in(&dir)? {
        figs.push_str(&inline(&f, out)?);
    }
    body.push_str(&figs);
    body.push_str(&gradcam_pairs(&dir, out)?);
    if !s.notes.is_empty() {
        body.push_str(&format!("<h4>Notes</h4>{}", html::pre(&s.notes.join("\n"))));
    }
    if let Some(r) = &rerun {
        body.push_str(&format!("<h4>Command</h4>{}", html::pre(r)));
    }
    let config = toml::to_string(&s.config).unwrap_or_else(|e| format!("(cannot show: {e})"));
    body.push_str(&format!("<h4>Configuration</h4>{}", html::pre(&config)));
    let headline = super::results::one_line(s);
    Ok(html::details(
        &id,
        &format!("<code>{}</code> — {}", escape(&c.id), escape(&headline)),
        &body,
        false,
    ))
}

/// One cell's numbers, those it has.
fn numbers(s: &Summary, seconds: Option<f64>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("model".into(), format!("{} ({})", s.model, s.fine_tune)),
        (
            "data".into(),
            format!(
                "{} (train {}, validation {}, test {})",
                s.dataset, s.train_size, s.val_size, s.test_size
            ),
        ),
        ("clean accuracy %".into(), pct(Some(s.clean_accuracy))),
        ("F1 macro %".into(), pct(Some(s.f1_macro))),
    ];
    let mut add = |k: &str, val: Option<String>| {
        if let Some(x) = val {
            v.push((k.to_string(), x));
        }
    };
    add("attack", s.attack.clone());
    add("poisoned samples", s.poisoned.clone());
    add(
        "clean baseline accuracy %",
        s.baseline_accuracy.map(|x| pct(Some(x))),
    );
    add(
        "clean-accuracy drop (pts)",
        s.clean_accuracy_drop.map(|x| format!("{x:.2}")),
    );
    add(
        "ASR %",
        s.asr.map(|x| {
            format!(
                "{} ({})",
                pct(Some(x)),
                s.asr_fraction.clone().unwrap_or_default()
            )
        }),
    );
    add(
        "ASR over all triggered inputs %",
        s.asr_all.map(|x| pct(Some(x))),
    );
    add(
        "trigger alone on the clean model, ASR %",
        s.baseline_asr.map(|x| pct(Some(x))),
    );
    if let Some(f) = &s.federation {
        add(
            "federation",
            Some(format!(
                "{} clients, {} rounds, {} ({})",
                f.clients, f.rounds, f.strategy, f.partition
            )),
        );
        add(
            "malicious clients",
            Some(format!("{:?}", f.malicious_clients)),
        );
        add("model poisoning", f.model_poisoning.clone());
        add(
            "excluded clients",
            Some(format!("{:?}", f.detection.flagged_clients)),
        );
        add("exclusion TPR %", f.detection.tpr.map(|x| pct(Some(x))));
        add("exclusion FPR %", f.detection.fpr.map(|x| pct(Some(x))));
        add("privacy spent ε", f.epsilon.map(|e| format!("{e:.3}")));
        add("stopped", f.stopped.clone());
    }
    if let Some(g) = &s.gradcam {
        add(
            "Grad-CAM detection AUROC",
            g.test.auroc.map(|x| format!("{x:.3}")),
        );
    }
    if let Some(d) = &s.defense {
        if let Some(x) = &d.data {
            add("data defense TPR %", x.tpr.map(|t| pct(Some(t))));
            add("data defense FPR %", x.fpr.map(|t| pct(Some(t))));
            add(
                "ASR after retraining %",
                x.retrained_asr.map(|t| pct(Some(t))),
            );
        }
        if let Some(i) = &d.input {
            add("STRIP AUROC", i.auroc.map(|t| format!("{t:.3}")));
        }
        if let Some(m) = &d.model {
            add("ASR after model repair %", m.asr.map(|t| pct(Some(t))));
        }
    }
    add("seed", Some(s.seed.to_string()));
    add(
        "time",
        Some(crate::progress::duration(seconds.unwrap_or(s.elapsed_s))),
    );
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_400_000), "2026-12-04 16:00 UTC");
    }

    #[test]
    fn failed_and_missing_cells_are_listed_not_hidden() {
        let dir = std::env::temp_dir().join(format!("fedsentry-page-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("b=2")).unwrap();
        let ids: Vec<String> = ["a=<1>", "b=2", "c=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut m = Manifest::new(
            "sweep & co",
            Some("fedsentry run x.toml".into()),
            Some("x.toml".into()),
            &ids,
        );
        m.set(
            0,
            CellStatus::Failed,
            None,
            Some("data/x.png: not an image <bad>".into()),
        );
        m.set(1, CellStatus::Finished, Some(1.0), None);
        m.write(&dir).unwrap();
        // A summary from an older schema.
        std::fs::write(dir.join("b=2/summary.json"), "{\"name\": 1}").unwrap();
        let page_path = write(&dir).unwrap();
        let page = std::fs::read_to_string(page_path).unwrap();
        assert!(page.contains("<h1>sweep &amp; co</h1>"));
        assert!(page.contains("Cells without a result (3)"));
        assert!(page.contains("data/x.png: not an image &lt;bad&gt;"));
        assert!(page.contains("unreadable summary"));
        assert!(page.contains("not run"));
        assert!(page.contains("--only c=3"));
        assert!(page.contains("No cell finished."));
        assert!(page.contains("0 of 3 cells finished, 2 failed, 1 not finished"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
