//! `gpu-mnist serve`: the page's files with the types a browser needs, the
//! data set's files under `data/`, nothing outside the page's directory, and
//! one clear line when the page is not built.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `serve` and its address; killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(site: &Path, data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["serve", "--port", "0", "--no-download", "--dir"])
        .arg(site)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .strip_prefix("serving http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, address }
}

/// The status, headers and body of a raw HTTP/1.0 request (raw, so that no
/// client cleans up the path first).
fn request(address: &str, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

fn content_type(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
}

#[test]
fn the_page_and_the_data_are_served_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (site, data) = (dir.path().join("site"), dir.path().join("data"));
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html>page").unwrap();
    std::fs::write(site.join("pkg/engine.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "not for the web").unwrap();
    // The page checks the files' sums itself: any bytes are served as found,
    // under their canonical .gz names whatever they are called on disk.
    for (name, bytes) in [
        ("train-images-idx3-ubyte.gz", "train images"),
        ("train-labels-idx1-ubyte.gz", "train labels"),
        ("t10k-images-idx3-ubyte", "test images"),
        ("t10k-labels-idx1-ubyte.gz", "test labels"),
    ] {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let server = serve(&site, &data);
    let get = |path: &str| request(&server.address, "GET", path);

    let (status, head, body) = get("/");
    assert_eq!(status, 200);
    assert_eq!(content_type(&head), "text/html; charset=utf-8");
    assert_eq!(body, b"<!doctype html>page");
    let (status, head, body) = get("/pkg/engine.wasm?v=1");
    assert_eq!((status, content_type(&head)), (200, "application/wasm"));
    assert_eq!(body, b"\0asm\x01\0\0\0");
    let (status, head, body) = get("/data/t10k-images-idx3-ubyte.gz");
    assert_eq!(
        (status, content_type(&head)),
        (200, "application/octet-stream")
    );
    assert_eq!(body, b"test images");
    for outside in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/missing.js",
    ] {
        let (status, _, body) = get(outside);
        assert_eq!(status, 404, "{outside}");
        assert_eq!(body, b"not found", "{outside}");
    }
    let (status, _, _) = request(&server.address, "POST", "/");
    assert_eq!(status, 405);
}

#[test]
fn a_page_not_built_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["serve", "--port", "0", "--no-download", "--dir"])
        .arg(dir.path().join("dist"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "error: {} holds no index.html: build the page first with `bash web/build.sh`\n",
            dir.path().join("dist").display()
        )
    );
}
