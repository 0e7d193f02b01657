//! Kernel choice by measurement. For each product a plan needs, every
//! candidate kernel the device can run is run once on random data, timed
//! (timestamp queries where the adapter has them, else host timing), and
//! compared with the product computed on the host in f64 (one that disagrees
//! beyond the conformance tolerance is dropped, with a warning naming it: the
//! simple kernel too, since a driver can miscompile it, as lavapipe does
//! loops of 32,768 iterations or more); the ones still in the running are
//! timed twice more; the fastest is kept. (Which candidates a device runs:
//! `matmul::candidates`, less `matmul::worth_measuring`'s on software
//! adapters.) When no
//! candidate is right, the product is refused with one line. Choices are remembered
//! for the process and cached per adapter, driver and product in a file (see
//! [`cache`]), so a second run starts at once.

pub(crate) mod cache;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::buffers::{self, DeviceWaits, Region, StepTable};
use super::kernels::matmul::{self, MatmulKernel, MatmulOperands};
use super::kernels::Kernels;
use super::{profile, GpuContext, GpuError};
use crate::backend::Counters;
use crate::plan::{BatchDim, Epilogue, MatmulForm};

/// One product at the full batch: what a choice is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Product {
    pub form: MatmulForm,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Product {
    /// E.g. `NN BiasRelu batch=M 128x784x512`.
    pub fn key(&self) -> String {
        let f = self.form;
        let t = |b| if b { "T" } else { "N" };
        format!(
            "{}{} {:?} batch={:?} {}x{}x{}",
            t(f.transpose_a),
            t(f.transpose_b),
            f.epilogue,
            f.batch_dim,
            self.m,
            self.k,
            self.n
        )
    }
}

/// A candidate's outcome: milliseconds per launch, or `None` when its
/// results disagreed with the host's f64 product.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    pub kernel: String,
    pub ms: Option<f64>,
}

/// The kernel chosen for a product, and every candidate's outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    pub product: String,
    pub kernel: String,
    pub trials: Vec<Trial>,
    /// Whether the candidates were checked against the host's product
    /// (cached choices of earlier versions were checked only against the
    /// simple kernel, which a driver can miscompile: they are measured again).
    #[serde(default)]
    pub host_checked: bool,
}

/// Choices made in this process, by adapter and product.
static MEMO: Mutex<BTreeMap<String, Choice>> = Mutex::new(BTreeMap::new());

/// Forgets every choice, in this process and in the cache file, so the next
/// device opened measures again (`--retune`). A file at the cache path that
/// is not a cache is refused, not removed.
pub fn forget_choices() -> std::io::Result<()> {
    MEMO.lock().unwrap_or_else(|e| e.into_inner()).clear();
    cache::path().map_or(Ok(()), |path| cache::forget(&path))
}

/// Whether a product with no choice remembered is measured (the default), or
/// takes the rule of thumb (`matmul::fastest`) unremembered.
static MEASURING: AtomicBool = AtomicBool::new(true);

/// Turns measuring on or off for this process. A page turns it off for a
/// first visit, so that its first step does not wait for the measurements
/// (2.2 s on SwiftShader), and measures once the run is over, for the next.
pub fn set_measuring(on: bool) {
    MEASURING.store(on, Ordering::Relaxed);
}

/// Every choice made or remembered in this process, as JSON (an object from
/// "adapter | product" keys to choices), for a program without the cache
/// file to keep: a web page keeps it in `localStorage`.
pub fn remembered_choices() -> String {
    let memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::to_string(&*memo).expect("choices serialise")
}

/// Remembers the choices in `json` (as [`remembered_choices`] writes them)
/// for this process, keeping any it made itself. A choice is used only for
/// the product and candidates it was made among (another version's is
/// measured again). Returns how many it read.
pub fn remember_choices(json: &str) -> Result<usize, String> {
    let choices: BTreeMap<String, Choice> =
        serde_json::from_str(json).map_err(|e| format!("kernel choices: {e}"))?;
    let count = choices.len();
    let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    for (key, choice) in choices {
        memo.entry(key).or_insert(choice);
    }
    Ok(count)
}

/// Whether `choice` was made, checked against the host, among exactly the
/// kernels `names`, of one that agreed with the host (a choice of another
/// version, or a hand-edited one, was not).
fn made_among(choice: &Choice, names: &[String]) -> bool {
    choice.host_checked
        && choice.trials.iter().map(|t| &t.kernel).eq(names.iter())
        && choice
            .trials
            .iter()
            .any(|t| t.kernel == choice.kernel && t.ms.is_some())
}

/// The choice remembered for `product` on this device, with its trials.
pub(crate) fn recorded(ctx: &GpuContext, product: Product) -> Option<Choice> {
    let key = choice_key(ctx, product);
    MEMO.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned()
}

/// The key of `product`'s choice on this device, in the process and the
/// cache file: the adapter's name, backend and driver, then the product.
fn choice_key(ctx: &GpuContext, product: Product) -> String {
    let s = &ctx.summary;
    format!(
        "{} | {} | {} | {}",
        s.name,
        s.backend,
        s.driver,
        product.key()
    )
}

/// The choice for `product` among `candidates` (simplest first): remembered,
/// cached, or measured now.
pub(crate) async fn choose(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    kernels: &Kernels,
    product: Product,
    candidates: &[MatmulKernel],
) -> Result<MatmulKernel, GpuError> {
    let by_name = |name: &str| candidates.iter().copied().find(|k| k.name() == name);
    let key = choice_key(ctx, product);
    let names: Vec<String> = candidates.iter().map(|k| k.name()).collect();
    let remembered = MEMO
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .filter(|c| made_among(c, &names))
        .and_then(|c| by_name(&c.kernel));
    if let Some(kernel) = remembered {
        return Ok(kernel);
    }
    if !MEASURING.load(Ordering::Relaxed) {
        let Product { form, m, k, n } = product;
        return Ok(matmul::fastest(form, m, k, n, ctx.matmul_caps()));
    }
    let choice =
        cached_or_measured(ctx, waits, kernels, product, candidates, cache::path()).await?;
    let kernel = by_name(&choice.kernel).expect("the choice is a candidate");
    MEMO.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, choice);
    Ok(kernel)
}

/// The choice for `product` from the cache file at `path`, or measured now
/// and written there.
async fn cached_or_measured(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    kernels: &Kernels,
    product: Product,
    candidates: &[MatmulKernel],
    path: Option<PathBuf>,
) -> Result<Choice, GpuError> {
    let key = choice_key(ctx, product);
    let names: Vec<String> = candidates.iter().map(|k| k.name()).collect();
    let known = |c: &Choice| made_among(c, &names);
    let writable = match path.as_deref().map(|p| cache::lookup(p, &key, known)) {
        Some(cache::Lookup::Saved(choice)) => return Ok(choice),
        Some(cache::Lookup::Unsaved { writable }) => writable,
        None => false,
    };
    let forms: Vec<_> = candidates.iter().map(|&k| (k, product.form)).collect();
    let choice = measure(ctx, waits, kernels, product, &forms).await?;
    match path.filter(|_| writable) {
        Some(path) => Ok(cache::settle(&path, key, choice, known)),
        None => Ok(choice),
    }
}

/// Deterministic inputs in [-1, 1).
pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A candidate whose first two launches each take more than this many times
/// the best median so far is timed no further.
const CUTOFF_RATIO: f64 = 3.0;

/// Runs each candidate (a kernel, and the form it is bound with: the
/// product's, except where a test injects a wrong one) once, timed, and
/// compares its results with the host's f64 product; a candidate that agrees
/// is timed again, and once more unless both times are past [`CUTOFF_RATIO`]
/// times the best so far; it takes the median (or the faster of two).
pub(crate) async fn measure(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    kernels: &Kernels,
    product: Product,
    candidates: &[(MatmulKernel, MatmulForm)],
) -> Result<Choice, GpuError> {
    let Product { form, m, k, n } = product;
    let device = &ctx.device;
    let (a, b) = (random(m * k, 1), random(k * n, 2));
    let extra: Vec<f32> = match form.epilogue {
        Epilogue::ReluMask => random(m * n, 3).into_iter().map(|v| v.max(0.0)).collect(),
        _ => random(n, 3),
    };
    let upload =
        |label, values: &[f32]| buffers::storage_with(device, label, bytemuck::cast_slice(values));
    let (a_buf, b_buf, extra_buf) = (upload("a", &a), upload("b", &b), upload("extra", &extra));
    let rows = match form.batch_dim {
        BatchDim::M => m,
        BatchDim::K => k,
        BatchDim::None => 1,
    };
    let mut counters = Counters::default();
    let mut table = StepTable::new(device, &kernels.ctx.step_layout, ctx.step_stride(), 1);
    table.fill(&ctx.queue, rows, rows, &mut counters);
    let launch = |kernel, form, c: &wgpu::Buffer| {
        // The step's rows are the full product's: one row per "example".
        kernels.matmul(
            kernel,
            form,
            (m, k, n),
            1,
            MatmulOperands {
                a: a_buf.as_entire_binding(),
                b: Region::whole(&b_buf),
                c: c.as_entire_binding(),
                extra: extra_buf.as_entire_binding(),
            },
        )
    };
    // sum |a * b| per output, the scale of each output's rounding error.
    let at = |i: usize, kk: usize| {
        if form.transpose_a {
            a[kk * m + i]
        } else {
            a[i * k + kk]
        }
    };
    let bt = |kk: usize, j: usize| {
        if form.transpose_b {
            b[j * k + kk]
        } else {
            b[kk * n + j]
        }
    };
    // The f64 product with its epilogue, and sum |a*b| per output: the scale
    // of each output's rounding error.
    let mut want = vec![0.0f64; m * n];
    let mut magnitude = vec![0.0f64; m * n];
    for i in 0..m {
        for kk in 0..k {
            let x = at(i, kk) as f64;
            let row = i * n..(i + 1) * n;
            for ((j, w), mag) in want[row.clone()]
                .iter_mut()
                .enumerate()
                .zip(&mut magnitude[row])
            {
                let y = bt(kk, j) as f64;
                *w += x * y;
                *mag += (x * y).abs();
            }
        }
    }
    for (idx, w) in want.iter_mut().enumerate() {
        let col = idx % n;
        *w = match form.epilogue {
            Epilogue::None => *w,
            Epilogue::Bias => *w + extra[col] as f64,
            Epilogue::BiasRelu => (*w + extra[col] as f64).max(0.0),
            Epilogue::ReluMask => {
                if extra[idx] > 0.0 {
                    *w
                } else {
                    0.0
                }
            }
        };
    }
    // f32 sums carry rounding error growing as the square root of K in
    // practice: twice the conformance bound at the MLP's K (785), and 12
    // unit roundoffs per sqrt(K) past it (a convolution's weight gradient
    // sums 43,264 products at batch 64). A wrong kernel errs by whole units.
    let relative = 2e-5f64.max(12.0 * (k as f64).sqrt() * f64::from(f32::EPSILON) / 2.0);
    let mut trials = Vec::new();
    let mut best = f64::INFINITY;
    for &(kernel, bound_form) in candidates {
        let c = buffers::storage(device, "c", (4 * m * n) as u64);
        let run = launch(kernel, bound_form, &c);
        let time = || async {
            let p = profile::time_launches(
                ctx,
                waits,
                std::slice::from_ref(&run),
                &table.bind_group,
                table.offset(0),
            )
            .await?;
            Ok::<f64, GpuError>(p.kernels[0].ms)
        };
        // The first timed launch also gives the results to check.
        let first = time().await?;
        let read = buffers::read(device, &ctx.queue, waits, Region::whole(&c), &mut counters);
        let values = buffers::f32s(&read.await?);
        let values = &values[..m * n];
        let agrees = want
            .iter()
            .zip(values)
            .zip(&magnitude)
            .all(|((&w, &v), &mag)| (w - v as f64).abs() <= relative * mag + 2e-6);
        if !agrees {
            log::warn!(
                "dropping matmul kernel {} for {}: its results disagree with the host's",
                kernel.name(),
                product.key(),
            );
            trials.push(Trial {
                kernel: kernel.name(),
                ms: None,
            });
            continue;
        }
        // A candidate far slower than the best so far cannot win: the
        // faster of two launches is its time (the first may carry one-time
        // costs: a driver compiling at first dispatch, a fresh buffer's clear).
        let second = time().await?;
        let ms = if first.min(second) > CUTOFF_RATIO * best {
            first.min(second)
        } else {
            // The median of three timed launches.
            let mut times = [first, second, time().await?];
            times.sort_by(f64::total_cmp);
            times[1]
        };
        best = best.min(ms);
        trials.push(Trial {
            kernel: kernel.name(),
            ms: Some(ms),
        });
    }
    let best = trials
        .iter()
        .filter_map(|t| t.ms.map(|ms| (ms, &t.kernel)))
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, name)| name.clone())
        .ok_or_else(|| {
            GpuError::Unsupported(format!(
                "the {} product: no matmul kernel computes it correctly ({} tried)",
                product.key(),
                candidates.len()
            ))
        })?;
    Ok(Choice {
        product: product.key(),
        kernel: best,
        trials,
        host_checked: true,
    })
}

// Blocking, native: the browser runs the conformance suite only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::cache::CacheFile;
    use super::*;
    use crate::backend::gpu::buffers::Waits;
    use crate::backend::gpu::kernels::matmul;
    use crate::backend::host::Driver;

    /// Runs the tuner's `future` to completion on `ctx`'s device.
    fn block<T>(
        ctx: &GpuContext,
        waits: &Waits,
        future: impl std::future::Future<Output = Result<T, GpuError>>,
    ) -> T {
        let driver = Driver::Gpu {
            device: ctx.device.clone(),
            waits: waits.clone(),
        };
        driver.block_on(future).unwrap().unwrap()
    }

    /// The Vulkan device, or `None` (with a notice) where there is none and
    /// none is required.
    fn vulkan() -> Option<(GpuContext, Kernels)> {
        match GpuContext::open(wgpu::Backends::VULKAN, None) {
            Ok(ctx) => {
                let kernels = Kernels::new(&ctx.device, ctx.matmul_caps());
                Some((ctx, kernels))
            }
            Err(e) if std::env::var("GPU_MNIST_REQUIRE_ADAPTER").is_ok_and(|v| v == "1") => {
                panic!("{e}")
            }
            Err(e) => {
                eprintln!("notice: skipping: {e}");
                None
            }
        }
    }

    fn product(m: usize, k: usize, n: usize) -> Product {
        Product {
            form: MatmulForm {
                transpose_a: false,
                transpose_b: false,
                epilogue: Epilogue::Bias,
                batch_dim: BatchDim::M,
            },
            m,
            k,
            n,
        }
    }

    #[test]
    fn a_candidate_with_wrong_results_is_dropped() {
        let Some((ctx, kernels)) = vulkan() else {
            return;
        };
        let waits = Waits::default();
        let p = product(36, 20, 64);
        // The vec4 kernel bound without the bias: wrong for this product.
        let wrong = MatmulForm {
            epilogue: Epilogue::None,
            ..p.form
        };
        let choice = block(
            &ctx,
            &waits,
            measure(
                &ctx,
                &waits,
                &kernels,
                p,
                &[(MatmulKernel::Scalar, p.form), (MatmulKernel::Vec4, wrong)],
            ),
        );
        assert_eq!(choice.kernel, "scalar");
        assert_eq!(
            choice.trials[1],
            Trial {
                kernel: "vec4".into(),
                ms: None
            }
        );
        assert!(choice.trials[0].ms.is_some_and(|ms| ms > 0.0));
        // Bound right, it agrees and is timed.
        let choice = block(
            &ctx,
            &waits,
            measure(
                &ctx,
                &waits,
                &kernels,
                p,
                &[(MatmulKernel::Scalar, p.form), (MatmulKernel::Vec4, p.form)],
            ),
        );
        assert!(choice.trials.iter().all(|t| t.ms.is_some()), "{choice:?}");
    }

    #[test]
    fn runs_measuring_at_once_keep_every_choice_and_agree_on_each() {
        if vulkan().is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernels.json");
        // Three devices measuring at the same time, as runs sharing the
        // user's cache do: none may drop another's choice, and the two
        // measuring the same product must settle on one choice.
        let products = [
            product(40, 24, 128),
            product(72, 16, 64),
            product(40, 24, 128),
        ];
        let runs: Vec<(String, Choice)> = std::thread::scope(|scope| {
            let runs: Vec<_> = products
                .into_iter()
                .map(|p| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let (ctx, kernels) = vulkan().unwrap();
                        let candidates =
                            matmul::candidates(p.form, p.m, p.k, p.n, ctx.matmul_caps());
                        let waits = Waits::default();
                        let choice = block(
                            &ctx,
                            &waits,
                            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path)),
                        );
                        (choice_key(&ctx, p), choice)
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let file: CacheFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (key, choice) in &runs {
            assert_eq!(file.choices.get(key), Some(choice), "{key}");
        }
    }

    #[test]
    fn remembered_choices_are_taken_only_among_their_candidates() {
        let Some((ctx, kernels)) = vulkan() else {
            return;
        };
        let waits = Waits::default();
        // Shapes no other test measures: the remembered choices are the process'.
        let (p, other, failed) = (
            product(44, 28, 128),
            product(44, 28, 192),
            product(44, 28, 256),
        );
        let choose_now = |p: Product| {
            let candidates = matmul::candidates(p.form, p.m, p.k, p.n, ctx.matmul_caps());
            block(&ctx, &waits, choose(&ctx, &waits, &kernels, p, &candidates))
        };
        // The scalar kernel at a time no kernel takes: no measurement chose it.
        let planted = |p: Product| Choice {
            product: p.key(),
            kernel: "scalar".into(),
            trials: matmul::candidates(p.form, p.m, p.k, p.n, ctx.matmul_caps())
                .iter()
                .map(|k| Trial {
                    kernel: k.name(),
                    ms: Some(1e-6),
                })
                .collect(),
            host_checked: true,
        };
        let key = |p: Product| choice_key(&ctx, p);
        let mut stale = planted(other);
        stale.trials.pop();
        // A kernel that disagreed with the host is never taken.
        let mut wrong = planted(failed);
        wrong.trials[0].ms = None;
        let saved = BTreeMap::from([
            (key(p), planted(p)),
            (key(other), stale),
            (key(failed), wrong),
        ]);
        assert_eq!(
            remember_choices(&serde_json::to_string(&saved).unwrap()),
            Ok(3)
        );
        assert_eq!(choose_now(p), MatmulKernel::Scalar);
        // One made among other candidates (another version's) is not taken:
        // the product is chosen again (measured, or from the cache file).
        choose_now(other);
        let measured = recorded(&ctx, other).unwrap();
        assert_ne!(measured, saved[&key(other)]);
        assert!(measured.trials.iter().all(|t| t.ms != Some(1e-6)));
        choose_now(failed);
        assert_ne!(recorded(&ctx, failed).unwrap(), saved[&key(failed)]);
        let kept: BTreeMap<String, Choice> = serde_json::from_str(&remembered_choices()).unwrap();
        assert_eq!(kept[&key(p)], saved[&key(p)]);
        assert_eq!(kept[&key(other)], measured);
        assert!(remember_choices("{not json")
            .unwrap_err()
            .starts_with("kernel choices: key must be a string"));
    }

    #[test]
    fn choices_are_cached_and_a_corrupt_cache_is_rebuilt() {
        let Some((ctx, kernels)) = vulkan() else {
            return;
        };
        let waits = Waits::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernels.json");
        let p = product(40, 24, 128);
        let candidates = matmul::candidates(p.form, p.m, p.k, p.n, ctx.matmul_caps());
        assert!(candidates.len() > 1, "{candidates:?}");
        let first = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path.clone())),
        );
        assert_eq!(first.trials.len(), candidates.len());
        let key = choice_key(&ctx, p);
        let mut file: CacheFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(file.choices[&key], first);
        // A second run takes the file's word for it, measuring nothing.
        file.choices.get_mut(&key).unwrap().kernel = "scalar".into();
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let second = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path.clone())),
        );
        assert_eq!(second.kernel, "scalar");
        // A hand-edited choice naming no candidate is measured again.
        file.choices.get_mut(&key).unwrap().kernel = "no-such-kernel".into();
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let edited = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path.clone())),
        );
        assert_ne!(edited.kernel, "no-such-kernel");
        file.choices.insert(key.clone(), edited);
        // A choice made among other candidates (an older version's) is measured again.
        file.choices.get_mut(&key).unwrap().trials.pop();
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let again = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path.clone())),
        );
        assert_eq!(again.trials.len(), candidates.len());
        // A damaged cache (cut short) is ignored, measured again and written whole.
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let third = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(path.clone())),
        );
        assert_eq!(third.trials.len(), candidates.len());
        let rebuilt: CacheFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(rebuilt.choices[&key], third);
        // Any other file at the path (a checkpoint named by mistake) is left
        // as it is, and measuring goes on.
        let other = dir.path().join("model.safetensors");
        std::fs::write(&other, b"\x10\0\0\0\0\0\0\0{\"weights\": 1}").unwrap();
        let before = std::fs::read(&other).unwrap();
        let fourth = block(
            &ctx,
            &waits,
            cached_or_measured(&ctx, &waits, &kernels, p, &candidates, Some(other.clone())),
        );
        assert_eq!(fourth.trials.len(), candidates.len());
        assert_eq!(std::fs::read(&other).unwrap(), before);
    }
}
