#![doc = include_str!("../../README.md")]
//!
//! (This package holds rnnlab's cross-crate tests in `tests/it/`; its library only exists so
//! that the examples of the workspace README and of the guide, in both languages, run as
//! doctests.)

/// The guide, `docs/guide.md`: its code blocks run as doctests.
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}

/// The guide in Chinese, `docs/guide.zh.md`: its code blocks run as doctests.
#[doc = include_str!("../../docs/guide.zh.md")]
pub mod guide_zh {}
