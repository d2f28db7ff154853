//! City KPIs: the formulas (pure functions, unit-tested with worked examples), the state that
//! applies them to final base-window results (`device`, `city`), and the operators that drive it.

pub mod aqi;
pub mod city;
pub mod device;
pub mod hydrology;
mod operators;
pub mod traffic;
pub mod water;

pub(crate) use operators::{city_kpis, device_kpis};
