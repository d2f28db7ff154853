//! The Da Nang IOC backend daemon, as a library so tests and the load generator can run the
//! same pipeline in-process.

pub mod alerting;
pub mod backfill;
pub mod broker;
pub mod config;
pub mod config_reference;
mod history;
pub mod instance;
pub mod pipeline;
pub mod registry;
mod storage;

pub use config::Config;
