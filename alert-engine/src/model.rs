//! What alerts are: severities, categories, states, the alert itself, the events of its
//! lifecycle and the notifications sent to departments. Shared by the rule engine, the
//! lifecycle, the webhook dispatcher and the API; the types live in `ioc-schemas` because
//! they are also wire and storage types (webhook payloads, the WebSocket, ClickHouse).

pub use ioc_schemas::{Alert, AlertEvent, AlertState, Category, Comment, Severity, Transition};
