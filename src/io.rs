//! Writing files: atomic JSON and CSV writes, CSV rows from records, grid-parameter columns and
//! the aligned console table. A leaf: every layer that writes a file uses it.

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    write_atomic(path, text.as_bytes())
}

/// Writes via a temporary file and rename, so a killed run never leaves a half-written file
/// (and processes writing the same file at once never mix their bytes).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_beside(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A temporary name beside `path`, unique to this process and call: write it, then rename.
pub fn temp_beside(path: &Path) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("in-memory csv");
    for r in rows {
        w.write_record(r).expect("in-memory csv");
    }
    w.into_inner().expect("in-memory csv")
}

pub type Params = serde_json::Map<String, serde_json::Value>;

/// Grid parameters as CSV columns: every key any row has, in first-seen order.
pub fn param_keys<'a>(rows: impl IntoIterator<Item = &'a Params>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for p in rows {
        for k in p.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// One row's values for `keys`: strings bare, numbers as written, missing ones empty.
pub fn param_values(keys: &[String], params: &Params) -> Vec<String> {
    keys.iter()
        .map(|k| match params.get(k) {
            Some(serde_json::Value::String(v)) => v.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect()
}

/// A CSV header: the grid's parameter keys, then the table's own columns.
pub fn header(keys: &[String], columns: &[&str]) -> Vec<String> {
    keys.iter()
        .cloned()
        .chain(columns.iter().map(|c| c.to_string()))
        .collect()
}

pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    write_atomic(path, &csv_bytes(header, rows))
}

/// One CSV row per record, columns from the record's field names (None → empty cell).
pub fn write_rows<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.serialize(r)
            .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// A plain aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// Every file under `dir` (recursively) whose name ends in `.<ext>`, sorted by path.
pub fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A CSV file as its header and rows of text (rows may be shorter or longer than the header).
pub fn read_csv_text(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let err = |e: csv::Error| Error::data(path, e.to_string());
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(err)?;
    let header: Vec<String> = r.headers().map_err(err)?.iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|row| {
            row.map(|x| x.iter().map(String::from).collect())
                .map_err(err)
        })
        .collect::<Result<_>>()?;
    Ok((header, rows))
}

/// Whether `derived` (a figure drawn from a table, a PNG rendered from an SVG) is missing or
/// older than `source`.
pub fn is_stale(derived: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(derived), modified(source)) {
        (Some(d), Some(s)) => d < s,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_table() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y");
    }
}
