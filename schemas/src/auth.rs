//! Who is calling the API: the roles a bearer token carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::Department;

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// IOC operators: read everything; act on alerts; manage devices and rules.
    Operator,
    /// A city department: its own alerts, subscriptions and deliveries only.
    Department,
    /// Analysts: read everything, change nothing.
    Analyst,
    /// Administrators: everything, tokens included.
    Admin,
}

impl Role {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Department => "department",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

/// The caller of a request, as its token says; handlers find it in the request's
/// extensions when access control is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Principal {
    /// The token's name (who it was issued to).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// For the `department` role: which department.
    pub department: Option<Department>,
}

impl Principal {
    /// The department a request is confined to: `Some` for a department token.
    pub fn confined_to(&self) -> Option<Department> {
        match self.role {
            Role::Department => self.department,
            Role::Operator | Role::Analyst | Role::Admin => None,
        }
    }

    /// Whether the caller may see or act on what belongs to `department`.
    pub fn may_access(&self, department: Department) -> bool {
        self.confined_to().is_none_or(|own| own == department)
    }
}
