#!/usr/bin/env bash
# The browser's tests, in headless Chromium (Debian's chromium and
# chromium-driver, which .ci/setup installs): the op conformance suite on
# WebGPU (SwiftShader; Dawn's Tint compiles every kernel) and on the wasm
# CPU executor, through wasm-bindgen-test-runner; then the page's tests
# (web/tests, playwright-core) against the native binary. Needs the page
# built (bash web/build.sh, which also installs the test runner) and the
# release binary (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
# The WebGPU matmul suite takes about a minute on SwiftShader.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-900}"
cargo test --release --target wasm32-unknown-unknown --lib --no-default-features conformance
cd web
npm ci --no-audit --no-fund
npm test
