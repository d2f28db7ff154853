//! Alert rules: their definition, the TOML file they come from, and validation.
//!
//! A rule file is a list of `[[rule]]` tables (see [`Rule`] for the fields and
//! [`DEFAULT_RULES_TOML`] for the city's default set). The REST API takes the same rule as
//! JSON: the two forms have the same field names and shapes. Everything is validated before it
//! is used, and every error names the rule and the field at fault.

mod error;
mod rule;
mod set;
mod source;
mod validate;

pub use error::RuleError;
pub use rule::{CompositeOp, CompositeScope, Condition, Rule, RuleDepartment, DEFAULT_HOLD_S};
pub use set::{RuleSet, DEFAULT_RULES_TOML};
pub use source::{RuleSource, SourceRef};
pub use validate::{
    is_slug, MAX_COMPOSITE_INPUTS, MAX_DURATION_S, MAX_RULE_DEVICES, MESSAGE_PLACEHOLDERS,
};

#[cfg(test)]
mod tests;
