//! Any bytes as an IDX file (raw or gzip): a parse exactly as long as its
//! header says, or a typed error; never a panic or an allocation beyond what
//! the input could hold.
#![no_main]

use gpu_mnist::data::idx::{self, IMAGES_MAGIC, LABELS_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for magic in [IMAGES_MAGIC, LABELS_MAGIC] {
        if let Ok(array) = idx::parse(bytes, magic) {
            assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
            assert!(array.data.len() as u64 <= 1032 * bytes.len() as u64);
        }
    }
});
