//! gpu-mnist in a web page: the engine compiled to wasm32, training on the
//! browser's WebGPU or on its CPU, driven from JavaScript (`web/app.js`).
//! Options and results cross as JSON text, so the page needs no generated
//! type definitions beyond wasm-bindgen's.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use gpu_mnist::data::{digit_image, Splits, MNIST};
use gpu_mnist::report::ClassReport;
use gpu_mnist::{
    checkpoint, BookModel, Device, DeviceError, EpochRecord, Error, GpuApi, GpuError, Init,
    Metrics, Observer, Params, Split, Trainer,
};
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The GPU kernels chosen by measurement in this page so far, as JSON, for
/// the page to keep (in `localStorage`) so that the next visit measures
/// nothing: the native CLI keeps them in its kernel cache file.
#[wasm_bindgen]
pub fn kernel_choices() -> String {
    gpu_mnist::remembered_kernel_choices()
}

/// Remembers kernel choices a page kept (see [`kernel_choices`]); the
/// tuner uses each only for the product and candidates it was made among.
#[wasm_bindgen]
pub fn remember_kernel_choices(json: &str) -> Result<usize, JsValue> {
    gpu_mnist::remember_kernel_choices(json).map_err(js_error)
}

/// Whether the GPU kernels of a product with no remembered choice are
/// measured (the default) or taken by rule of thumb: a page turns measuring
/// off for a first visit, so that its first step comes at once, and
/// measures with [`measure_kernels`] once the run is over.
#[wasm_bindgen]
pub fn set_kernel_measuring(on: bool) {
    gpu_mnist::set_kernel_measuring(on);
}

/// Turns measuring on and measures the kernels of every product a session
/// of `options` runs, on a device of its own, for [`kernel_choices`] to
/// keep; resolves to the number of products.
#[wasm_bindgen]
pub fn measure_kernels(data: &Data, options: &str) -> Promise {
    let data = data.splits.clone();
    let options = options.to_string();
    future_to_promise(async move {
        gpu_mnist::set_kernel_measuring(true);
        let (mut trainer, _) = open_trainer(&data, &options).await?;
        let choices = trainer
            .model()
            .kernel_choices_async()
            .await
            .map_err(js_error)?;
        Ok(JsValue::from(choices.len() as u32))
    })
}

/// MNIST, checked and in memory.
#[wasm_bindgen]
pub struct Data {
    splits: Arc<Splits>,
}

#[wasm_bindgen]
impl Data {
    /// Checks the four MNIST files (as served, gzip or not) against their
    /// SHA-256 and reads them: training images and labels, test images and
    /// labels.
    #[wasm_bindgen(constructor)]
    pub fn new(
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
    ) -> Result<Data, JsError> {
        let splits = MNIST
            .splits_from_bytes([train_images, train_labels, test_images, test_labels])
            .map_err(|e| JsError::new(&e))?;
        Ok(Data {
            splits: Arc::new(splits),
        })
    }

    #[wasm_bindgen(getter)]
    pub fn train_len(&self) -> usize {
        self.splits.train.len
    }

    #[wasm_bindgen(getter)]
    pub fn test_len(&self) -> usize {
        self.splits.test.len
    }
}

/// What [`Session::open`] takes, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OpenOptions {
    /// `mlp` or `convnet`: the book's networks, each with its batch size and loss.
    model: String,
    /// `auto` (a WebGPU adapter that is not a software one, else the CPU),
    /// `webgpu` or `cpu`.
    backend: String,
    /// Train on the first `samples` training images (0: all of them).
    samples: usize,
    seed: u64,
    batch_size: Option<usize>,
    /// Steps between progress events (and, on WebGPU, read-backs).
    report_every: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            model: "mlp".into(),
            backend: "auto".into(),
            samples: 0,
            seed: 1,
            batch_size: None,
            report_every: 20,
        }
    }
}

/// A model training (or trained) on a device of the page.
#[wasm_bindgen]
pub struct Session {
    /// `None` while an operation holds it: calls meanwhile are refused.
    state: Rc<RefCell<Option<Trainer>>>,
    stop: Rc<Cell<bool>>,
    backend: String,
    adapter: String,
    model: BookModel,
}

/// The page's answer to a call made while another is running.
fn busy() -> JsValue {
    JsError::new("the session is busy (training or evaluating): wait for it or stop it").into()
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A trainer for the page's `options` (JSON, see `OpenOptions`) on `data`,
/// and the book's model it trains.
async fn open_trainer(data: &Splits, options: &str) -> Result<(Trainer, BookModel), JsValue> {
    let options: OpenOptions =
        serde_json::from_str(options).map_err(|e| js_error(format!("options: {e}")))?;
    let model = BookModel::named(&options.model).ok_or_else(|| {
        js_error(format!(
            "model {:?}: expected mlp or convnet",
            options.model
        ))
    })?;
    let device = match options.backend.as_str() {
        "auto" => Device::Auto,
        "webgpu" => Device::Gpu {
            api: GpuApi::Any,
            adapter: None,
        },
        "cpu" => Device::Cpu,
        other => {
            return Err(js_error(format!(
                "backend {other:?}: expected auto, webgpu or cpu"
            )))
        }
    };
    let mut splits = (*data).clone();
    if options.samples > 0 {
        if options.samples > splits.train.len {
            return Err(js_error(format!(
                "samples {}: there are {} training images",
                options.samples, splits.train.len
            )));
        }
        splits.train = splits.train.truncated(options.samples);
    }
    let spec = model.spec();
    let mut config = model.config(options.seed);
    if let Some(batch) = options.batch_size {
        config.batch_size = batch;
    }
    config.report_every = options.report_every;
    let params = Params::init(&spec, Init::Glorot, options.seed);
    let trainer = Trainer::new_async(&device, &spec, &params, Arc::new(splits), config)
        .await
        .map_err(|e| {
            match e {
            Error::Device(DeviceError::Gpu(GpuError::NoAdapter { .. })) => js_error(
        "this browser offers no usable WebGPU adapter (recent Chrome and Edge do): use the CPU",
            ),
            e => js_error(e),
        }
        })?;
    Ok((trainer, model))
}

/// Takes the trainer out of the session for an operation, and puts it back
/// when the operation ends, however it ends.
struct Lease {
    state: Rc<RefCell<Option<Trainer>>>,
    trainer: Option<Trainer>,
}

impl Lease {
    fn take(state: &Rc<RefCell<Option<Trainer>>>) -> Result<Self, JsValue> {
        let trainer = state.try_borrow_mut().ok().and_then(|mut s| s.take());
        match trainer {
            Some(trainer) => Ok(Self {
                state: state.clone(),
                trainer: Some(trainer),
            }),
            None => Err(busy()),
        }
    }

    fn trainer(&mut self) -> &mut Trainer {
        self.trainer.as_mut().expect("held until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.state.borrow_mut() = self.trainer.take();
    }
}

#[wasm_bindgen]
impl Session {
    /// Opens a session (`options`: JSON, see `OpenOptions`); resolves to a
    /// `Session`.
    pub fn open(data: &Data, options: &str) -> Promise {
        let data = data.splits.clone();
        let options = options.to_string();
        future_to_promise(async move {
            let (trainer, model) = open_trainer(&data, &options).await?;
            let adapter = trainer.describe().to_string();
            let backend = if adapter.starts_with("cpu") {
                "cpu"
            } else {
                "webgpu"
            };
            Ok(Session {
                state: Rc::new(RefCell::new(Some(trainer))),
                stop: Rc::new(Cell::new(false)),
                backend: backend.into(),
                adapter,
                model,
            }
            .into())
        })
    }

    /// `webgpu` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// The device, and why `auto` chose it.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Trains `epochs` more epochs (a stopped epoch is finished first),
    /// calling `on_event` with each event as JSON (`epoch_begin`,
    /// `progress`, `epoch_end`). Resolves to `{"epochs": [...], "stopped":
    /// bool}`.
    pub fn fit(&self, epochs: usize, on_event: Function) -> Promise {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        future_to_promise(async move {
            let mut lease = Lease::take(&state)?;
            stop.set(false);
            let mut observer = PageObserver { on_event, stop };
            match lease.trainer().fit_async(epochs, None, &mut observer).await {
                Ok(history) => Ok(to_js(&FitResult {
                    epochs: history.epochs,
                    stopped: false,
                })),
                Err(Error::Interrupted { .. }) => Ok(to_js(&FitResult {
                    epochs: Vec::new(),
                    stopped: true,
                })),
                Err(e) => Err(js_error(e)),
            }
        })
    }

    /// Stops training at its next progress event.
    pub fn stop(&self) {
        self.stop.set(true);
    }

    /// Test loss and accuracy, and the confusion matrix. Resolves to JSON.
    pub fn evaluate(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut lease = Lease::take(&state)?;
            let trainer = lease.trainer();
            let metrics = trainer
                .evaluate_async(Split::Test)
                .await
                .map_err(js_error)?;
            let test = trainer.model().data().test.clone();
            let probs = trainer
                .model()
                .predict_async(&test.images)
                .await
                .map_err(js_error)?;
            let report = ClassReport::new(&test.labels, &probs, 0);
            Ok(to_js(&Evaluation::of(&metrics, report)))
        })
    }

    /// The digit in an RGBA picture (`width` x `height`, e.g. a canvas'
    /// pixels), prepared as `gpu-mnist predict --image` prepares files:
    /// resolves to `{"pixels": [784 grey levels], "probabilities": [10]}`,
    /// or `{"blank": true}` when it holds no ink.
    pub fn predict(&self, rgba: Vec<u8>, width: u32, height: u32) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let picture = image::RgbaImage::from_raw(width, height, rgba)
                .ok_or_else(|| js_error("the pixels are not width x height RGBA"))?;
            let Some(pixels) = digit_image::to_mnist(&image::DynamicImage::ImageRgba8(picture))
            else {
                return Ok(to_js(&serde_json::json!({ "blank": true })));
            };
            let mut lease = Lease::take(&state)?;
            let probs = lease
                .trainer()
                .model()
                .predict_async(&pixels)
                .await
                .map_err(js_error)?;
            Ok(to_js(&serde_json::json!({
                "pixels": pixels.to_vec(),
                "probabilities": probs[0],
            })))
        })
    }

    /// The model as the safetensors checkpoint `gpu-mnist evaluate` reads.
    /// Resolves to a `Uint8Array`.
    pub fn checkpoint(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut lease = Lease::take(&state)?;
            let trainer = lease.trainer();
            let params = trainer.params_async().await.map_err(js_error)?;
            let metadata = HashMap::from([
                ("format".to_string(), "gpu-mnist".to_string()),
                (checkpoint::DATASET_KEY.to_string(), MNIST.name.to_string()),
                ("seed".to_string(), trainer.config().seed.to_string()),
            ]);
            let bytes = checkpoint::model_bytes(trainer.model().spec(), &params, metadata)
                .map_err(js_error)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Replaces the model's parameters with a checkpoint's (trained
    /// natively, or downloaded from a page) of the same model.
    pub fn load_checkpoint(&self, bytes: Vec<u8>, name: &str) -> Promise {
        let (state, model, name) = (self.state.clone(), self.model, name.to_string());
        future_to_promise(async move {
            let saved = checkpoint::from_bytes(&bytes, &name).map_err(js_error)?;
            if saved.spec != model.spec() {
                return Err(js_error(format!(
                    "{name} holds another model than the book's {} this session trains",
                    model.name()
                )));
            }
            let mut lease = Lease::take(&state)?;
            lease
                .trainer()
                .model()
                .set_params(&saved.params)
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[derive(Serialize)]
struct FitResult {
    epochs: Vec<EpochRecord>,
    stopped: bool,
}

#[derive(Serialize)]
struct Evaluation {
    test_loss: f64,
    test_acc: f64,
    confusion: Vec<Vec<u64>>,
}

impl Evaluation {
    fn of(metrics: &Metrics, report: ClassReport) -> Self {
        Self {
            test_loss: metrics.loss(),
            test_acc: metrics.accuracy(),
            confusion: report.confusion,
        }
    }
}

/// JSON text, which the page parses.
fn to_js(value: &impl Serialize) -> JsValue {
    JsValue::from_str(&serde_json::to_string(value).expect("plain data serialises"))
}

/// Hands training's events to the page as JSON, and its stop button back.
struct PageObserver {
    on_event: Function,
    stop: Rc<Cell<bool>>,
}

impl PageObserver {
    fn send(&self, event: serde_json::Value) {
        // A failing page callback is the page's to report; training goes on.
        let _ = self
            .on_event
            .call1(&JsValue::NULL, &JsValue::from_str(&event.to_string()));
    }
}

impl Observer for PageObserver {
    fn epoch_begin(&mut self, epoch: usize, steps: u64) {
        self.send(serde_json::json!({"event": "epoch_begin", "epoch": epoch, "steps": steps}));
    }

    fn progress(&mut self, epoch: usize, running: &Metrics) {
        self.send(serde_json::json!({
            "event": "progress",
            "epoch": epoch,
            "step": running.steps,
            "loss": running.loss(),
            "accuracy": running.accuracy(),
        }));
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        let mut event = serde_json::to_value(record).expect("plain data serialises");
        event["event"] = "epoch_end".into();
        self.send(event);
    }

    fn stop(&mut self) -> bool {
        self.stop.get()
    }
}
