//! Downloads with MD5 verification that resume after an interruption: what has arrived is kept
//! in `<file>.part`, and the next attempt asks the server for the rest (HTTP Range). The file
//! only takes its final name once its MD5 matches, so a finished file is always a verified one.
//! A body that stops arriving (no byte for [`STALL`], or `--stall-timeout`) ends the attempt
//! with an error that keeps the `.part`, rather than waiting forever.

use crate::error::{Error, Result};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The file was already there with the right MD5; nothing was downloaded.
    AlreadyPresent,
    /// Downloaded `bytes` in all, the first `resumed_from` of them in an earlier attempt.
    Downloaded { bytes: u64, resumed_from: u64 },
}

/// Hex MD5 of a file.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// The partial download beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // Statuses are handled here (206 vs 200 vs 416).
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// How long a download may go without receiving a byte before it is given up as stalled.
pub const STALL: Duration = Duration::from_secs(60);

/// [`download_with`] with the default stall timeout.
pub fn download(
    url: &str,
    dest: &Path,
    md5: &str,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetched> {
    download_with(url, dest, md5, STALL, progress)
}

/// Downloads `url` to `dest` unless `dest` already has MD5 `md5`. `progress(done, total)` is
/// called as bytes arrive. On a broken connection, or when no byte arrives for `stall`, the
/// bytes so far stay in `<dest>.part` and the error says so; calling again resumes. On an MD5
/// mismatch the download is deleted.
pub fn download_with(
    url: &str,
    dest: &Path,
    md5: &str,
    stall: Duration,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetched> {
    if md5.len() != 32 || !md5.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "an MD5 is 32 hex digits, got `{md5}`"
        )));
    }
    let md5 = md5.to_ascii_lowercase();
    if dest.is_file() {
        let have = md5_file(dest)?;
        if have == md5 {
            return Ok(Fetched::AlreadyPresent);
        }
        return Err(Error::data(
            dest,
            format!(
                "already exists with MD5 {have}, not the expected {md5}; move it away to download again"
            ),
        ));
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let part = part_path(dest);
    let mut start = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent().get(url);
    if start > 0 {
        req = req.header("Range", format!("bytes={start}-"));
    }
    let resp = req
        .call()
        .map_err(|e| Error::data(dest, format!("cannot download {url}: {e}")))?;
    let status = resp.status().as_u16();
    let resumed = match status {
        206 => {
            // Trust a partial answer only when it starts where our copy ends.
            let from = resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if from != Some(start) {
                return Err(Error::data(
                    dest,
                    format!(
                        "{url} answered the request for bytes {start}- with range {from:?}; delete {} to start over",
                        part.display()
                    ),
                ));
            }
            true
        }
        200 => false,
        // Nothing left to send: the partial file is already whole.
        416 if start > 0 => return finish(dest, &part, &md5, start, start),
        other => {
            return Err(Error::data(dest, format!("{url} answered HTTP {other}")));
        }
    };
    if !resumed {
        start = 0;
    }
    let total = resp.body().content_length().map(|n| n + start);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    // The body is read on its own thread so that a read that never returns (a server that
    // stops sending without closing) can be given up on here.
    let mut reader = resp.into_body().into_reader();
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        loop {
            let mut buf = vec![0u8; 1 << 16];
            let sent = match reader.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    tx.send(Ok(buf)).is_ok() && n > 0
                }
                Err(e) => tx.send(Err(e)).map(|_| false).unwrap_or(false),
            };
            if !sent {
                break;
            }
        }
    });
    let mut done = start;
    progress(done, total);
    let so_far = |done: u64| {
        format!(
            "after {done}{} bytes",
            total.map(|t| format!(" of {t}")).unwrap_or_default()
        )
    };
    loop {
        let why = match rx.recv_timeout(stall) {
            Ok(Ok(chunk)) if chunk.is_empty() => break,
            Ok(Ok(chunk)) => {
                file.write_all(&chunk).map_err(|e| Error::io(&part, e))?;
                done += chunk.len() as u64;
                progress(done, total);
                continue;
            }
            Ok(Err(e)) => format!("interrupted {} ({e})", so_far(done)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                format!("interrupted {}", so_far(done))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => format!(
                "stalled {}: nothing arrived for {} s",
                so_far(done),
                stall.as_secs_f64()
            ),
        };
        file.flush().map_err(|e| Error::io(&part, e))?;
        return Err(Error::data(
            dest,
            format!(
                "download from {url} {why}; they are kept in {}: run the same command again to resume",
                part.display()
            ),
        ));
    }
    file.flush().map_err(|e| Error::io(&part, e))?;
    drop(file);
    finish(dest, &part, &md5, done, if resumed { start } else { 0 })
}

/// Verifies the finished `.part` and gives it its final name.
fn finish(dest: &Path, part: &Path, md5: &str, bytes: u64, resumed_from: u64) -> Result<Fetched> {
    let got = md5_file(part)?;
    if got != md5 {
        // A corrupt file must not be resumed from either.
        let _ = std::fs::remove_file(part);
        return Err(Error::data(
            dest,
            format!(
                "MD5 mismatch: expected {md5}, downloaded {bytes} bytes with MD5 {got}; the download was deleted"
            ),
        ));
    }
    std::fs::rename(part, dest).map_err(|e| Error::io(dest, e))?;
    Ok(Fetched::Downloaded {
        bytes,
        resumed_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_known_bytes_and_part_name() {
        let dir = std::env::temp_dir().join(format!("fedsentry-md5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc.npz");
        std::fs::write(&f, b"abc").unwrap();
        // RFC 1321 test suite.
        assert_eq!(md5_file(&f).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(part_path(&f), dir.join("abc.npz.part"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
