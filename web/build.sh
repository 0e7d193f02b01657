#!/usr/bin/env bash
# Builds the page into web/dist: the engine for wasm32 (web/src), its
# JavaScript bindings by the wasm-bindgen CLI of exactly the version
# Cargo.lock pins (installed from crates.io when missing, about 9 minutes),
# and the static files. Serve it with `gpu-mnist serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  # --locked fails here: the lock file names a webpki-roots this registry lacks.
  cargo install wasm-bindgen-cli --version "=$version"
fi
cargo build --release --target wasm32-unknown-unknown -p gpu-mnist-web
rm -rf web/dist.new
mkdir -p web/dist.new
wasm-bindgen --target web --no-typescript --out-dir web/dist.new/pkg \
  target/wasm32-unknown-unknown/release/gpu_mnist_web.wasm
cp web/index.html web/app.js web/style.css web/dist.new/
rm -rf web/dist
mv web/dist.new web/dist
echo "built web/dist ($(du -sh web/dist | cut -f1)); serve it with: cargo run --release -- serve"
