//! Paper vs measured: the published numbers a shipped config reproduces, next to what the sweep
//! measured. An experiment file lists them as `[[reference]]` tables (kept out of the cells, so
//! they change no result and no cache key):
//!
//! ```toml
//! [[reference]]
//! source = "Darzi et al., Table I"           # the table or figure the number comes from
//! only = ["strategy=fedavg", "holds=global"]  # the cells it applies to (`--only` labels)
//! metric = "federation.evasion[attack=pgd(eps=0.03,alpha=0.007,steps=20)].mean_aasr"
//! paper = 0.2752                               # in the summary field's own units (rates 0–1)
//! note = "paper: 100×100 px, 50 rounds × 20 epochs; here 32 px, 20 rounds × 2 epochs"
//! ```
//!
//! `metric` is a path into a cell's `summary.json`: dotted field names, and `[field=value]` to pick
//! the element of a list whose `field` equals `value` (or `[i]` for the i-th element). The cells a
//! reference applies to are grouped by setting (their grid values without the seed); each group
//! gives one row of `paper_vs_measured.csv`: mean ± std over its seeds and the difference
//! measured − paper. A reference whose cells did not run, or whose metric is absent, still gets
//! its row, marked `missing`, so a wrong or missing number is never hidden.

use crate::error::{Error, Result};
use crate::report::repetitions::{MeanStd, SEED_KEY};
use crate::report::summary::Summary;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The experiment file's key for the references.
pub use crate::config::REFERENCE_KEY as KEY;

/// The `[[reference]]` tables of an experiment file's text (`file` names it in errors).
pub fn parse(text: &str, file: &str) -> Result<Vec<Reference>> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        reference: Vec<Reference>,
    }
    let root: toml::Value = toml::from_str(text)
        .map_err(|e| Error::config(file, "", format!("not valid TOML: {e}")))?;
    let Some(v) = root.get(KEY) else {
        return Ok(Vec::new());
    };
    let only: Only = toml::Value::Table(toml::map::Map::from_iter([(KEY.to_string(), v.clone())]))
        .try_into()
        .map_err(|e: toml::de::Error| Error::config(file, KEY, e.message().to_string()))?;
    for (i, r) in only.reference.iter().enumerate() {
        r.validate(file, i)?;
    }
    Ok(only.reference)
}

/// The references of an experiment file.
pub fn load(path: &Path) -> Result<Vec<Reference>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, &path.display().to_string())
}

/// One published number (`[[reference]]` in an experiment file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Where in the paper: "Fed-Safe, Table 1", "MAD, Fig 3a".
    pub source: String,
    /// Cell labels (`key=value`, as `--only` takes them) a cell must carry for the row.
    #[serde(default)]
    pub only: Vec<String>,
    /// Path of the measured value in `summary.json`.
    pub metric: String,
    /// The paper's value, in the units of the summary field.
    pub paper: f64,
    /// How our setting departs from the paper's (scale, data, model), printed with the row.
    #[serde(default)]
    pub note: String,
}

impl Reference {
    pub fn validate(&self, file: &str, i: usize) -> Result<()> {
        if !self.paper.is_finite() {
            return Err(Error::config(
                file,
                format!("reference[{i}].paper"),
                "must be a finite number",
            ));
        }
        parse_path(&self.metric)
            .map(|_| ())
            .map_err(|why| Error::config(file, format!("reference[{i}].metric"), why))
    }
}

/// One row of `paper_vs_measured.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub source: String,
    /// The setting's cell labels without the seed ("" for a file without a grid).
    pub setting: String,
    pub metric: String,
    pub paper: f64,
    pub measured: Option<MeanStd>,
    pub seeds: usize,
    /// Data sets the measured cells ran on (e.g. synthetic vs the real MRI).
    pub dataset: String,
    pub note: String,
}

impl Row {
    pub fn difference(&self) -> Option<f64> {
        self.measured.map(|m| m.mean - self.paper)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    Select { field: String, value: String },
}

/// Splits `a.b[k=v.w].c` on the dots outside brackets.
fn parse_path(path: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = path.trim();
    if rest.is_empty() {
        return Err("is empty".into());
    }
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..end];
        if !name.is_empty() {
            steps.push(Step::Field(name.to_string()));
        }
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix('[') {
            let close = r
                .find(']')
                .ok_or_else(|| format!("`{path}`: a `[` is never closed"))?;
            let inner = &r[..close];
            steps.push(match inner.split_once('=') {
                Some((f, v)) => Step::Select {
                    field: f.trim().to_string(),
                    value: v.trim().to_string(),
                },
                None => Step::Index(inner.trim().parse().map_err(|_| {
                    format!("`{path}`: `[{inner}]` is neither an index nor field=value")
                })?),
            });
            rest = &r[close + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            if r.is_empty() || r.starts_with(['.', '[']) {
                return Err(format!("`{path}`: empty field name"));
            }
            rest = r;
        } else if name.is_empty() {
            return Err(format!("`{path}`: empty field name"));
        }
    }
    Ok(steps)
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The number at `path` in `v`, if there is one.
pub fn lookup(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for step in parse_path(path).ok()? {
        cur = match step {
            Step::Field(f) => cur.get(&f)?,
            Step::Index(i) => cur.get(i)?,
            Step::Select { field, value } => cur
                .as_array()?
                .iter()
                .find(|e| e.get(&field).is_some_and(|x| label(x) == value))?,
        };
    }
    match cur {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The cell's labels without its seed, e.g. `strategy=fedavg,holds=global`.
fn setting_of(cell: &str) -> String {
    let seed = format!("{SEED_KEY}=");
    cell.split(',')
        .filter(|p| !p.starts_with(&seed))
        .collect::<Vec<_>>()
        .join(",")
}

/// A finished cell as the references see it: its id, data set and `summary.json`.
pub struct Measured {
    pub cell: String,
    pub dataset: String,
    pub summary: Value,
}

impl Measured {
    pub fn of(s: &Summary) -> Measured {
        Measured {
            cell: s.cell.clone(),
            dataset: s.dataset.clone(),
            summary: serde_json::to_value(s).unwrap_or(Value::Null),
        }
    }
}

/// One row per reference × setting among the finished cells.
pub fn rows(refs: &[Reference], cells: &[Measured]) -> Vec<Row> {
    let mut out = Vec::new();
    for r in refs {
        let matching: Vec<&Measured> = cells
            .iter()
            .filter(|c| {
                let parts: Vec<&str> = c.cell.split(',').collect();
                r.only.iter().all(|o| parts.contains(&o.as_str()))
            })
            .collect();
        let mut settings: Vec<String> = Vec::new();
        for c in &matching {
            let s = setting_of(&c.cell);
            if !settings.contains(&s) {
                settings.push(s);
            }
        }
        if settings.is_empty() {
            settings.push(r.only.join(","));
        }
        for setting in settings {
            let group: Vec<&Measured> = matching
                .iter()
                .copied()
                .filter(|c| setting_of(&c.cell) == setting)
                .collect();
            let values: Vec<f64> = group
                .iter()
                .filter_map(|c| lookup(&c.summary, &r.metric))
                .collect();
            let mut datasets: Vec<String> = group.iter().map(|c| c.dataset.clone()).collect();
            datasets.dedup();
            out.push(Row {
                source: r.source.clone(),
                setting,
                metric: r.metric.clone(),
                paper: r.paper,
                measured: MeanStd::of(&values),
                seeds: values.len(),
                dataset: datasets.join(" | "),
                note: r.note.clone(),
            });
        }
    }
    out
}

fn num(v: f64) -> String {
    format!("{v:.6}")
}

/// Writes `<out>/paper_vs_measured.csv`; returns the rows (nothing is written without references).
pub fn write(out: &Path, refs: &[Reference], cells: &[Summary]) -> Result<Vec<Row>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let measured: Vec<Measured> = cells.iter().map(Measured::of).collect();
    let rows = rows(refs, &measured);
    write_rows(out, &rows)?;
    Ok(rows)
}

fn write_rows(out: &Path, rows: &[Row]) -> Result<()> {
    let header: Vec<String> = [
        "source",
        "setting",
        "metric",
        "paper",
        "measured_mean",
        "measured_std",
        "seeds",
        "difference",
        "dataset",
        "note",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (m, s) = match r.measured {
                Some(m) => (num(m.mean), num(m.std)),
                None => ("missing".into(), "missing".into()),
            };
            vec![
                r.source.clone(),
                r.setting.clone(),
                r.metric.clone(),
                num(r.paper),
                m,
                s,
                r.seeds.to_string(),
                r.difference().map(num).unwrap_or_else(|| "missing".into()),
                r.dataset.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    crate::io::write_csv(&out.join("paper_vs_measured.csv"), &header, &table)
}

/// The rows as a terminal table (values shown as they are stored, 4 decimals).
pub fn table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.source.clone(),
                r.setting.clone(),
                short_metric(&r.metric),
                format!("{:.4}", r.paper),
                r.measured
                    .map(|m| format!("{:.4} ± {:.4}", m.mean, m.std))
                    .unwrap_or_else(|| "missing".into()),
                r.seeds.to_string(),
                r.difference()
                    .map(|d| format!("{d:+.4}"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    crate::io::table(
        &[
            "source", "setting", "metric", "paper", "measured", "n", "diff",
        ],
        &body,
    )
}

/// The metric path without the leading `federation.` (terminal width).
fn short_metric(m: &str) -> String {
    m.strip_prefix("federation.").unwrap_or(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_fields_list_elements_and_indices() {
        let v = json!({
            "clean_accuracy": 0.9,
            "federation": {"evasion": [
                {"attack": "pgd(eps=0.03,alpha=0.007,steps=20)", "mean_aasr": 0.25},
                {"attack": "fgsm(eps=0.05)", "mean_aasr": 0.5}
            ]},
            "list": [1.5, 2.5]
        });
        assert_eq!(lookup(&v, "clean_accuracy"), Some(0.9));
        assert_eq!(
            lookup(&v, "federation.evasion[attack=fgsm(eps=0.05)].mean_aasr"),
            Some(0.5)
        );
        assert_eq!(
            lookup(
                &v,
                "federation.evasion[attack=pgd(eps=0.03,alpha=0.007,steps=20)].mean_aasr"
            ),
            Some(0.25)
        );
        assert_eq!(lookup(&v, "list[1]"), Some(2.5));
        assert_eq!(lookup(&v, "federation.evasion[attack=bim].mean_aasr"), None);
        assert_eq!(lookup(&v, "nothing"), None);
        assert!(parse_path("a[b=c").is_err());
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("").is_err());
    }

    #[test]
    fn references_parse_apart_from_the_cells() {
        let text = "name = \"x\"\n[[reference]]\nsource = \"Table 1\"\nmetric = \"asr\"\npaper = 0.5\nonly = [\"strategy=fedavg\"]\n";
        let refs = parse(text, "x.toml").unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].only, vec!["strategy=fedavg".to_string()]);
        let typo = parse(&text.replace("paper", "papr"), "x.toml").unwrap_err();
        assert!(typo.to_string().contains("reference"), "{typo}");
        let bad_path = parse(&text.replace("\"asr\"", "\"a[b\""), "x.toml").unwrap_err();
        assert!(
            bad_path.to_string().contains("reference[0].metric"),
            "{bad_path}"
        );
        assert!(parse("name = \"x\"", "x.toml").unwrap().is_empty());
    }

    #[test]
    fn settings_average_their_seeds_and_missing_rows_stay() {
        let cell = |id: &str, acc: f64| Measured {
            cell: id.to_string(),
            dataset: "synthetic".into(),
            summary: json!({ "clean_accuracy": acc }),
        };
        let cells = vec![
            cell("strategy=fedavg,seed=1", 0.8),
            cell("strategy=fedavg,seed=2", 0.6),
            cell("strategy=krum,seed=1", 0.5),
        ];
        let refs = vec![
            Reference {
                source: "Table 1".into(),
                only: vec!["strategy=fedavg".into()],
                metric: "clean_accuracy".into(),
                paper: 0.75,
                note: String::new(),
            },
            Reference {
                source: "Table 2".into(),
                only: vec!["strategy=median".into()],
                metric: "clean_accuracy".into(),
                paper: 0.5,
                note: "never ran".into(),
            },
        ];
        let rows = rows(&refs, &cells);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].setting, "strategy=fedavg");
        assert_eq!(rows[0].seeds, 2);
        let m = rows[0].measured.unwrap();
        assert!((m.mean - 0.7).abs() < 1e-12);
        assert!((rows[0].difference().unwrap() + 0.05).abs() < 1e-12);
        assert_eq!(rows[1].measured, None);
        assert_eq!(rows[1].difference(), None);
        let dir = std::env::temp_dir().join(format!("fedsentry-pvm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_rows(&dir, &rows).unwrap();
        let text = std::fs::read_to_string(dir.join("paper_vs_measured.csv")).unwrap();
        assert!(text.lines().nth(2).unwrap().contains("missing"), "{text}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
