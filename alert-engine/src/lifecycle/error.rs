//! Why an operator's action on an alert was refused, and the limits on what an operator
//! writes.

/// The longest comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4000;
/// The longest actor name, in bytes.
pub const MAX_ACTOR_BYTES: usize = 128;

/// Why an operator's action was refused. Permanent: repeating it fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// No alert has this id (or it was resolved long ago and dropped from memory).
    #[error("no alert `{0}`")]
    NotFound(String),
    /// The alert is resolved: it cannot be acknowledged or resolved again.
    #[error("alert `{0}` is already resolved")]
    AlreadyResolved(String),
    /// The alert is already acknowledged.
    #[error("alert `{0}` is already acknowledged")]
    AlreadyAcknowledged(String),
    /// The actor's name is blank or too long.
    #[error("invalid actor: must be 1 to {MAX_ACTOR_BYTES} bytes and not blank")]
    InvalidActor,
    /// The comment is blank or too long.
    #[error("invalid comment: must be 1 to {MAX_COMMENT_BYTES} bytes and not blank")]
    InvalidComment,
}

impl LifecycleError {
    /// Whether retrying may succeed. Never: the lifecycle does no I/O, so no refusal is
    /// transient. An unknown alert, or one already resolved or acknowledged, stays so until
    /// another action changes it; a bad actor or comment until the request is fixed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LifecycleError::NotFound(_)
            | LifecycleError::AlreadyResolved(_)
            | LifecycleError::AlreadyAcknowledged(_) => false,
            LifecycleError::InvalidActor | LifecycleError::InvalidComment => false,
        }
    }
}

pub(super) fn valid_actor(actor: &str) -> Result<(), LifecycleError> {
    if actor.trim().is_empty() || actor.len() > MAX_ACTOR_BYTES {
        return Err(LifecycleError::InvalidActor);
    }
    Ok(())
}
