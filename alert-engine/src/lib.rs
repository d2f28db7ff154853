//! The alert engine of the Da Nang IOC backend: what turns readings and KPIs into alerts,
//! without I/O and without async.
//!
//! [`observe`] turns readings and KPI rows into observations, one number each; [`rules`]
//! (from a TOML file or JSON) say which numbers breach when; the [`engine`] runs the rules
//! over the observations and reports each (rule, entity) pair whose state changed as a
//! [`Verdict`]; the [`lifecycle`] turns verdicts into alerts and their events: one open alert
//! per (rule, entity), resolved after a hold time, escalated when nobody acknowledges it, and
//! storm control folding alert storms into summaries.
//!
//! The service around it (the running manager, the state file, webhook delivery, the REST
//! API) is the `ioc-alerts` crate.

pub mod engine;
pub mod lifecycle;
pub mod model;
pub mod observe;
pub mod rules;

#[cfg(test)]
mod testkit;

pub use engine::{Engine, Verdict};
pub use lifecycle::{AlertBook, AlertFilter, LifecycleConfig, LifecycleError};
pub use observe::{Observation, ReadingSamples, Source};
pub use rules::{Rule, RuleError, RuleSet};
