#![doc = include_str!("../../README.md")]
//!
//! (This package holds rnnlab's cross-crate tests in `tests/it/`; its library only exists so
//! that the workspace README's examples run as doctests.)
