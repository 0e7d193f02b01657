// The page: MNIST from this origin (or the user's disk), a training session
// of the engine in wasm, live curves, the test set's confusion matrix, a
// drawing pad, and checkpoints in and out. Query parameters (for tests and
// scripts): backend, model, epochs, batch_size, samples, seed, autorun=1. When a run ends
// it writes one JSON object to window.gpuMnistResult and to #result.
import init, { Data, Session, kernel_choices, measure_kernels, remember_kernel_choices, set_kernel_measuring }
  from "./pkg/gpu_mnist_web.js";

const FILES = [
  "train-images-idx3-ubyte.gz",
  "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz",
];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let data = null;      // Data, once the four files are checked
let session = null;   // Session, once a device is open
let sessionKey = "";  // the options it was opened with
let running = false;
let curve = [];       // {step, loss, accuracy} over the whole run

// Query parameters fill the form; a choice the form does not offer is an
// error of the run, not a silent default.
const badChoice = [];
for (const [name, id] of [["backend", "backend"], ["model", "model"], ["epochs", "epochs"],
                          ["batch_size", "batch_size"], ["samples", "samples"], ["seed", "seed"]]) {
  if (!params.has(name)) continue;
  $(id).value = params.get(name);
  if ($(id).tagName === "SELECT" && $(id).value !== params.get(name)) {
    const offered = [...$(id).options].map((o) => o.value).join(", ");
    badChoice.push(`${name} "${params.get(name)}": expected ${offered}`);
  }
}

function publish(result) {
  window.gpuMnistResult = result;
  $("result").textContent = JSON.stringify(result, null, 1);
}

function fail(error) {
  const message = String(error && error.message ? error.message : error);
  $("result").classList.add("error");
  publish({ error: message });
  log(`error: ${message}`);
}

function log(line) {
  $("log").textContent += line + "\n";
}

async function fetchData() {
  $("data-status").textContent = "MNIST: downloading from this site...";
  const responses = await Promise.all(FILES.map((f) => fetch(`data/${f}`)));
  const missing = FILES.filter((_, i) => !responses[i].ok);
  if (missing.length) {
    throw new Error(`this site does not serve ${missing.join(", ")}: pick the four files below`);
  }
  const bytes = await Promise.all(responses.map((r) => r.arrayBuffer()));
  return loadBytes(bytes);
}

function loadBytes(buffers) {
  const [a, b, c, d] = buffers.map((buf) => new Uint8Array(buf));
  data = new Data(a, b, c, d);
  $("data-status").textContent =
    `MNIST: ${data.train_len} training and ${data.test_len} test images, checked against their SHA-256.`;
  $("data-pick").hidden = true;
}

let dataLoad = null;  // the download under way, shared by whoever waits for it

async function ensureData() {
  if (data) return;
  dataLoad ??= fetchData().finally(() => { dataLoad = null; });
  try {
    await dataLoad;
  } catch (e) {
    $("data-status").textContent = `MNIST: ${e.message}`;
    $("data-pick").hidden = false;
    throw e;
  }
}

$("data-files").addEventListener("change", async (event) => {
  try {
    const picked = [...event.target.files];
    const byName = (name) => picked.find((f) => f.name === name || f.name === name.replace(/\.gz$/, ""));
    const files = FILES.map(byName);
    if (files.some((f) => !f)) {
      throw new Error(`pick all four files: ${FILES.join(", ")} (gzip or not)`);
    }
    loadBytes(await Promise.all(files.map((f) => f.arrayBuffer())));
  } catch (e) {
    fail(e);
  } finally {
    // So that picking the same files again (mended on disk) reads them again.
    event.target.value = "";
  }
});

// A whole number in [min, max] from a field, or an error naming the field.
function whole(id, label, min, max) {
  const text = String($(id).value).trim();
  const value = Number(text);
  if (text === "" || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${label} must be a whole number from ${min} to ${max}, not "${text}"`);
  }
  return value;
}

function options() {
  return {
    model: $("model").value,
    backend: $("backend").value,
    // 0: the model's own (the book's 128 for the MLP, 64 for the convnet).
    batch_size: whole("batch_size", "the batch size", 0, 65536) || null,
    samples: whole("samples", "training images", 0, data ? data.train_len : 60000),
    seed: whole("seed", "the seed", 0, Number.MAX_SAFE_INTEGER),
  };
}

// The GPU kernels measured fastest on this device, kept across visits (the
// CLI keeps them in its cache file), so that only a first visit measures.
// Kept per browser and GPU: the engine's key for an adapter on the web is
// little more than "a WebGPU adapter" (browsers hide the driver).
const CHOICES = "gpu-mnist kernel choices";
let choicesScope = "";
// No choices were saved for this browser and GPU: training takes the rule of
// thumb at once, and the kernels are measured after the run, for next time.
let measureLater = false;

async function kernelScope() {
  let info = {};
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    info = adapter?.info ?? {};
  } catch {
    // no WebGPU: the scope is the browser's alone
  }
  return [navigator.userAgent, info.vendor, info.architecture, info.device, info.description].join(" | ");
}

// The choices saved for this browser and GPU, as the engine's JSON, or null.
function savedKernelChoices() {
  try {
    const saved = JSON.parse(localStorage.getItem(CHOICES));
    return saved && saved.scope === choicesScope ? saved.choices : null;
  } catch {
    return null;  // storage disabled, or not what this page writes
  }
}

async function restoreKernelChoices() {
  choicesScope = await kernelScope();
  let saved = null;
  try {
    saved = localStorage.getItem(CHOICES);
  } catch {
    return;  // storage disabled: measured before the first step, each visit
  }
  if (saved !== null) {
    try {
      const choices = savedKernelChoices();
      if (choices === null) throw new Error("kernel choices: not this page's, or for another browser or GPU");
      remember_kernel_choices(choices);
      return;
    } catch (e) {
      log(`ignoring the saved ${e.message}`);
      localStorage.removeItem(CHOICES);
    }
  }
  set_kernel_measuring(false);
  measureLater = true;
}

// After a run on WebGPU that took the rule of thumb: measure, and keep.
async function measureForNextVisit() {
  if (!measureLater || session.backend !== "webgpu") return;
  log("measuring this GPU's kernels for the next visit...");
  measureLater = false;
  try {
    const products = await measure_kernels(data, sessionKey);
    keepKernelChoices();
    log(`measured the kernels of ${products} products`);
  } catch (e) {
    // The run itself went well: only the next visit measures again.
    log(`could not measure the kernels: ${e.message}`);
  }
}

function keepKernelChoices() {
  try {
    // Another tab's choices saved meanwhile are kept too.
    const others = savedKernelChoices();
    if (others !== null) remember_kernel_choices(others);
    localStorage.setItem(CHOICES, JSON.stringify({ scope: choicesScope, choices: kernel_choices() }));
  } catch {
    // storage full or disabled: measured again next visit
  }
}

async function ensureSession() {
  const wanted = JSON.stringify(options());
  if (session && sessionKey === wanted) return;
  $("device").textContent = "Device: opening...";
  try {
    session = await Session.open(data, wanted);
  } catch (e) {
    // The session open before (if any) stays, with its model.
    $("device").textContent = session ? `Device: ${session.adapter}` : "Device: not opened.";
    throw e;
  }
  sessionKey = wanted;
  curve = [];
  timings = [];
  epochsDone = 0;
  $("progress").textContent = "";
  $("device").textContent = `Device: ${session.adapter}`;
  $("download").disabled = false;
}

// Keras' epoch line: "Epoch 1/5 - 469/469 - 3.1s - 7ms/step - loss: ... - accuracy: ...".
let epochSteps = 0;
let epochsAsked = 0;
let epochOffset = 0;
let epochsDone = 0;
let timings = [];  // per epoch: [{t, step}] of its progress events

function onEvent(json) {
  const e = JSON.parse(json);
  const now = performance.now();
  if (e.event === "epoch_begin") {
    epochSteps = e.steps;
    timings.push([{ t: now, step: 0 }]);
  } else if (e.event === "progress") {
    timings[timings.length - 1].push({ t: now, step: e.step });
    const total = (e.epoch - 1) * epochSteps + e.step;
    curve.push({ step: total, loss: e.loss, accuracy: e.accuracy });
    drawCurves();
    $("progress").textContent = `Epoch ${e.epoch}/${epochOffset + epochsAsked} - ${e.step}/${epochSteps} - ` +
      `loss: ${e.loss.toFixed(4)} - accuracy: ${e.accuracy.toFixed(4)}`;
  } else if (e.event === "epoch_end") {
    $("progress").textContent = "";  // the epoch line below says it all
    epochsDone = e.epoch;
    const msPerStep = (1000 * e.seconds) / epochSteps;
    log(`Epoch ${e.epoch}/${epochOffset + epochsAsked} - ${epochSteps}/${epochSteps} - ` +
        `${e.seconds.toFixed(1)}s - ${Math.round(msPerStep)}ms/step - ` +
        `loss: ${e.loss.toFixed(4)} - accuracy: ${e.accuracy.toFixed(4)}`);
  }
}

// ms per step once running: between the first and last progress events of
// the last epoch that had two (the first steps carry the kernels' warm-up);
// else the epochs' time over their steps.
function steadyMsPerStep(epochs) {
  for (const t of timings.slice().reverse()) {
    const ticks = t.filter((p) => p.step > 0);
    if (ticks.length >= 2) {
      const [a, b] = [ticks[0], ticks[ticks.length - 1]];
      return (b.t - a.t) / (b.step - a.step);
    }
  }
  const seconds = epochs.reduce((s, e) => s + e.seconds, 0);
  return (1000 * seconds) / (epochSteps * Math.max(1, epochs.length));
}

// When a run's first step ended, in ms since the page opened: the first
// progress event of its first epoch's `ticks`, less the steps after the
// first, at the steady rate.
function firstStepEnd(ticks, msPerStep) {
  const first = ticks ? ticks.find((p) => p.step > 0) : undefined;
  return first ? first.t - (first.step - 1) * msPerStep : null;
}

function drawCurves() {
  const canvas = $("curves");
  const g = canvas.getContext("2d");
  const [w, h, pad] = [canvas.width, canvas.height, 30];
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#999";
  g.strokeRect(pad, 10, w - pad - 10, h - pad - 10);
  if (curve.length === 0) return;
  const lastStep = curve[curve.length - 1].step || 1;
  const maxLoss = Math.max(...curve.map((p) => p.loss), 1e-9);
  const x = (step) => pad + ((w - pad - 10) * step) / lastStep;
  const y = (v) => 10 + (h - pad - 10) * (1 - v);
  const line = (color, value) => {
    g.strokeStyle = color;
    g.beginPath();
    curve.forEach((p, i) => (i ? g.lineTo : g.moveTo).call(g, x(p.step), y(value(p))));
    g.stroke();
  };
  line("#c62828", (p) => p.loss / maxLoss);
  line("#1565c0", (p) => p.accuracy);
  g.fillStyle = "#333";
  g.font = "12px sans-serif";
  const last = curve[curve.length - 1];
  g.fillText(`loss ${last.loss.toFixed(4)} (red, max ${maxLoss.toFixed(2)})`, pad + 5, h - 12);
  g.fillText(`accuracy ${last.accuracy.toFixed(4)} (blue)`, pad + 260, h - 12);
  g.fillText(`step ${last.step}`, w - 80, h - 12);
}

function showEvaluation(evaluation) {
  $("test-summary").textContent =
    `test_loss: ${evaluation.test_loss.toFixed(4)}  test_acc: ${evaluation.test_acc.toFixed(4)}`;
  const table = $("confusion");
  const head = "<tr><th>true \\ predicted</th>" +
    evaluation.confusion.map((_, c) => `<th>${c}</th>`).join("") + "</tr>";
  const rows = evaluation.confusion.map((row, r) => `<tr><th>${r}</th>` +
    row.map((n, c) => `<td class="${r === c ? "diagonal" : ""}">${n}</td>`).join("") + "</tr>");
  table.innerHTML = head + rows.join("");
  table.hidden = false;
}

function setRunning(on) {
  running = on;
  $("train").disabled = on;
  $("stop").disabled = !on;
  $("checkpoint-file").disabled = on;
  $("download").disabled = on || !session;
}

// Stop pressed during this run, before its training began (loading the data,
// opening the device) or during it.
let stopAsked = false;

async function train() {
  setRunning(true);
  stopAsked = false;
  $("result").classList.remove("error");
  try {
    if (badChoice.length) throw new Error(badChoice.join("; "));
    await ensureData();
    await ensureSession();
    if (stopAsked) {
      log("stopped before training began");
      publish({ stopped: true, backend: session.backend, adapter: session.adapter });
      return;
    }
    epochsAsked = whole("epochs", "epochs", 1, 1000);
    epochOffset = epochsDone;
    const firstEpoch = timings.length;
    const fit = JSON.parse(await session.fit(epochsAsked, onEvent));
    if (fit.stopped) {
      log(`stopped (${$("progress").textContent}): Train goes on from there`);
      $("progress").textContent = "";
      publish({ stopped: true, backend: session.backend, adapter: session.adapter });
      return;
    }
    const msPerStep = steadyMsPerStep(fit.epochs);
    const evaluation = JSON.parse(await session.evaluate());
    showEvaluation(evaluation);
    await measureForNextVisit();
    publish({
      backend: session.backend,
      adapter: session.adapter,
      model: options().model,
      epochs: fit.epochs.map(({ epoch, loss, accuracy, seconds }) => ({ epoch, loss, accuracy, seconds })),
      test_loss: evaluation.test_loss,
      test_acc: evaluation.test_acc,
      ms_per_step: msPerStep,
      first_step_ms: firstStepEnd(timings[firstEpoch], msPerStep),
    });
  } catch (e) {
    fail(e);
  } finally {
    keepKernelChoices();
    setRunning(false);
  }
}

$("train").addEventListener("click", train);
$("stop").addEventListener("click", () => {
  stopAsked = true;
  if (session) session.stop();
});

$("download").addEventListener("click", async () => {
  try {
    const bytes = await session.checkpoint();
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `mnist-${options().model}.safetensors`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    fail(e);
  }
});

$("checkpoint-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  setRunning(true);
  try {
    await ensureData();
    await ensureSession();
    await session.load_checkpoint(new Uint8Array(await file.arrayBuffer()), file.name);
    log(`loaded ${file.name}`);
    const evaluation = JSON.parse(await session.evaluate());
    showEvaluation(evaluation);
    publish({
      backend: session.backend,
      adapter: session.adapter,
      checkpoint: file.name,
      test_loss: evaluation.test_loss,
      test_acc: evaluation.test_acc,
    });
  } catch (e) {
    fail(e);
  } finally {
    event.target.value = "";
    keepKernelChoices();
    setRunning(false);
  }
});

// The drawing pad: white strokes on black, as MNIST's digits are; predicted
// at the end of each stroke, and while drawing at most every 150 ms.
const pad = $("pad");
const pen = pad.getContext("2d");
function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
  $("top3").innerHTML = "";
  $("preview").getContext("2d").clearRect(0, 0, 112, 112);
}
clearPad();
let drawing = false;
let lastPredict = 0;
let predicting = false;
const at = (e) => {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
};
pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  pen.strokeStyle = "#fff";
  pen.lineWidth = 22;
  pen.lineCap = pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...at(e));
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  pen.lineTo(...at(e));
  pen.stroke();
  if (performance.now() - lastPredict > 150) predictDrawing();
});
pad.addEventListener("pointerup", () => {
  drawing = false;
  predictDrawing();
});
$("clear").addEventListener("click", clearPad);

async function predictDrawing() {
  if (!session || predicting) return;
  if (running) {
    $("top3").innerHTML = "<li>(training: ask again when it ends)</li>";
    return;
  }
  predicting = true;
  lastPredict = performance.now();
  try {
    const pixels = pen.getImageData(0, 0, pad.width, pad.height);
    const out = JSON.parse(await session.predict(new Uint8Array(pixels.data.buffer), pad.width, pad.height));
    if (out.blank) {
      $("top3").innerHTML = "";
      return;
    }
    const ranked = out.probabilities.map((p, digit) => ({ p, digit })).sort((a, b) => b.p - a.p).slice(0, 3);
    $("top3").innerHTML = ranked.map((r) => `<li data-digit="${r.digit}">${r.digit}: ${(100 * r.p).toFixed(1)}%</li>`).join("");
    const preview = $("preview").getContext("2d");
    const image = preview.createImageData(28, 28);
    out.pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
    const small = new OffscreenCanvas(28, 28);
    small.getContext("2d").putImageData(image, 0, 0);
    preview.imageSmoothingEnabled = false;
    preview.drawImage(small, 0, 0, 112, 112);
  } catch (e) {
    fail(e);
  } finally {
    predicting = false;
  }
}

await init();
await restoreKernelChoices();
drawCurves();
if (params.get("autorun") === "1") {
  train();
} else {
  ensureData().catch(() => {});  // said in the page, with the files to pick
}
