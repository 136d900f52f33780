#![doc = include_str!("../README.md")]

#[cfg(test)]
mod bidir_tests;
mod bidirectional;
mod config;
mod flow;
mod jacobian;
mod linalg;
mod params;
mod report;
mod saturation;
#[cfg(test)]
mod tests;
mod verdict;

pub use bidirectional::{diagnose_bidirectional, report_from_bidirectional_pass};
pub use config::{DiagnoseConfig, FlowConfig, JacobianConfig, LossKind, Thresholds};
pub use flow::{
    Convention, DecayFit, Horizon, LayerFlow, PartFlow, flow_from_norms, gradient_flow, part_flow, row_norms,
};
pub use jacobian::{
    JacobianReport, LagNorm, Pascanu, StepSvd, jacobian_analysis, pascanu, product_norm, step_jacobian,
};
pub use params::{ParamSnapshot, ParamStat, param_stats};
pub use report::{LayerReport, Report, SCHEMA_VERSION, diagnose, report_from_pass};
pub use saturation::{StepSaturation, saturation_trace};
pub use verdict::{Verdict, VerdictKind, direction_verdict, layer_verdict, model_verdict};
