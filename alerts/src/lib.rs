//! The alert service of the Da Nang IOC backend.
//!
//! The alert engine (`ioc-alert-engine`: rules, observations, evaluation, the lifecycle and
//! storm control; pure) decides what is an alert; this crate runs it. The [`manager`] task
//! owns the engine and the alert book, takes observations from the pipeline and commands from
//! the REST API ([`api`]), keeps every alert in a state file ([`state`]) so a restart neither
//! duplicates nor loses one, and hands the notifications to the webhook dispatcher
//! ([`webhooks`]), which delivers the ones departments subscribe to, at least once, from a
//! durable outbox, signed in the Standard Webhooks style.
//!
//! The engine's modules are re-exported at the paths they have always had here
//! ([`engine`], [`lifecycle`], [`rules`], [`model`]).

pub mod api;
mod http;
pub mod manager;
pub mod state;
mod storage;
pub mod webhooks;

/// The rule engine and the observations it evaluates: [`ioc_alert_engine::engine`] and
/// [`ioc_alert_engine::observe`].
pub mod engine {
    pub use ioc_alert_engine::engine::*;
    pub use ioc_alert_engine::observe::*;
}

/// The alert lifecycle and storm control: [`ioc_alert_engine::lifecycle`].
pub mod lifecycle {
    pub use ioc_alert_engine::lifecycle::*;
}

/// Alert rules and their validation: [`ioc_alert_engine::rules`].
pub mod rules {
    pub use ioc_alert_engine::rules::*;
}

/// What alerts are: [`ioc_alert_engine::model`].
pub mod model {
    pub use ioc_alert_engine::model::*;
}

pub use api::api_description;
pub use ioc_alert_engine::observe::ReadingSamples;
pub use manager::{Action, Alerts, AlertsConfig, AlertsError, AlertsTask, DeviceLookup};
pub use model::{Alert, AlertEvent, AlertState, Category, Comment, Severity, Transition};
