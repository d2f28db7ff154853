//! What is wrong with a query string, said the way every JSON route of the API answers it:
//! `400 {"error":{"code":"invalid_query","message":"...","field":"<the parameter>"}}`.
//!
//! The dashboard API and the alerts' routes each have their error type; both build the
//! message and the `field` of a bad query string here, so every route says it the same way.

/// A query string a route cannot take: the message and the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryProblem {
    /// Lowercase, without the framework's summary: `limit: invalid digit found in string`,
    /// ``unknown parameter `bogus`, expected one of `from`, `to` ``.
    pub message: String,
    /// The parameter at fault, when one is.
    pub field: Option<String>,
}

/// The problem in the text of a query string that did not deserialize: axum's
/// `QueryRejection::body_text()` (`Failed to deserialize query string: <serde path>: <serde
/// message>`) or serde's message alone.
///
/// The parameter is the serde path (`limit: invalid digit ...`), or the name serde quotes in
/// ``unknown field `x` `` and ``duplicate field `x` ``; an unknown field is called an unknown
/// parameter, listed once with the known ones as serde lists them.
pub fn query_problem(text: &str) -> QueryProblem {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text)
        .trim();
    if let Some(rest) = detail.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            return QueryProblem {
                message: format!("unknown parameter `{name}`{tail}"),
                field: Some(name.to_owned()),
            };
        }
    }
    if let Some(rest) = detail.strip_prefix("duplicate field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return QueryProblem {
                message: format!("parameter `{name}` is given more than once"),
                field: Some(name.to_owned()),
            };
        }
    }
    let field = detail.split_once(": ").and_then(|(path, _)| {
        let is_path = !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'));
        is_path.then(|| path.to_owned())
    });
    QueryProblem {
        message: lowercase_first(detail),
        field,
    }
}

/// An unknown parameter `name` of a route that takes `known`, said as [`query_problem`] says
/// serde's ``unknown field``.
pub fn unknown_parameter(name: &str, known: &[&str]) -> QueryProblem {
    let quoted: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    let expected = match quoted.as_slice() {
        [] => "there are no parameters".to_owned(),
        [one] => format!("expected {one}"),
        many => format!("expected one of {}", many.join(", ")),
    };
    QueryProblem {
        message: format!("unknown parameter `{name}`, {expected}"),
        field: Some(name.to_owned()),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "the query string is not valid".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_names_its_parameter() {
        let p = query_problem(
            "Failed to deserialize query string: window_size_ms: invalid digit found in string",
        );
        assert_eq!(p.field.as_deref(), Some("window_size_ms"));
        assert_eq!(p.message, "window_size_ms: invalid digit found in string");
        let p = query_problem(
            "Failed to deserialize query string: state: unknown variant `x`, expected one of \
             `active`, `acknowledged`, `resolved`",
        );
        assert_eq!(p.field.as_deref(), Some("state"));
    }

    #[test]
    fn an_unknown_parameter_is_named_and_the_known_listed_once() {
        let p = query_problem(
            "Failed to deserialize query string: unknown field `bogus`, expected one of \
             `from`, `to`, `limit`",
        );
        assert_eq!(p.field.as_deref(), Some("bogus"));
        assert_eq!(
            p.message,
            "unknown parameter `bogus`, expected one of `from`, `to`, `limit`"
        );
        assert_eq!(
            unknown_parameter("bogus", &["from", "to", "limit"]),
            p,
            "the map-parsed routes say it the same way"
        );
        assert_eq!(
            unknown_parameter("x", &["department"]).message,
            "unknown parameter `x`, expected `department`"
        );
    }

    #[test]
    fn a_repeated_parameter_is_named() {
        let p = query_problem("Failed to deserialize query string: duplicate field `limit`");
        assert_eq!(p.field.as_deref(), Some("limit"));
        assert_eq!(p.message, "parameter `limit` is given more than once");
    }

    #[test]
    fn a_message_without_a_parameter_has_no_field() {
        let p = query_problem("Failed to deserialize query string: Invalid percent-encoding");
        assert_eq!(p.field, None);
        assert_eq!(p.message, "invalid percent-encoding");
    }
}
