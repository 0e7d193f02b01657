//! `gpu-mnist serve`: the web page (`web/dist`, built by `web/build.sh`) and
//! the data set's four files over HTTP, on this machine only unless asked.
//! The page checks the files' SHA-256 itself, so they are served as found.

use std::path::{Component, Path, PathBuf};

use super::args::ServeArgs;
use super::commands::{locate_data, CliError};

/// The page's files and the data set's.
struct Site {
    root: PathBuf,
    /// `data/<canonical name>.gz` and the file found for it.
    data: Vec<(String, PathBuf)>,
}

pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let root = args.dir.clone();
    if !root.join("index.html").is_file() {
        return Err(format!(
            "{} holds no index.html: build the page first with `bash web/build.sh`",
            root.display()
        )
        .into());
    }
    let found = locate_data(&args.data)?;
    let data = args
        .data
        .dataset
        .0
        .files()
        .iter()
        .zip(found)
        .map(|(file, path)| (format!("data/{}.gz", file.stem), path))
        .collect();
    let site = Site { root, data };
    let server = tiny_http::Server::http((args.host.as_str(), args.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let address = server
        .server_addr()
        .to_ip()
        .ok_or("the server has no IP address")?;
    // Printed whole and flushed, so a script can read the port chosen for 0.
    outln!("serving http://{address}/ (Ctrl-C stops)");
    for request in server.incoming_requests() {
        let response = site.respond(request.method(), request.url());
        // A client that went away is its own business.
        let _ = request.respond(response);
    }
    Ok(())
}

type Response = tiny_http::Response<Box<dyn std::io::Read + Send>>;

impl Site {
    fn respond(&self, method: &tiny_http::Method, url: &str) -> Response {
        if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
            return text(405, "only GET and HEAD");
        }
        let path = url.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_start_matches('/');
        let path = if path.is_empty() { "index.html" } else { path };
        let file = match self.data.iter().find(|(name, _)| name == path) {
            Some((_, file)) => file.clone(),
            None => match self.under_root(path) {
                Some(file) => file,
                None => return text(404, "not found"),
            },
        };
        match std::fs::File::open(&file) {
            Ok(f) if file.is_file() => {
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type(&file))
                        .expect("a valid header");
                tiny_http::Response::from_file(f)
                    .with_header(header)
                    .boxed()
            }
            _ => text(404, "not found"),
        }
    }

    /// `path` inside the page's directory: plain names only, no `..`.
    fn under_root(&self, path: &str) -> Option<PathBuf> {
        let relative = Path::new(path);
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| self.root.join(relative))
    }
}

fn text(status: u16, body: &str) -> Response {
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .boxed()
}

/// By extension; `.wasm` must be `application/wasm` for streaming compilation.
fn content_type(path: &Path) -> &'static [u8] {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => b"text/html; charset=utf-8",
        Some("js") => b"text/javascript; charset=utf-8",
        Some("css") => b"text/css; charset=utf-8",
        Some("wasm") => b"application/wasm",
        Some("json") => b"application/json",
        Some("png") => b"image/png",
        Some("svg") => b"image/svg+xml",
        _ => b"application/octet-stream",
    }
}
