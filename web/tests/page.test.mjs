// The page in headless Chromium (Debian's /usr/bin/chromium, WebGPU on
// SwiftShader), driven by playwright-core, against the native binary on the
// same data: training on WebGPU and on the wasm CPU, checkpoints both ways,
// and a drawn digit. Needs web/dist (bash web/build.sh), the release binary
// (cargo build --release) and MNIST ($GPU_MNIST_DATA or ../shared/data/mnist).
// Run: cd web && npm test
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const bin = process.env.GPU_MNIST_BIN ?? join(root, "target/release/gpu-mnist");
const dataDir = process.env.GPU_MNIST_DATA ?? join(root, "../shared/data/mnist");
const scratch = mkdtempSync(join(tmpdir(), "gpu-mnist-web-"));
// The run: the book's MLP, 1 epoch on the first 5,000 images, seed 3.
const RUN = ["--epochs", "1", "--train-samples", "5000", "--seed", "3"];
const QUERY = "model=mlp&epochs=1&samples=5000&seed=3&autorun=1";

let server;
let base;
let browser;

function native(args) {
  return execFileSync(bin, [...args, "--data-dir", dataDir], { cwd: scratch, encoding: "utf8" });
}

// Test accuracy of a checkpoint as `gpu-mnist evaluate` reports it.
function nativeEvaluation(checkpoint) {
  const json = join(scratch, "evaluation.json");
  native(["evaluate", "--backend", "cpu", "--checkpoint", checkpoint, "--json", json, "--overwrite"]);
  return JSON.parse(readFileSync(json, "utf8")).test_acc;
}

before(async () => {
  server = spawn(bin, ["serve", "--port", "0", "--dir", join(root, "web/dist"), "--data-dir", dataDir],
    { stdio: ["ignore", "pipe", "inherit"] });
  base = await new Promise((ok, fail) => {
    let out = "";
    server.stdout.on("data", (chunk) => {
      out += chunk;
      const url = out.match(/serving (http:\/\/\S+)/);
      if (url) ok(url[1]);
    });
    server.on("exit", (code) => fail(new Error(`gpu-mnist serve exited with ${code}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

// A page whose script errors fail the test that opened it.
async function open(query) {
  const page = await browser.newPage({ acceptDownloads: true });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}?${query}`);
  return { page, errors };
}

// The page's result once it has one, or an error saying where the page is.
async function settled(page, timeout = 300_000) {
  try {
    await page.waitForFunction(() => window.gpuMnistResult !== undefined, null, { timeout });
  } catch (e) {
    throw new Error(`${e.message}\npage: ${page.url()}\npage log:\n${await page.textContent("#log")}\n` +
                    `device: ${await page.textContent("#device")}\n` +
                    `data: ${await page.textContent("#data-status")}`);
  }
  return page.evaluate(() => window.gpuMnistResult);
}

async function result(page, timeout = 300_000) {
  const value = await settled(page, timeout);
  const shown = JSON.parse(await page.textContent("#result"));
  assert.deepEqual(shown, value, "#result shows window.gpuMnistResult");
  assert.equal(value.error, undefined, `the page failed: ${value.error}`);
  return value;
}

// The native CPU's test accuracy for `train` with `args` (the run by default).
const nativeAcc = (args = RUN) => Number(native(["train", "--backend", "cpu", ...args]).match(/test_acc: ([0-9.]+)/)[1]);

for (const backend of ["webgpu", "cpu"]) {
  test(`the page trains the MLP on ${backend} as the native CPU does, and its model evaluates natively alike`, async () => {
    const want = nativeAcc();
    let { page, errors } = await open(`backend=${backend}&${QUERY}`);
    let run;
    try {
      // The run takes 15 s on SwiftShader's WebGPU.
      run = await result(page, 120_000);
    } catch (e) {
      // Seen twice in many runs, never reproduced on purpose: a first page
      // in a fresh browser that never finishes. Said, and tried once more.
      console.error(`warning: the page did not finish; trying once more:\n${e.message}`);
      await page.close();
      ({ page, errors } = await open(`backend=${backend}&${QUERY}`));
      run = await result(page, 120_000);
    }
    assert.equal(run.backend, backend);
    assert.equal(run.epochs.length, 1);
    assert.ok(Math.abs(run.test_acc - want) <= 0.003, `page ${run.test_acc}, native ${want}`);
    assert.ok(run.ms_per_step > 0 && run.first_step_ms > 0, JSON.stringify(run));
    assert.match(await page.textContent("#log"), /^Epoch 1\/1 - 40\/40 - .*ms\/step - loss: [0-9.]+ - accuracy: [0-9.]+$/m);
    // The model downloaded from the page, evaluated natively.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const saved = join(scratch, `page-${backend}.safetensors`);
    await download.saveAs(saved);
    assert.ok(Math.abs(nativeEvaluation(saved) - run.test_acc) < 1e-4, "native evaluate of the page's model");
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("a natively trained checkpoint loads into the page with its accuracy, and a drawn 7 is a 7", async () => {
  const checkpoint = join(scratch, "native.safetensors");
  native(["train", "--backend", "cpu", "--epochs", "2", "--seed", "1", "--save", checkpoint, "--overwrite"]);
  const want = nativeEvaluation(checkpoint);
  const { page, errors } = await open("backend=cpu");
  await page.setInputFiles("#checkpoint-file", checkpoint);
  const loaded = await result(page);
  assert.equal(loaded.checkpoint, "native.safetensors");
  assert.ok(Math.abs(loaded.test_acc - want) < 1e-4, `page ${loaded.test_acc}, native ${want}`);
  // A 7: a bar across the top, then a stroke down to the lower left.
  await page.locator("#pad").scrollIntoViewIfNeeded();
  const pad = await page.locator("#pad").boundingBox();
  const to = (x, y) => [pad.x + (x * pad.width) / 280, pad.y + (y * pad.height) / 280];
  await page.mouse.move(...to(70, 60));
  await page.mouse.down();
  await page.mouse.move(...to(210, 60), { steps: 8 });
  await page.mouse.move(...to(125, 235), { steps: 12 });
  await page.mouse.up();
  await page.waitForSelector("#top3 li[data-digit]");
  const top = await page.getAttribute("#top3 li:first-child", "data-digit");
  assert.equal(top, "7", await page.textContent("#top3"));
  assert.deepEqual(errors, []);
  await page.close();
});

test("bad parameters and files end a run with one clear error, not a hang", async () => {
  const cases = [
    ["backend=metal&autorun=1", 'backend "metal": expected auto, webgpu, cpu'],
    ["model=resnet&autorun=1", 'model "resnet": expected mlp, convnet'],
    ["backend=cpu&epochs=0&autorun=1", 'epochs must be a whole number from 1 to 1000, not "0"'],
    ["backend=cpu&samples=70000&autorun=1", 'training images must be a whole number from 0 to 60000, not "70000"'],
    ["backend=cpu&seed=-1&autorun=1", 'the seed must be a whole number from 0 to 9007199254740991, not "-1"'],
    ["backend=cpu&batch_size=-5&autorun=1", 'the batch size must be a whole number from 0 to 65536, not "-5"'],
    // What WebGPU allows (SwiftShader here, at WebGPU's default limit of
    // 65,535 workgroups a dimension), said as it is, not as "no usable
    // WebGPU adapter".
    ["backend=webgpu&batch_size=65536&autorun=1", "the gather of a batch of 65536 rows: " +
      "max_compute_workgroups_per_dimension must be at least 65536, this adapter allows 65535"],
  ];
  for (const [query, message] of cases) {
    const { page, errors } = await open(query);
    assert.deepEqual(await settled(page, 60_000), { error: message }, query);
    assert.deepEqual(errors, []);
    await page.close();
  }
  // A file that is no checkpoint, loaded: its name and what is wrong.
  const bogus = join(scratch, "notes.safetensors");
  writeFileSync(bogus, "not a checkpoint at all");
  const { page } = await open("backend=cpu");
  await page.setInputFiles("#checkpoint-file", bogus);
  const { error } = await settled(page, 60_000);
  assert.match(error, /^checkpoint notes\.safetensors: /);
  await page.close();
});

test("kernels measured on WebGPU are kept in localStorage and chosen again on the next visit", async () => {
  const KEY = "gpu-mnist kernel choices";
  const FORWARD = "NN BiasRelu batch=M 128x784x512";
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const query = `${base}?backend=webgpu&model=mlp&epochs=1&samples=256&seed=3&autorun=1`;
  // What the page keeps: {scope: browser and GPU, choices: the engine's JSON}.
  const stored = async () => JSON.parse(await page.evaluate((key) => localStorage.getItem(key), KEY));
  const store = (value) => page.evaluate(([k, v]) => localStorage.setItem(k, v), [KEY, value]);
  const saved = async () => JSON.parse((await stored()).choices);

  // A first visit trains at once (the rule of thumb), then measures for the next.
  await page.goto(query);
  const first = await result(page);
  assert.match(await page.textContent("#log"), /^measured the kernels of \d+ products$/m);
  const { scope } = await stored();
  assert.match(scope, /HeadlessChrome/);
  const choices = await saved();
  const forward = Object.entries(choices).find(([key]) => key.endsWith(FORWARD));
  assert.ok(forward, `no choice for ${FORWARD} in ${Object.keys(choices)}`);
  for (const choice of Object.values(choices)) {
    assert.ok(choice.host_checked, JSON.stringify(choice));
    const chosen = choice.trials.find((t) => t.kernel === choice.kernel);
    assert.ok(chosen && chosen.ms >= 0, JSON.stringify(choice));
    assert.ok(choice.trials.every((t) => t.ms === null || t.ms >= chosen.ms), JSON.stringify(choice));
  }

  // A choice no measurement would make (the scalar kernel, at a time no
  // kernel takes): the next visit takes it as it is.
  const [key, choice] = forward;
  choice.kernel = "scalar";
  choice.trials.find((t) => t.kernel === "scalar").ms = 1e-6;
  await store(JSON.stringify({ scope, choices: JSON.stringify(choices) }));
  await page.goto(query);
  const second = await result(page);
  assert.doesNotMatch(await page.textContent("#log"), /measur/);
  assert.deepEqual((await saved())[key], choice);
  assert.ok(Math.abs(second.test_acc - first.test_acc) <= 0.003, `${second.test_acc} after ${first.test_acc}`);

  // Choices for another browser or GPU, or damaged ones, are said, dropped,
  // and measured again.
  const cases = [
    [JSON.stringify({ scope: "another browser | another GPU", choices: JSON.stringify(choices) }),
     "ignoring the saved kernel choices: not this page's, or for another browser or GPU"],
    ["{not json", "ignoring the saved kernel choices: not this page's, or for another browser or GPU"],
    [JSON.stringify({ scope, choices: "{not json" }),
     "ignoring the saved kernel choices: key must be a string at line 1 column 2"],
  ];
  for (const [value, line] of cases) {
    await store(value);
    await page.goto(query);
    await result(page);
    assert.ok((await page.textContent("#log")).split("\n").includes(line), await page.textContent("#log"));
    assert.notEqual((await saved())[key].trials.find((t) => t.kernel === "scalar").ms, 1e-6);
    assert.equal((await stored()).scope, scope);
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test("Stop ends training mid-epoch, and Train finishes the epoch as if it had never stopped", async () => {
  const query = "backend=cpu&model=mlp&epochs=1&seed=3";
  const whole = await open(`${query}&autorun=1`);
  const uninterrupted = await result(whole.page);
  await whole.page.close();

  // The data set served 3 s late: Stop while it loads, and training never begins.
  const context = await browser.newContext();
  await context.route("**/data/*", async (route) => {
    await new Promise((done) => setTimeout(done, 3000));
    await route.continue();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}?${query}`);
  await page.click("#train");
  await page.click("#stop");
  assert.equal((await settled(page, 60_000)).stopped, true);
  assert.match(await page.textContent("#log"), /^stopped before training began$/m);
  await page.evaluate(() => { delete window.gpuMnistResult; });

  await page.click("#train");
  await page.waitForFunction(() => /^Epoch 1\/1 - \d+\/469 - /.test(document.querySelector("#progress").textContent));
  await page.click("#stop");
  assert.equal((await settled(page, 60_000)).stopped, true);
  const stoppedAt = Number((await page.textContent("#log")).match(/^stopped \(Epoch 1\/1 - (\d+)\/469 - .*\): Train goes on from there$/m)[1]);
  assert.ok(stoppedAt < 469, `stopped at step ${stoppedAt}`);

  await page.evaluate(() => { delete window.gpuMnistResult; });
  await page.click("#train");
  const resumed = await result(page);
  assert.equal(resumed.epochs.length, 1);
  assert.equal(resumed.test_acc, uninterrupted.test_acc);
  assert.equal(resumed.test_loss, uninterrupted.test_loss);
  assert.match(await page.textContent("#log"), /^Epoch 1\/1 - 469\/469 - /m);
  assert.deepEqual(errors, []);
  await context.close();
});

test("a site without MNIST asks for the four files, checks what is picked, and trains on it", async () => {
  const context = await browser.newContext();
  await context.route("**/data/*", (route) => route.fulfill({ status: 404, body: "not here" }));
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}?backend=cpu&${QUERY}`);
  const error = async () => {
    const { error } = await settled(page, 60_000);
    await page.evaluate(() => { delete window.gpuMnistResult; });
    return error;
  };
  assert.equal(await error(), "this site does not serve train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, " +
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz: pick the four files below");
  assert.ok(await page.isVisible("#data-files"));
  assert.match(await page.textContent("#data-status"), /^MNIST: this site does not serve /);
  const files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"].map((name) => join(dataDir, name));

  await page.setInputFiles("#data-files", files.slice(0, 3));
  assert.match(await error(), /^pick all four files: train-images-idx3-ubyte\.gz, /);
  // The test labels under the training labels' name.
  const impostor = join(scratch, "train-labels-idx1-ubyte.gz");
  writeFileSync(impostor, readFileSync(files[3]));
  await page.setInputFiles("#data-files", [files[0], impostor, files[2], files[3]]);
  assert.equal(await error(), "train-labels-idx1-ubyte: this is MNIST's t10k-labels-idx1-ubyte, not the file asked for");
  // A damaged copy: a byte changed.
  const damaged = readFileSync(files[1]);
  damaged[damaged.length - 100] ^= 1;
  writeFileSync(impostor, damaged);
  await page.setInputFiles("#data-files", [files[0], impostor, files[2], files[3]]);
  assert.equal(await error(), "train-labels-idx1-ubyte: not a valid gzip stream: corrupt gzip stream does not have a matching checksum");

  await page.setInputFiles("#data-files", files);
  await page.waitForFunction(() => document.querySelector("#data-status").textContent ===
    "MNIST: 60000 training and 10000 test images, checked against their SHA-256.");
  assert.ok(!(await page.isVisible("#data-files")));
  await page.click("#train");
  const run = await result(page);
  const want = nativeAcc();
  assert.ok(Math.abs(run.test_acc - want) <= 0.003, `page ${run.test_acc}, native ${want}`);
  assert.deepEqual(errors, []);
  await context.close();
});

test("the page trains the convnet on WebGPU and on the CPU near the native CPU", async () => {
  // 40 steps of 64: early training, where the last bits of each platform's
  // sums (fused or not, summed in another order) move the test accuracy by
  // up to 0.011 (the wasm CPU; native Vulkan is 0.006 off).
  const run = ["--model", "convnet", "--epochs", "1", "--train-samples", "2560", "--seed", "1"];
  const want = nativeAcc(run);
  for (const backend of ["webgpu", "cpu"]) {
    const { page, errors } = await open(`backend=${backend}&model=convnet&epochs=1&samples=2560&seed=1&autorun=1`);
    const got = await result(page);
    assert.equal(got.model, "convnet");
    assert.equal(got.backend, backend);
    assert.ok(Math.abs(got.test_acc - want) <= 0.015, `${backend}: page ${got.test_acc}, native ${want}`);
    assert.match(await page.textContent("#log"), /^Epoch 1\/1 - 40\/40 - /m);
    assert.deepEqual(errors, []);
    await page.close();
  }
});

test("a batch size asked for in the page trains as the CLI's --batch-size does", async () => {
  const want = nativeAcc([...RUN, "--batch-size", "256"]);
  const { page, errors } = await open(`backend=cpu&batch_size=256&${QUERY}`);
  const run = await result(page);
  assert.ok(Math.abs(run.test_acc - want) <= 0.003, `page ${run.test_acc}, native ${want}`);
  assert.match(await page.textContent("#log"), /^Epoch 1\/1 - 20\/20 - /m);
  assert.deepEqual(errors, []);
  await page.close();
});
