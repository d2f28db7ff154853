//! Webhook delivery to departments: subscriptions, a durable outbox, signed at-least-once delivery.
