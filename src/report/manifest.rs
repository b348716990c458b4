//! The sweep's plan and how far it got: `<out>/sweep.json`, rewritten whenever a cell starts,
//! finishes or fails. The HTML report reads it to list cells that failed (with the error) or
//! never ran next to the finished ones, and to print the command that made the sweep.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE: &str = "sweep.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Not started (yet, or ever: the sweep stopped first).
    Waiting,
    /// Started; still running, or the process was killed.
    Running,
    Finished,
    /// A finished result of an earlier run with the same configuration was reused.
    Reused,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedCell {
    pub id: String,
    pub status: CellStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall-clock seconds the cell took in this sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The command line that started the sweep, when known.
    #[serde(default)]
    pub command: Option<String>,
    /// The experiment file the cells come from, when there is one.
    #[serde(default)]
    pub experiment: Option<PathBuf>,
    /// Seconds since the Unix epoch when the sweep started.
    pub started_unix: u64,
    pub cells: Vec<PlannedCell>,
}

impl Manifest {
    pub fn new(
        name: &str,
        command: Option<String>,
        experiment: Option<PathBuf>,
        ids: &[String],
    ) -> Self {
        Manifest {
            name: name.to_string(),
            command,
            experiment,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            cells: ids
                .iter()
                .map(|id| PlannedCell {
                    id: id.clone(),
                    status: CellStatus::Waiting,
                    error: None,
                    seconds: None,
                })
                .collect(),
        }
    }

    /// Keeps the cells an earlier invocation planned in the same folder (e.g. another
    /// `--only` part of the grid) and did not plan now, with their last status, ahead of this
    /// plan's cells in their old order. Returns the index of each of this plan's cells.
    pub fn keep_earlier(&mut self, earlier: Manifest) -> Vec<usize> {
        let mut cells = earlier.cells;
        let mut index = Vec::with_capacity(self.cells.len());
        for c in self.cells.drain(..) {
            match cells.iter().position(|o| o.id == c.id) {
                Some(i) => {
                    cells[i] = c;
                    index.push(i);
                }
                None => {
                    index.push(cells.len());
                    cells.push(c);
                }
            }
        }
        self.cells = cells;
        index
    }

    /// Records cell `i`'s new status.
    pub fn set(
        &mut self,
        i: usize,
        status: CellStatus,
        seconds: Option<f64>,
        error: Option<String>,
    ) {
        if let Some(c) = self.cells.get_mut(i) {
            c.status = status;
            c.seconds = seconds;
            c.error = error;
        }
    }

    pub fn count(&self, status: CellStatus) -> usize {
        self.cells.iter().filter(|c| c.status == status).count()
    }

    /// The command that reruns one cell: the sweep's experiment file narrowed with `--only`
    /// to the cell's folder name (None without an experiment file).
    pub fn rerun_command(&self, out: &Path, cell: &str) -> Option<String> {
        let file = self.experiment.as_ref()?;
        let only: String = cell
            .split(',')
            .filter(|p| p.contains('='))
            .map(|p| format!(" --only {}", shell_word(p)))
            .collect();
        Some(format!(
            "fedsentry run {} --out {}{only}",
            shell_word(&file.display().to_string()),
            shell_word(&out.display().to_string())
        ))
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        crate::io::write_json(&out.join(FILE), self)
    }

    /// The sweep's manifest, or None when `out` has none (sweeps made before it existed).
    pub fn read(out: &Path) -> Result<Option<Manifest>> {
        let path = out.join(FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::data(&path, format!("not a sweep manifest: {e}")))
    }
}

/// A word as a POSIX shell reads it: quoted only when it needs to be.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_cells_rerun_with_only() {
        let dir = std::env::temp_dir().join(format!("fedsentry-manifest-{}", std::process::id()));
        let ids = vec![
            "arch=small_cnn,fine_tune=full".to_string(),
            "run".to_string(),
        ];
        let mut m = Manifest::new(
            "demo",
            Some("fedsentry run x.toml".into()),
            Some(PathBuf::from("configs/my sweep.toml")),
            &ids,
        );
        m.set(0, CellStatus::Finished, Some(2.5), None);
        m.set(1, CellStatus::Failed, None, Some("boom".into()));
        m.write(&dir).unwrap();
        let back = Manifest::read(&dir).unwrap().unwrap();
        assert_eq!(back.count(CellStatus::Finished), 1);
        assert_eq!(back.cells[1].error.as_deref(), Some("boom"));
        assert_eq!(
            back.rerun_command(Path::new("runs/x"), &ids[0]).unwrap(),
            "fedsentry run 'configs/my sweep.toml' --out runs/x --only arch=small_cnn --only fine_tune=full"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        // A later invocation planning part of the grid keeps the rest of the record.
        let mut later = Manifest::new("demo", None, None, &["c".to_string(), "run".to_string()]);
        assert_eq!(later.keep_earlier(back), vec![2, 1]);
        let ids: Vec<&str> = later.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["arch=small_cnn,fine_tune=full", "run", "c"]);
        assert_eq!(later.cells[0].status, CellStatus::Finished);
        assert_eq!(later.cells[1].status, CellStatus::Waiting);
        std::fs::write(dir.join(FILE), "{").unwrap();
        let e = Manifest::read(&dir).unwrap_err().to_string();
        assert!(e.contains("sweep.json"), "{e}");
        assert!(Manifest::read(&dir.join("none")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
