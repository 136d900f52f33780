#![doc = include_str!("../README.md")]

mod fan;
mod gain;
mod init;
mod orthogonal;
mod rescale;
mod spectral;

pub use fan::FanMode;
pub use gain::{Nonlinearity, gain};
pub use init::Init;
pub use rescale::Rescale;
pub use spectral::{max_singular_value, spectral_radius};
