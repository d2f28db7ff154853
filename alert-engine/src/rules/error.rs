//! Why a rule or a rule file was refused.

/// Why a rule or a rule file was refused. Permanent: the rule must be fixed; retrying the same
/// input fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text is not TOML, or not a list of `[[rule]]` tables.
    #[error("rules file is not valid: {0}")]
    Syntax(String),
    /// A rule has the wrong shape: an unknown field, a missing one, a value of the wrong type.
    #[error("rule `{rule}`: {reason}")]
    Malformed {
        /// The rule's id, or `#<n>` (1-based position) when it has none.
        rule: String,
        /// What the parser said.
        reason: String,
    },
    /// A field of a rule has a value that is not allowed.
    #[error("rule `{rule}`: {field}: {reason}")]
    Invalid {
        /// The rule's id.
        rule: String,
        /// The field at fault, dotted (`condition.above`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two rules share an id.
    #[error("rule id `{0}` appears twice")]
    Duplicate(String),
    /// No rule has this id.
    #[error("no rule `{0}`")]
    NotFound(String),
    /// The rule cannot be removed: a composite rule combines it.
    #[error("rule `{rule}` cannot be removed: composite rule `{by}` uses it")]
    InUse {
        /// The rule asked to be removed.
        rule: String,
        /// A composite rule that refers to it.
        by: String,
    },
    /// The set could not be written as TOML.
    #[error("rules cannot be written as toml")]
    Serialize(#[source] toml::ser::Error),
}

impl RuleError {
    /// Whether retrying may succeed. Never: the engine does no I/O, so no rule error is
    /// transient. A bad file or rule (`Syntax`, `Malformed`, `Invalid`) fails the same way
    /// until it is fixed; a change that conflicts with the set (`Duplicate`, `NotFound`,
    /// `InUse`) until another change alters the set; a set that cannot be written (`Serialize`)
    /// on every attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuleError::Syntax(_)
            | RuleError::Malformed { .. }
            | RuleError::Invalid { .. }
            | RuleError::Serialize(_) => false,
            RuleError::Duplicate(_) | RuleError::NotFound(_) | RuleError::InUse { .. } => false,
        }
    }

    /// [`RuleError::Invalid`] of a rule's field.
    pub(crate) fn invalid(
        rule: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> RuleError {
        RuleError::Invalid {
            rule: rule.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
