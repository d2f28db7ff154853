//! The alert lifecycle: one open alert per (rule, entity), hold time, escalation, storm control.
//!
//! [`AlertBook::apply`] turns the engine's [`Verdict`]s into alerts and [`AlertEvent`]s:
//!
//! - **One open alert per (rule, entity).** A breach with no open alert opens one (`opened`);
//!   a repeat breach updates it (`updated`: the breach count, the value and the message),
//!   never a second one. Updates are coalesced: at most one `updated` event per alert every
//!   [`LifecycleConfig::update_event_every_s`]; the count keeps growing in between and the
//!   next event (or [`AlertBook::tick`]) carries it.
//! - **States** active → acknowledged → resolved ([`AlertBook::acknowledge`],
//!   [`AlertBook::resolve`]); comments at any time ([`AlertBook::comment`]).
//! - **Auto-resolve with a hold time.** When the condition clears, the alert resolves by
//!   itself (`resolved`, by `auto`) once the clear has lasted the rule's `hold_s` of event time,
//!   which also means it stayed open at least that long. A breach in between cancels the
//!   clear and keeps the same alert, so a flapping value gives one alert, not dozens. Event
//!   time is the newest verdict's event time (or [`AlertBook::advance_event_time`]); when
//!   verdicts stop coming, the hold also runs out on the wall clock ([`AlertBook::tick`]).
//! - **Escalation.** An alert still `active` (not acknowledged) `escalate_after_s` after it
//!   opened is raised one severity step and notified again (`escalated`); again after each
//!   further period, at most [`LifecycleConfig::max_escalations`] times. Driven by `tick`
//!   (wall time).
//! - **Storm control.** Within a storm window, at most `max_per_rule`, `max_per_department`
//!   and `max_per_district` new alerts are notified. A new alert beyond a cap is kept and
//!   listed but marked `suppressed` (one `suppressed` event, not notified; its later
//!   transitions are not notified either, and it does not escalate) and folded into a storm
//!   summary: an alert of category `storm`, rule `storm:<scope>:<value>` (`storm:rule:<rule
//!   id>`, `storm:department:<slug>` or `storm:district:<slug>`), entity `<value>`. The
//!   summary of the first cap exceeded is opened and notified once; later suppressed alerts of
//!   any of its scopes are folded into the open summary (its `breaches` counts the alerts
//!   folded), and its update is notified at most every
//!   [`LifecycleConfig::summary_update_every_s`]. It resolves by itself once nothing was
//!   folded into it for [`LifecycleConfig::summary_hold_s`].
//! - **Events.** Every transition is an [`AlertEvent`] whose id is `<alert id>:<n>`, where `n`
//!   is computed from the alert (breaches + escalations + comments + acknowledged + resolved):
//!   it grows with every event, so ids are unique and stay so after a restart, provided the
//!   alert of every event is persisted.
//! - **Restart.** [`AlertBook::from_alerts`] rebuilds the book from the persisted alerts: a
//!   breach after the restart updates the still-open alert, acknowledgements are kept. The
//!   engine restarts with unknown states and sends a clear verdict on the first clear
//!   observation, so an alert whose condition cleared while the process was down resolves
//!   (after its hold). Call [`AlertBook::set_rule_timings`] so escalation resumes before the
//!   next verdict.
//! - **Bounded memory.** Resolved alerts stay listed for [`LifecycleConfig::keep_resolved_s`]
//!   and at most [`LifecycleConfig::max_resolved`] of them (oldest dropped first); they remain
//!   in ClickHouse. Open alerts are bounded by the rules' entities.
//!
//! [`Verdict`]: crate::engine::Verdict
//! [`AlertEvent`]: crate::model::AlertEvent

mod book;
mod config;
mod error;
mod storm;

pub use book::{latest_event, AlertBook, AUTO_RESOLVER, SYSTEM_ACTOR};
pub use config::{AlertFilter, LifecycleConfig};
pub use error::{LifecycleError, MAX_ACTOR_BYTES, MAX_COMMENT_BYTES};
pub use storm::STORM_PREFIX;

#[cfg(test)]
mod tests;
