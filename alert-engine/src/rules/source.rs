//! What a rule watches: a reading metric or a KPI field, and the check that it exists.

use ioc_schemas::{Kind, KpiFamily, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::RuleError;
use crate::observe::{is_snake_name, kpi_field_known, kpi_field_names, kpi_scopes};

/// What a rule watches: one metric of raw readings, or one field of a KPI family.
///
/// Readings: `{ reading = "wind_speed_ms" }`, optionally `kind = "sensor"` to take only that
/// kind's readings (the metric names of [`ioc_schemas::Reading::samples`]: sensor metrics,
/// environment measurements, `vehicles`, `occupancy_pct`, `mean_speed_kmh`,
/// `queue_length_m` and `signal_available` (1 running, 0 faulted, flashing or dark) of junctions,
/// and camera event types whose value is the event's count).
///
/// KPIs: `{ kpi = "air", field = "aqi" }`, optionally `scope = "district"` (the default is the
/// family's device scope, or `district` for camera events). The fields of each family are
/// listed in [`crate::engine`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    /// The reading metric (snake_case) the rule watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// With `reading`: only readings of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The KPI family the rule watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpi: Option<KpiFamily>,
    /// With `kpi`: the field of the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `kpi`: the rows' scope (`device`, `district`, `department`, `city`); the family's
    /// first scope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// A validated source, as the engine matches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceRef {
    /// A reading metric, of any kind or of one.
    Reading {
        /// The metric.
        metric: String,
        /// Only this kind, if set.
        kind: Option<Kind>,
    },
    /// A KPI field.
    Kpi {
        /// The family.
        family: KpiFamily,
        /// The rows' scope.
        scope: Scope,
        /// The field.
        field: String,
    },
}

impl RuleSource {
    /// What it refers to, once validated; `None` when it is not a valid source.
    pub fn resolve(&self) -> Option<SourceRef> {
        match (&self.reading, &self.kpi, &self.field) {
            (Some(metric), None, None) if self.scope.is_none() => Some(SourceRef::Reading {
                metric: metric.clone(),
                kind: self.kind,
            }),
            (None, Some(family), Some(field)) if self.kind.is_none() => {
                let scope = self
                    .scope
                    .or_else(|| kpi_scopes(*family).first().copied())?;
                Some(SourceRef::Kpi {
                    family: *family,
                    scope,
                    field: field.clone(),
                })
            }
            _ => None,
        }
    }

    pub(super) fn validate(&self, rule: &str) -> Result<(), RuleError> {
        let bad = |field: &str, reason: String| Err(RuleError::invalid(rule, field, reason));
        match (&self.reading, &self.kpi) {
            (Some(_), Some(_)) => bad(
                "source",
                "give either `reading` or `kpi`, not both".to_owned(),
            ),
            (None, None) => bad("source", "give `reading` or `kpi`".to_owned()),
            (Some(metric), None) => {
                if self.field.is_some() {
                    return bad("source.field", "only a `kpi` source has a field".to_owned());
                }
                if self.scope.is_some() {
                    return bad("source.scope", "only a `kpi` source has a scope".to_owned());
                }
                if !is_snake_name(metric) {
                    return bad(
                        "source.reading",
                        format!("`{metric}` must be 1 to 64 characters of a-z, 0-9 and `_`"),
                    );
                }
                Ok(())
            }
            (None, Some(family)) => {
                if self.kind.is_some() {
                    return bad(
                        "source.kind",
                        "only a `reading` source has a kind".to_owned(),
                    );
                }
                let scopes = kpi_scopes(*family);
                let scope = match self.scope {
                    Some(s) if scopes.contains(&s) => s,
                    Some(s) => {
                        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                        return bad(
                            "source.scope",
                            format!(
                                "the {} family has no {} rows; use {}",
                                family.as_str(),
                                s.as_str(),
                                names.join(", ")
                            ),
                        );
                    }
                    None => match scopes.first() {
                        Some(s) => *s,
                        None => return bad("source.kpi", "family has no rows".to_owned()),
                    },
                };
                let Some(field) = &self.field else {
                    return bad("source.field", "a `kpi` source needs a field".to_owned());
                };
                if !kpi_field_known(*family, scope, field) {
                    return bad(
                        "source.field",
                        format!(
                            "the {} family ({} scope) has no field `{field}`; its fields: {}",
                            family.as_str(),
                            scope.as_str(),
                            kpi_field_names(*family, scope)
                        ),
                    );
                }
                Ok(())
            }
        }
    }
}
