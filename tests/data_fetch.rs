//! `fedsentry data fetch` against an HTTP server on loopback (never the internet): a download
//! cut off mid-way resumes with a Range request, a server that ignores Range still ends with
//! the right file, and a wrong MD5 fails and leaves nothing behind.

mod common;
use common::{bin, tmp};

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the server does with one connection.
#[derive(Clone, Copy)]
enum Reply {
    /// Announce the whole file, send only its first `n` bytes, hang up.
    CutAfter(usize),
    /// Answer a Range request with 206 and the rest.
    Honor,
    /// Send the whole file with 200 whatever was asked.
    IgnoreRange,
    /// Announce the whole file, send its first `n` bytes, then keep the connection open
    /// without sending anything more.
    StallAfter(usize),
}

/// Requests the server saw: (request line, Range header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `content` on 127.0.0.1; connection i gets `plan[i]` (the last one repeats).
fn serve(content: Vec<u8>, plan: Vec<Reply>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let line = head.lines().next().unwrap_or("").to_string();
            let range = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("range")
                    .then(|| v.trim().to_string())
            });
            seen.lock().unwrap().push((line, range.clone()));
            let from = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let n = content.len();
            let reply = plan[i.min(plan.len() - 1)];
            let _ = match (reply, from) {
                (Reply::CutAfter(k), _) => s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .and_then(|_| s.write_all(&content[..k])),
                (Reply::StallAfter(k), _) => {
                    let r = s
                        .write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
                        )
                        .and_then(|_| s.write_all(&content[..k]))
                        .and_then(|_| s.flush());
                    // Hold the connection open, silent, on another thread.
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        drop(s);
                    });
                    r
                }
                (Reply::Honor, Some(f)) => s
                    .write_all(
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {f}-{}/{n}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            n - 1,
                            n - f
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| s.write_all(&content[f..])),
                _ => s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .and_then(|_| s.write_all(&content)),
            };
        }
    });
    (url, log)
}

fn content() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fetch(url: &str, out: &Path, md5: Option<&str>) -> std::process::Output {
    fetch_with(url, out, md5, &[])
}

fn fetch_with(url: &str, out: &Path, md5: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut cmd = bin();
    cmd.args([
        "data",
        "fetch",
        "pneumoniamnist",
        "--base-url",
        url,
        "--out",
        out.to_str().unwrap(),
    ]);
    if let Some(m) = md5 {
        cmd.args(["--md5", m]);
    }
    cmd.args(extra);
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let data = content();
    let md5 = md5_hex(&data);
    let (url, log) = serve(data.clone(), vec![Reply::CutAfter(100_000), Reply::Honor]);
    let dir = tmp("fetch-resume");
    let file = dir.join("pneumoniamnist.npz");
    let part = dir.join("pneumoniamnist.npz.part");

    let first = fetch(&url, &dir, Some(&md5));
    assert!(!first.status.success());
    let err = text(&first.stderr);
    assert!(
        err.contains("interrupted after 100000 of 300000 bytes"),
        "{err}"
    );
    assert!(err.contains("pneumoniamnist.npz.part"), "{err}");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    assert!(!file.exists());

    let second = fetch(&url, &dir, Some(&md5));
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).contains("resumed after 100000"));
    assert_eq!(std::fs::read(&file).unwrap(), data);
    assert!(!part.exists());
    {
        let seen = log.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[0].0.starts_with("GET /pneumoniamnist.npz?download=1 "),
            "{:?}",
            seen[0]
        );
        assert_eq!(seen[0].1, None);
        assert_eq!(seen[1].1.as_deref(), Some("bytes=100000-"));
    }

    // A verified file is not downloaded again.
    let third = fetch(&url, &dir, Some(&md5));
    assert!(third.status.success());
    assert!(text(&third.stdout).contains("already here"));
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[test]
fn server_ignoring_range_restarts_and_wrong_md5_leaves_nothing() {
    let data = content();
    let md5 = md5_hex(&data);
    let (url, _) = serve(
        data.clone(),
        vec![Reply::CutAfter(50_000), Reply::IgnoreRange],
    );
    let dir = tmp("fetch-restart");
    assert!(!fetch(&url, &dir, Some(&md5)).status.success());
    let again = fetch(&url, &dir, Some(&md5));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stdout).contains("resumed"));
    assert_eq!(std::fs::read(dir.join("pneumoniamnist.npz")).unwrap(), data);

    // Without --md5 the official checksum applies, which this content does not have.
    let (url, _) = serve(data, vec![Reply::Honor]);
    let dir = tmp("fetch-mismatch");
    let out = fetch(&url, &dir, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("MD5 mismatch"), "{err}");
    assert!(err.contains("28209eda62fecd6e6a2d98b1501bb15f"), "{err}");
    assert!(err.contains(&md5), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn unknown_set_is_named_with_the_known_ones() {
    let out = bin()
        .args(["data", "fetch", "imagenetmnist", "--out", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown MedMNIST set `imagenetmnist`"),
        "{err}"
    );
    assert!(err.contains("breastmnist"), "{err}");
}

#[test]
fn stalled_download_gives_up_and_keeps_the_part() {
    let data = content();
    let md5 = md5_hex(&data);
    let (url, _log) = serve(data.clone(), vec![Reply::StallAfter(50_000), Reply::Honor]);
    let dir = tmp("fetch-stall");
    let part = dir.join("pneumoniamnist.npz.part");
    let start = std::time::Instant::now();
    let first = fetch_with(&url, &dir, Some(&md5), &["--stall-timeout", "1"]);
    assert!(!first.status.success());
    let err = text(&first.stderr);
    assert!(
        err.contains("stalled after 50000 of 300000 bytes: nothing arrived for 1 s"),
        "{err}"
    );
    assert!(err.contains("pneumoniamnist.npz.part"), "{err}");
    assert!(start.elapsed().as_secs() < 25, "the stall was not detected");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 50_000);
    // The next attempt resumes from the kept bytes.
    let second = fetch(&url, &dir, Some(&md5));
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).contains("resumed after 50000"));
    assert_eq!(std::fs::read(dir.join("pneumoniamnist.npz")).unwrap(), data);
}
