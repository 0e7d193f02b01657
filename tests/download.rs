//! The download path against a loopback HTTP server on 127.0.0.1 that serves
//! good, corrupted and truncated files: only verified data is ever kept.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::write::GzEncoder;
use gpu_mnist::data::download::{download_files, sha256_hex, DownloadError};
use gpu_mnist::data::idx;
use gpu_mnist::data::mnist::MnistFile;

#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// Announces more bytes than it sends, then closes the connection.
    Truncated(Vec<u8>),
}

/// Serves `routes` (path -> reply) on 127.0.0.1 until the test process ends;
/// unknown paths get 404. Returns the base URL and a request counter.
fn serve(routes: HashMap<String, Reply>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/mirror/", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let _ = match routes.get(&path) {
                Some(Reply::Body(body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(body))
                }
                Some(Reply::Truncated(body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(&body[..body.len() / 2]))
                }
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    (base, hits)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A small labels file and its description with the SHA-256 of its content.
fn tiny_file() -> (MnistFile, Vec<u8>) {
    let content = idx::encode(&[6], &[1, 2, 3, 4, 5, 6]);
    let file = MnistFile {
        stem: "tiny-labels-idx1-ubyte",
        magic: idx::LABELS_MAGIC,
        sha256: Box::leak(sha256_hex(&content).into_boxed_str()),
    };
    (file, gzip(&content))
}

fn route(reply: Reply) -> HashMap<String, Reply> {
    HashMap::from([("/mirror/tiny-labels-idx1-ubyte.gz".to_string(), reply)])
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn good_download_is_verified_kept_and_not_fetched_again() {
    let (file, gz) = tiny_file();
    let (base, hits) = serve(route(Reply::Body(gz.clone())));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cache");
    let paths = download_files(&target, &[file], std::slice::from_ref(&base), false).unwrap();
    assert_eq!(paths, vec![target.join("tiny-labels-idx1-ubyte.gz")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), gz);
    assert_eq!(entries(&target), vec!["tiny-labels-idx1-ubyte.gz"]);
    download_files(&target, &[file], &[base], false).unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a verified file is not downloaded again"
    );
}

#[test]
fn corrupted_mirror_falls_back_to_the_next() {
    let (file, gz) = tiny_file();
    let mut corrupted = idx::encode(&[6], &[1, 2, 3, 4, 5, 7]);
    corrupted = gzip(&corrupted);
    let (bad, bad_hits) = serve(route(Reply::Body(corrupted)));
    let (good, good_hits) = serve(route(Reply::Body(gz.clone())));
    let dir = tempfile::tempdir().unwrap();
    let paths = download_files(dir.path(), &[file], &[bad, good], false).unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), gz);
    assert_eq!(
        (
            bad_hits.load(Ordering::SeqCst),
            good_hits.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[test]
fn hash_mismatch_everywhere_keeps_nothing() {
    let (file, _) = tiny_file();
    let (bad, _) = serve(route(Reply::Body(gzip(b"not the labels"))));
    let dir = tempfile::tempdir().unwrap();
    let err = download_files(dir.path(), &[file], &[bad], false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DownloadError::AllMirrorsFailed { .. }));
    assert!(
        msg.starts_with("tiny-labels-idx1-ubyte.gz: every mirror failed"),
        "{msg}"
    );
    assert!(
        msg.contains("SHA-256 of the decompressed content is") && msg.contains(file.sha256),
        "{msg}"
    );
    assert!(msg.contains("nothing was written"), "{msg}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn truncated_transfer_and_missing_file_keep_nothing() {
    let (file, gz) = tiny_file();
    let (truncated, _) = serve(route(Reply::Truncated(gz)));
    let (empty, _) = serve(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let msg = download_files(dir.path(), &[file], &[truncated, empty], false)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("transfer failed") || msg.contains("not a valid gzip stream"),
        "{msg}"
    );
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn cli_download_fetches_and_verifies_real_mnist() {
    let Some(shared) = common::mnist_dir() else {
        return;
    };
    let routes: HashMap<String, Reply> = gpu_mnist::data::mnist::FILES
        .iter()
        .map(|f| {
            let name = format!("{}.gz", f.stem);
            (
                format!("/mirror/{name}"),
                Reply::Body(std::fs::read(shared.join(&name)).unwrap()),
            )
        })
        .collect();
    let (base, _) = serve(routes);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["download", "--dir"])
        .arg(dir.path())
        .env("GPU_MNIST_MIRRORS", &base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("verified ").count(), 4, "{stdout}");
    let data = gpu_mnist::data::mnist::load(Some(dir.path()), false).unwrap();
    assert_eq!((data.train.len, data.test.len), (60_000, 10_000));
}
