//! City KPI formulas: pure functions, unit-tested with worked examples. The dataflow applies
//! them to window results.

pub mod aqi;
pub mod hydrology;
pub mod traffic;
