//! What the redb files of alerts (the state file, the webhook outbox) share: which of their
//! failures are worth retrying.

/// Whether a redb failure may pass if the same call is made again: an I/O failure (the disk
/// may recover), a lock another holder lets go of, a write transaction in the way. A corrupt
/// or newer file, a value too large, a table of the wrong type, a database poisoned by an
/// earlier failure or closed are permanent.
pub(crate) fn redb_is_transient(error: &redb::Error) -> bool {
    matches!(
        error,
        redb::Error::Io(_)
            | redb::Error::DatabaseAlreadyOpen
            | redb::Error::TransactionInProgress
            | redb::Error::WouldBlock
    )
}
