//! The download path against a loopback HTTP server on 127.0.0.1 that serves
//! good, corrupted and truncated files, and files of another data set: only
//! verified data is ever kept.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::write::GzEncoder;
use gpu_mnist::data::download::{
    download_files, sha256_hex, Digest, DownloadError, Progress, RemoteFile,
};
use gpu_mnist::data::{idx, DataSet, FASHION_MNIST, MNIST};

#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// Announces more bytes than it sends, then closes the connection.
    Truncated(Vec<u8>),
    /// Sends the headers and half the body, then stalls for a minute.
    Stall(Vec<u8>),
    /// Announces a terabyte.
    Huge,
    /// Announces no length and sends zeros until the client hangs up.
    Flood,
    /// Announces the body, then sends it a byte every 50 ms.
    Trickle(Vec<u8>),
    /// An HTML page with status 200 (a mirror's error or login page).
    Page(&'static str),
    /// A redirect to this location.
    Redirect(&'static str),
    /// The gzip file sent as gzip-encoded text (a misconfigured server),
    /// which the client decodes.
    EncodedText(Vec<u8>),
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
                Some(Reply::Stall(body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let sent = stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(&body[..body.len() / 2]))
                        .and_then(|()| stream.flush());
                    // Off its own thread, so the next request is still answered.
                    let held = stream.try_clone();
                    std::thread::spawn(move || {
                        let _held = held;
                        std::thread::sleep(std::time::Duration::from_secs(60));
                    });
                    sent
                }
                Some(Reply::Huge) => stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n",
                ),
                Some(Reply::Flood) => {
                    let zeros = vec![0u8; 1 << 16];
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                        .and_then(|()| loop {
                            stream.write_all(&zeros)?;
                        })
                }
                Some(Reply::Trickle(body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).and_then(|()| {
                        for byte in body {
                            stream.write_all(std::slice::from_ref(byte))?;
                            stream.flush()?;
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        Ok(())
                    })
                }
                Some(Reply::Redirect(to)) => stream.write_all(
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                Some(Reply::EncodedText(gz)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        gz.len()
                    );
                    stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(gz))
                }
                Some(Reply::Page(html)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        html.len()
                    );
                    stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(html.as_bytes()))
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
fn tiny_file() -> (RemoteFile, Vec<u8>) {
    let content = idx::encode(&[6], &[1, 2, 3, 4, 5, 6]);
    let file = RemoteFile {
        name: "tiny-labels-idx1-ubyte.gz".to_string(),
        digests: vec![Digest::Content(sha256_hex(&content))],
        max_bytes: content.len() as u64,
    };
    (file, gzip(&content))
}

/// Progress sink for tests that do not look at the events.
fn ignore(_: Progress<'_>) {}

/// Knows no file: a refusal gives the sums.
fn unknown(_: &gpu_mnist::data::download::Received) -> Option<String> {
    None
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
    let files = [file];
    let paths = download_files(
        &target,
        &files,
        std::slice::from_ref(&base),
        &unknown,
        &mut ignore,
    )
    .unwrap();
    assert_eq!(paths, vec![target.join("tiny-labels-idx1-ubyte.gz")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), gz);
    assert_eq!(entries(&target), vec!["tiny-labels-idx1-ubyte.gz"]);
    let mut events = 0;
    download_files(&target, &files, &[base], &unknown, &mut |_| events += 1).unwrap();
    assert_eq!(events, 0, "a verified file reports no progress");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a verified file is not downloaded again"
    );
}

/// Progress events as owned values, to compare after the download.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Started(String, Option<u64>),
    Advanced(String, u64),
    Finished(String),
    Failed(String, String),
}

fn record(events: &mut Vec<Event>) -> impl FnMut(Progress<'_>) + '_ {
    |p| {
        events.push(match p {
            Progress::Started { file, total } => Event::Started(file.to_string(), total),
            Progress::Advanced { file, bytes } => Event::Advanced(file.to_string(), bytes),
            Progress::Finished { file } => Event::Finished(file.to_string()),
            Progress::Failed { file, url, .. } => Event::Failed(file.to_string(), url.to_string()),
        })
    }
}

#[test]
fn progress_reports_start_every_byte_and_finish() {
    // Raw (not gzip) and large enough to arrive in several reads.
    let content = idx::encode(&[300_000], &vec![7; 300_000]);
    let file = RemoteFile {
        name: "big-labels-idx1-ubyte".to_string(),
        digests: vec![Digest::Content(sha256_hex(&content))],
        max_bytes: content.len() as u64,
    };
    let (base, _) = serve(HashMap::from([(
        format!("/mirror/{}", file.name),
        Reply::Body(content.clone()),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let files = [file];
    download_files(
        dir.path(),
        &files,
        &[base],
        &unknown,
        &mut record(&mut events),
    )
    .unwrap();
    let name = &files[0].name;
    let size = content.len() as u64;
    assert_eq!(events[0], Event::Started(name.clone(), Some(size)));
    assert_eq!(events.last(), Some(&Event::Finished(name.clone())));
    let advanced = &events[1..events.len() - 1];
    assert!(advanced.len() > 1, "{events:?}");
    let mut total = 0;
    for event in advanced {
        match event {
            Event::Advanced(file, bytes) if file == name && *bytes > 0 => total += bytes,
            other => panic!("unexpected {other:?} in {events:?}"),
        }
    }
    assert_eq!(total, size);
}

#[test]
fn progress_restarts_on_the_next_mirror() {
    let (file, gz) = tiny_file();
    let (bad, _) = serve(route(Reply::Body(gzip(b"not the labels"))));
    let (good, _) = serve(route(Reply::Body(gz.clone())));
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let files = [file];
    download_files(
        dir.path(),
        &files,
        &[bad, good],
        &unknown,
        &mut record(&mut events),
    )
    .unwrap();
    let starts: Vec<usize> = (0..events.len())
        .filter(|&i| matches!(events[i], Event::Started(..)))
        .collect();
    assert_eq!(starts.len(), 2, "{events:?}");
    let good_bytes: u64 = events[starts[1]..]
        .iter()
        .map(|e| match e {
            Event::Advanced(_, bytes) => *bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(good_bytes, gz.len() as u64);
    assert_eq!(events.last(), Some(&Event::Finished(files[0].name.clone())));
}

#[test]
fn corrupted_mirror_falls_back_to_the_next() {
    let (file, gz) = tiny_file();
    let mut corrupted = idx::encode(&[6], &[1, 2, 3, 4, 5, 7]);
    corrupted = gzip(&corrupted);
    let (bad, bad_hits) = serve(route(Reply::Body(corrupted)));
    let (good, good_hits) = serve(route(Reply::Body(gz.clone())));
    let dir = tempfile::tempdir().unwrap();
    let paths = download_files(dir.path(), &[file], &[bad, good], &unknown, &mut ignore).unwrap();
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
    let err = download_files(
        dir.path(),
        std::slice::from_ref(&file),
        &[bad],
        &unknown,
        &mut ignore,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DownloadError::AllMirrorsFailed { .. }));
    assert!(
        msg.starts_with("tiny-labels-idx1-ubyte.gz: every mirror failed"),
        "{msg}"
    );
    assert!(
        msg.contains("SHA-256 of the decompressed content is")
            && msg.contains(&format!("expected {}", file.digests[0])),
        "{msg}"
    );
    assert!(msg.contains("nothing was written"), "{msg}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

/// A page in the file's place is named as one, not hashed, and that mirror
/// is not asked again.
#[test]
fn an_html_page_served_as_the_file_is_named() {
    let (file, gz) = tiny_file();
    let (page, hits) = serve(route(Reply::Page("<!DOCTYPE html><p>Sign in</p>")));
    let dir = tempfile::tempdir().unwrap();
    let msg = failed_download(&impatient(), dir.path(), &file, &[page]);
    assert!(
        msg.contains("not a gzip file (text/html): the mirror sent a page"),
        "{msg}"
    );
    assert!(!msg.contains("SHA-256"), "{msg}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(entries(dir.path()), Vec::<String>::new());

    // A redirect to a local file is named (ureq said "too many redirects").
    let (redirect, hits) = serve(route(Reply::Redirect("file:///etc/passwd")));
    let msg = failed_download(&impatient(), dir.path(), &file, &[redirect]);
    assert!(
        msg.contains("redirects to 'file:///etc/passwd', which is not followed (only http and https URLs are)"),
        "{msg}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // One to a path on the same server, and one to an http URL, are followed.
    let (file_server, _) = serve(route(Reply::Body(gz.clone())));
    let elsewhere = format!("{file_server}tiny-labels-idx1-ubyte.gz").leak();
    let mut routes = route(Reply::Redirect("/moved/tiny-labels-idx1-ubyte.gz"));
    routes.insert(
        "/moved/tiny-labels-idx1-ubyte.gz".into(),
        Reply::Redirect(elsewhere),
    );
    let (two_hops, _) = serve(routes);
    let moved = tempfile::tempdir().unwrap();
    download_files(
        moved.path(),
        std::slice::from_ref(&file),
        &[two_hops],
        &unknown,
        &mut ignore,
    )
    .unwrap();
    assert_eq!(entries(moved.path()), vec![file.name.clone()]);

    // The file itself, gzip-encoded as text: decoded, verified, kept.
    let (encoded, _) = serve(route(Reply::EncodedText(gz)));
    download_files(
        dir.path(),
        std::slice::from_ref(&file),
        &[encoded],
        &unknown,
        &mut ignore,
    )
    .unwrap();
    assert_eq!(entries(dir.path()), vec![file.name.clone()]);
}

#[test]
fn truncated_transfer_and_missing_file_keep_nothing() {
    let (file, gz) = tiny_file();
    let (truncated, _) = serve(route(Reply::Truncated(gz)));
    let (empty, _) = serve(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let msg = download_files(
        dir.path(),
        &[file],
        &[truncated, empty],
        &unknown,
        &mut ignore,
    )
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
fn an_archive_digest_accepts_only_the_exact_bytes() {
    let content = idx::encode(&[6], &[1, 2, 3, 4, 5, 6]);
    let upstream = gzip(&content);
    let mut recompressed = GzEncoder::new(Vec::new(), flate2::Compression::best());
    recompressed.write_all(&content).unwrap();
    let recompressed = recompressed.finish().unwrap();
    assert_ne!(recompressed, upstream);
    let file = RemoteFile {
        name: "tiny-labels-idx1-ubyte.gz".to_string(),
        digests: vec![Digest::Archive {
            sha256: sha256_hex(&upstream),
            size: upstream.len() as u64,
        }],
        max_bytes: content.len() as u64,
    };
    let (other, _) = serve(route(Reply::Body(recompressed)));
    let dir = tempfile::tempdir().unwrap();
    let files = std::slice::from_ref(&file);
    let msg = download_files(dir.path(), files, &[other], &unknown, &mut ignore)
        .unwrap_err()
        .to_string();
    let expected = format!(
        "expected the {}-byte archive {}",
        upstream.len(),
        sha256_hex(&upstream)
    );
    assert!(msg.contains(&expected), "{msg}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
    let (exact, _) = serve(route(Reply::Body(upstream.clone())));
    let paths = download_files(dir.path(), files, &[exact], &unknown, &mut ignore).unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), upstream);
}

/// Routes serving `set`'s four `.gz` files from `dir`, the file of `replace`
/// (a stem) replaced by `with`.
fn set_routes(
    set: &DataSet,
    dir: &Path,
    replace: Option<(&str, Vec<u8>)>,
) -> HashMap<String, Reply> {
    let mut replace = replace;
    set.files()
        .iter()
        .map(|f| {
            let name = format!("{}.gz", f.stem);
            let body = match replace.take_if(|(stem, _)| *stem == f.stem) {
                Some((_, with)) => with,
                None => std::fs::read(dir.join(&name)).unwrap(),
            };
            (format!("/mirror/{name}"), Reply::Body(body))
        })
        .collect()
}

/// `gpu-mnist download --dataset NAME --dir DIR` against the mirror `base`.
fn cli_download(name: &str, dir: &Path, base: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["download", "--dataset", name, "--dir"])
        .arg(dir)
        .env("GPU_MNIST_MIRRORS", base)
        .output()
        .unwrap()
}

#[test]
fn cli_download_fetches_and_verifies_real_mnist() {
    let Some(shared) = common::mnist_dir() else {
        return;
    };
    let (base, _) = serve(set_routes(&MNIST, &shared, None));
    let dir = tempfile::tempdir().unwrap();
    let out = cli_download("mnist", dir.path(), &base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("verified ").count(), 4, "{stdout}");
    let data = MNIST.load(Some(dir.path()), None).unwrap();
    assert_eq!((data.train.len, data.test.len), (60_000, 10_000));
}

#[test]
fn cli_download_fetches_and_verifies_fashion_mnist() {
    let Some(debian) = common::fashion_mnist_dir() else {
        return;
    };
    // Debian's files are recompressed (no file name in the gzip header), so
    // they pass by their content's sums, not the upstream archives'.
    let (base, _) = serve(set_routes(&FASHION_MNIST, &debian, None));
    let dir = tempfile::tempdir().unwrap();
    let out = cli_download("fashion-mnist", dir.path(), &base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("verified ").count(), 4, "{stdout}");
    let data = FASHION_MNIST.load(Some(dir.path()), None).unwrap();
    assert_eq!((data.train.len, data.test.len), (60_000, 10_000));
    // The first test image is an ankle boot, the first training image too.
    assert_eq!((data.test.labels[0], data.train.labels[0]), (9, 9));
}

#[test]
fn fashion_download_refuses_a_corrupt_file_and_another_data_sets_file() {
    let (Some(debian), Some(mnist)) = (common::fashion_mnist_dir(), common::mnist_dir()) else {
        return;
    };
    let labels = "train-labels-idx1-ubyte";
    let path = |dir: &Path| dir.join(format!("{labels}.gz"));
    let mut content =
        idx::decompress_if_gzip(std::fs::read(path(&debian)).unwrap(), u64::MAX).unwrap();
    content[100] = (content[100] + 1) % 10;
    let wrong: [(Vec<u8>, String); 2] = [
        (
            gzip(&content),
            format!(
                "SHA-256 of the decompressed content is {}",
                sha256_hex(&content)
            ),
        ),
        (
            std::fs::read(path(&mnist)).unwrap(),
            format!("this is MNIST's {labels}, not the file asked for"),
        ),
    ];
    for (body, message) in wrong {
        let (base, _) = serve(set_routes(&FASHION_MNIST, &debian, Some((labels, body))));
        let dir = tempfile::tempdir().unwrap();
        let out = cli_download("fashion-mnist", dir.path(), &base);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: {labels}.gz: every mirror failed")),
            "{err}"
        );
        assert!(err.contains(&message), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
        assert!(!path(dir.path()).exists());
    }
}

/// Limits short enough for a test: a stall of half a second gives up.
fn impatient() -> gpu_mnist::data::download::NetworkLimits {
    gpu_mnist::data::download::NetworkLimits {
        connect: std::time::Duration::from_secs(2),
        stall: std::time::Duration::from_millis(500),
        rounds: 2,
        backoff: std::time::Duration::from_millis(10),
        min_rate: 100,
    }
}

/// The one-line error of a download of `file` from `mirrors` that must fail.
fn failed_download(
    limits: &gpu_mnist::data::download::NetworkLimits,
    dir: &Path,
    file: &RemoteFile,
    mirrors: &[String],
) -> String {
    gpu_mnist::data::download::download_files_within(
        limits,
        dir,
        std::slice::from_ref(file),
        mirrors,
        &unknown,
        &mut ignore,
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn a_stalled_mirror_gives_way_to_the_next_within_the_stall_limit() {
    let (file, gz) = tiny_file();
    let (stalled, _) = serve(route(Reply::Stall(gz.clone())));
    let (good, _) = serve(route(Reply::Body(gz.clone())));
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let start = std::time::Instant::now();
    gpu_mnist::data::download::download_files_within(
        &impatient(),
        dir.path(),
        std::slice::from_ref(&file),
        &[stalled.clone(), good],
        &unknown,
        &mut record(&mut events),
    )
    .unwrap();
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    // The stalled mirror is named when it is given up.
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Failed(..)))
        .collect();
    assert_eq!(
        failed,
        [&Event::Failed(
            file.name.clone(),
            format!("{stalled}{}", file.name)
        )]
    );
    assert_eq!(std::fs::read(dir.path().join(&file.name)).unwrap(), gz);
}

#[test]
fn a_mirror_sending_more_than_the_file_is_cut_off() {
    let (file, _) = tiny_file();
    for reply in [Reply::Huge, Reply::Flood] {
        let (base, hits) = serve(route(reply));
        let dir = tempfile::tempdir().unwrap();
        let err = failed_download(&impatient(), dir.path(), &file, &[base]);
        assert!(
            err.contains("announces 1000000000000 bytes, more than the file's 1038")
                || err.contains("sent more than the file's 1038 bytes"),
            "{err}"
        );
        // Not asked again: it would send too much again.
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(entries(dir.path()).is_empty());
    }
}

#[test]
fn a_trickling_mirror_is_given_up_once_it_falls_under_the_minimum_rate() {
    let (file, gz) = tiny_file();
    let (base, _) = serve(route(Reply::Trickle(gz)));
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let once = gpu_mnist::data::download::NetworkLimits {
        rounds: 1,
        ..impatient()
    };
    let err = failed_download(&once, dir.path(), &file, &[base]);
    // 20 bytes a second never stalls for 500 ms, but is under 100 bytes/s.
    assert!(err.contains("too slow: "), "{err}");
    assert!(err.contains("under 100 bytes/s"), "{err}");
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_missing_file_or_a_malformed_mirror_is_not_asked_again() {
    let (file, _) = tiny_file();
    let (base, hits) = serve(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let mirrors = [base, "not a url".to_string()];
    let err = failed_download(&impatient(), dir.path(), &file, &mirrors);
    // Two rounds, but a 404 and a URL that cannot be parsed are final.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(err.matches("404").count(), 1, "{err}");
    assert_eq!(err.matches("not a url/").count(), 1, "{err}");
    assert!(entries(dir.path()).is_empty());
}
