//! Alerts of the Da Nang IOC backend.
//!
//! Rules (from a TOML file and the API) turn readings and KPIs into breaches; the lifecycle
//! keeps one open alert per (rule, entity), resolves it when its condition clears after a hold
//! time, escalates it when nobody acknowledges it, and folds alert storms into summaries; the
//! webhook dispatcher delivers the notifications departments subscribe to, at least once, from
//! a durable outbox, signed in the Standard Webhooks style.

pub mod api;
pub mod engine;
pub mod lifecycle;
pub mod manager;
pub mod model;
pub mod rules;
pub mod state;
pub mod webhooks;

pub use api::api_description;
pub use engine::ReadingSamples;
pub use manager::{Action, Alerts, AlertsConfig, AlertsError, AlertsTask, DeviceLookup};
pub use model::{Alert, AlertEvent, AlertState, Category, Comment, Severity, Transition};
