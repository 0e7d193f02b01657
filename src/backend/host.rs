//! The host's edge: how a caller waits for the engine's futures. The engine
//! awaits read-backs and never blocks; a native caller blocks on them here
//! (driving the device meanwhile), a browser awaits them from its event loop.

use std::future::Future;
use std::pin::Pin;

#[cfg(not(target_arch = "wasm32"))]
use super::gpu::buffers::Waits;
#[cfg(not(target_arch = "wasm32"))]
use super::gpu::GpuError;
#[cfg(not(target_arch = "wasm32"))]
use super::DeviceError;

/// A future the engine hands out: single-threaded, as a browser's are.
pub(crate) type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What a blocking caller does while a device's future waits.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone)]
pub(crate) enum Driver {
    /// The CPU's futures wait for nothing.
    Cpu,
    /// Waits for the submission a read-back waits for.
    Gpu { device: wgpu::Device, waits: Waits },
}

/// Native only: in a browser a read-back completes only once control
/// returns to the event loop, so nothing there may block.
#[cfg(not(target_arch = "wasm32"))]
impl Driver {
    /// Runs `future` to completion on this thread.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Result<F::Output, DeviceError> {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return Ok(out);
            }
            if let Driver::Gpu { device, waits } = self {
                device
                    .poll(wgpu::PollType::Wait {
                        submission_index: waits.take(),
                        timeout: None,
                    })
                    .map_err(|e| GpuError::Device(e.to_string()))?;
            }
        }
    }
}

/// Lets the browser handle its events (input, rendering) before the engine
/// goes on: a macrotask, not a microtask, which would run before them. The
/// CPU device calls it between read-back windows; natively it does nothing.
pub(crate) async fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen_futures::js_sys::{Function, Promise, Reflect};
        use wasm_bindgen_futures::wasm_bindgen::{JsCast, JsValue};
        let global = wasm_bindgen_futures::js_sys::global();
        let promise = Promise::new(&mut |resolve, _| {
            let set_timeout = Reflect::get(&global, &JsValue::from_str("setTimeout"))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok());
            match set_timeout {
                Some(set_timeout) => {
                    let _ = set_timeout.call2(&global, &resolve, &JsValue::from(0));
                }
                None => {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}
