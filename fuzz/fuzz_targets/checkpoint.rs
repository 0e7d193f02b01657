//! Any bytes as a checkpoint: a usable model (valid architecture, finite
//! values, layers that chain) or a one-line error; never a panic.
#![no_main]

use gpu_mnist::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match checkpoint::from_bytes(bytes, "fuzzed") {
        Ok(saved) => {
            assert!(saved.spec.validate().is_ok());
            assert_eq!(saved.spec.layer_dims(), saved.params.layer_dims());
        }
        Err(e) => assert_eq!(e.to_string().lines().count(), 1),
    }
});
