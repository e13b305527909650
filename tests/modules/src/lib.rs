//! Paths of the guest modules in `modules/`, built for `wasm32-wasip1` by this crate's build
//! script. Tests and benchmarks read the modules from these paths.
//!
//! ```
//! let bytes = std::fs::read(steinadler_test_modules::HELLO).unwrap();
//! assert!(bytes.starts_with(b"\0asm"));
//! ```

include!(concat!(env!("OUT_DIR"), "/modules.rs"));
