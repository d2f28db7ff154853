//! Subscriptions: who receives which alerts, where, signed with which secret.

use ioc_alert_engine::model::{Alert, Category, Severity};
use ioc_schemas::{Department, District, EpochMs};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::WebhookError;
use super::signing::{secret_key, secret_prefix};

/// The longest subscription id.
const MAX_ID_LEN: usize = 64;
/// The most rule patterns in one filter.
const MAX_RULES: usize = 100;
/// The longest rule pattern.
const MAX_RULE_LEN: usize = 128;

/// Which alerts a subscription receives. Every list is an OR of its values, the fields are
/// ANDed, and an empty list (or no `min_severity`) means "all".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionFilter {
    /// Alert categories (`traffic`, `air_quality`, `water_quality`, `flood`, `structure`,
    /// `public_safety`, `device_health`, `storm`).
    pub categories: Vec<Category>,
    /// The least severity delivered (`info` < `warning` < `major` < `critical`); an
    /// escalated alert is judged by its raised severity.
    pub min_severity: Option<Severity>,
    /// Districts (slugs: `hai_chau`, `thanh_khe`, `son_tra`, `ngu_hanh_son`, `lien_chieu`,
    /// `cam_le`, `hoa_vang`).
    pub districts: Vec<District>,
    /// With `districts` set, whether alerts without a district (city-wide ones, storm
    /// summaries of the whole city) are delivered too.
    pub include_citywide: bool,
    /// Rule ids; a pattern ending in `*` matches ids starting with what precedes it
    /// (`storm:*` takes every storm summary).
    pub rules: Vec<String>,
    /// Departments owning the alert (slugs: `transport`, `environment`, `police`, ...).
    pub departments: Vec<Department>,
}

impl Default for SubscriptionFilter {
    fn default() -> Self {
        SubscriptionFilter {
            categories: Vec::new(),
            min_severity: None,
            districts: Vec::new(),
            include_citywide: true,
            rules: Vec::new(),
            departments: Vec::new(),
        }
    }
}

impl SubscriptionFilter {
    /// Whether an alert passes this filter.
    pub fn matches(&self, alert: &Alert) -> bool {
        if !self.categories.is_empty() && !self.categories.contains(&alert.category) {
            return false;
        }
        if self.min_severity.is_some_and(|min| alert.severity < min) {
            return false;
        }
        if !self.districts.is_empty() {
            let ok = match alert.district {
                Some(d) => self.districts.contains(&d),
                None => self.include_citywide,
            };
            if !ok {
                return false;
            }
        }
        if !self.rules.is_empty() && !self.rules.iter().any(|p| rule_matches(p, &alert.rule_id)) {
            return false;
        }
        if !self.departments.is_empty() && !self.departments.contains(&alert.department) {
            return false;
        }
        true
    }

    /// Checks the rule patterns; the error names the field.
    pub fn validate(&self) -> Result<(), WebhookError> {
        if self.rules.len() > MAX_RULES {
            return Err(WebhookError::invalid(
                "filter.rules",
                format!("at most {MAX_RULES} rule patterns"),
            ));
        }
        for rule in &self.rules {
            let body = rule.strip_suffix('*').unwrap_or(rule);
            if rule.is_empty() || rule.len() > MAX_RULE_LEN {
                return Err(WebhookError::invalid(
                    "filter.rules",
                    format!("a rule pattern has 1 to {MAX_RULE_LEN} bytes"),
                ));
            }
            if body.contains('*') || rule.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(WebhookError::invalid(
                    "filter.rules",
                    format!("invalid rule pattern {rule:?}: no spaces, `*` only at the end"),
                ));
            }
        }
        Ok(())
    }

    /// The same filter with every list sorted and without duplicates.
    pub(crate) fn normalized(mut self) -> Self {
        self.categories.sort();
        self.categories.dedup();
        self.districts.sort();
        self.districts.dedup();
        self.rules.sort();
        self.rules.dedup();
        self.departments.sort();
        self.departments.dedup();
        self
    }
}

fn rule_matches(pattern: &str, rule_id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => rule_id.starts_with(prefix),
        None => pattern == rule_id,
    }
}

/// Checks a subscription id: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub(crate) fn validate_id(id: &str) -> Result<(), WebhookError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WebhookError::invalid(
            "id",
            format!("id {id:?} must be 1 to {MAX_ID_LEN} of a-z, 0-9, `_`, `-`"),
        ))
    }
}

/// Where a subscription comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionSource {
    /// The config file: re-applied at every start; the API cannot change or delete it.
    Config,
    /// The API.
    Api,
}

/// A subscription as the API shows it: never its secret, only the secret's first characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// The department it belongs to.
    pub department: Department,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Which alerts it receives.
    pub filter: SubscriptionFilter,
    /// Whether it receives deliveries (a disabled one keeps its pending deliveries until it is
    /// enabled again).
    pub enabled: bool,
    /// Where it comes from.
    pub source: SubscriptionSource,
    /// When it was created, epoch ms.
    pub created_ms: EpochMs,
    /// When it last changed, epoch ms.
    pub updated_ms: EpochMs,
    /// The first characters of the current secret (`whsec_AbCd…`).
    pub secret_prefix: String,
    /// When the current secret was set, epoch ms.
    pub secret_since_ms: EpochMs,
    /// While a rotated-out secret still signs too: when it stops, epoch ms.
    pub previous_secret_expires_ms: Option<EpochMs>,
}

/// A subscription to create or replace through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Its id (1 to 64 of `a-z`, `0-9`, `_`, `-`); generated when absent on create.
    #[serde(default)]
    #[schemars(pattern(r"^[a-z0-9_-]{1,64}$"))]
    pub id: Option<String>,
    /// The department it belongs to.
    pub department: Department,
    /// Where deliveries are POSTed: `http` or `https`, not a private address.
    #[schemars(extend("format" = "uri"))]
    pub url: String,
    /// Which alerts it receives (absent: all).
    #[serde(default)]
    pub filter: SubscriptionFilter,
    /// Whether it receives deliveries (default true).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Its secret, `whsec_<base64 of 24 to 64 bytes>`; generated when absent on create. On
    /// replace, a different one rotates the secret (the old one signs too for the grace
    /// period).
    #[serde(default)]
    pub secret: Option<String>,
}

fn enabled_default() -> bool {
    true
}

/// One signing secret of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSecret {
    pub(crate) secret: String,
    pub(crate) created_ms: EpochMs,
    /// `None` for the current secret; when a rotated-out one stops signing.
    pub(crate) expires_ms: Option<EpochMs>,
}

/// A subscription as the outbox stores it, secrets included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSubscription {
    pub(crate) id: String,
    pub(crate) department: Department,
    pub(crate) url: String,
    pub(crate) filter: SubscriptionFilter,
    pub(crate) enabled: bool,
    pub(crate) source: SubscriptionSource,
    pub(crate) created_ms: EpochMs,
    pub(crate) updated_ms: EpochMs,
    /// The current secret first, then rotated-out ones still in their grace period.
    pub(crate) secrets: Vec<StoredSecret>,
    /// For a config subscription: the config's secret last applied, so an unchanged config
    /// does not undo an API rotation.
    pub(crate) config_secret: Option<String>,
}

impl StoredSubscription {
    /// The API's view of it at `now`.
    pub(crate) fn view(&self, now: EpochMs) -> Subscription {
        let current = self.secrets.first();
        Subscription {
            id: self.id.clone(),
            department: self.department,
            url: self.url.clone(),
            filter: self.filter.clone(),
            enabled: self.enabled,
            source: self.source,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            secret_prefix: current
                .map(|s| secret_prefix(&s.secret))
                .unwrap_or_default(),
            secret_since_ms: current.map_or(0, |s| s.created_ms),
            previous_secret_expires_ms: self
                .secrets
                .iter()
                .skip(1)
                .filter_map(|s| s.expires_ms)
                .filter(|&e| e > now)
                .max(),
        }
    }

    /// Makes `secret` the current one; the current one keeps signing until `now + grace_ms`
    /// (dropped at once with no grace). Expired ones are forgotten.
    pub(crate) fn rotate_to(&mut self, secret: String, now: EpochMs, grace_ms: u64) {
        let mut kept: Vec<StoredSecret> = Vec::with_capacity(3);
        kept.push(StoredSecret {
            secret,
            created_ms: now,
            expires_ms: None,
        });
        for (i, old) in self.secrets.drain(..).enumerate() {
            let expires = if i == 0 {
                now.saturating_add(grace_ms)
            } else {
                old.expires_ms.unwrap_or(now)
            };
            if expires > now && old.secret != kept[0].secret {
                kept.push(StoredSecret {
                    expires_ms: Some(expires),
                    ..old
                });
            }
        }
        // The current secret, the one just rotated out and at most one older one.
        kept.truncate(3);
        self.secrets = kept;
        self.updated_ms = now;
    }

    /// The HMAC keys that sign at `now`, the current one first.
    pub(crate) fn signing_keys(&self, now: EpochMs) -> Vec<Vec<u8>> {
        self.secrets
            .iter()
            .filter(|s| s.expires_ms.is_none_or(|e| e > now))
            .filter_map(|s| secret_key(&s.secret).ok())
            .collect()
    }

    /// The current secret, in full.
    pub(crate) fn current_secret(&self) -> Option<&str> {
        self.secrets.first().map(|s| s.secret.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_alert_engine::model::AlertState;

    fn alert(
        rule: &str,
        category: Category,
        severity: Severity,
        district: Option<District>,
        department: Department,
    ) -> Alert {
        Alert {
            id: format!("{rule}:dev-1:1000"),
            rule_id: rule.to_owned(),
            entity_id: "dev-1".to_owned(),
            district,
            department,
            category,
            severity,
            state: AlertState::Active,
            message: "test".to_owned(),
            value: Some(1.0),
            opened_ms: 1000,
            breach_event_ms: 1000,
            updated_ms: 1000,
            breaches: 1,
            escalations: 0,
            acknowledged: None,
            resolved: None,
            comments: Vec::new(),
            suppressed: false,
        }
    }

    #[test]
    fn an_empty_filter_takes_everything() {
        let f = SubscriptionFilter::default();
        for category in Category::ALL {
            for severity in Severity::ALL {
                let a = alert("r", category, severity, None, Department::Police);
                assert!(f.matches(&a));
            }
        }
    }

    #[test]
    fn each_dimension_filters() {
        let a = alert(
            "aqi_high",
            Category::AirQuality,
            Severity::Major,
            Some(District::HaiChau),
            Department::Environment,
        );
        let f = |g: fn(&mut SubscriptionFilter)| {
            let mut f = SubscriptionFilter::default();
            g(&mut f);
            f.matches(&a)
        };
        assert!(f(
            |f| f.categories = vec![Category::AirQuality, Category::Flood]
        ));
        assert!(!f(|f| f.categories = vec![Category::Flood]));
        assert!(f(|f| f.min_severity = Some(Severity::Major)));
        assert!(f(|f| f.min_severity = Some(Severity::Warning)));
        assert!(!f(|f| f.min_severity = Some(Severity::Critical)));
        assert!(f(|f| f.districts = vec![District::HaiChau]));
        assert!(!f(|f| f.districts = vec![District::SonTra]));
        assert!(f(|f| f.rules = vec!["aqi_high".into()]));
        assert!(f(|f| f.rules = vec!["aqi_*".into()]));
        assert!(!f(|f| f.rules = vec!["aqi".into()]));
        assert!(f(|f| f.departments = vec![Department::Environment]));
        assert!(!f(|f| f.departments = vec![Department::Transport]));
        // AND across fields.
        assert!(!f(|f| {
            f.categories = vec![Category::AirQuality];
            f.districts = vec![District::SonTra];
        }));
    }

    #[test]
    fn citywide_alerts_and_district_filters() {
        let citywide = alert(
            "storm:city",
            Category::Storm,
            Severity::Critical,
            None,
            Department::DisasterPrevention,
        );
        let mut f = SubscriptionFilter {
            districts: vec![District::HoaVang],
            ..SubscriptionFilter::default()
        };
        assert!(f.matches(&citywide));
        f.include_citywide = false;
        assert!(!f.matches(&citywide));
    }

    #[test]
    fn rule_patterns_are_validated() {
        let f = |rules: &[&str]| SubscriptionFilter {
            rules: rules.iter().map(|s| (*s).to_owned()).collect(),
            ..SubscriptionFilter::default()
        };
        assert!(f(&["a", "storm:*"]).validate().is_ok());
        assert!(f(&[""]).validate().is_err());
        assert!(f(&["a b"]).validate().is_err());
        assert!(f(&["*a"]).validate().is_err());
        let e = f(&["x*y"]).validate().unwrap_err();
        assert!(matches!(
            e,
            WebhookError::InvalidSubscription {
                field: "filter.rules",
                ..
            }
        ));
        assert!(validate_id("tnmt-air_1").is_ok());
        assert!(validate_id("TNMT").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_period() {
        let mut s = StoredSubscription {
            id: "x".into(),
            department: Department::Police,
            url: "https://x.example".into(),
            filter: SubscriptionFilter::default(),
            enabled: true,
            source: SubscriptionSource::Api,
            created_ms: 0,
            updated_ms: 0,
            secrets: vec![StoredSecret {
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                created_ms: 0,
                expires_ms: None,
            }],
            config_secret: None,
        };
        let new = super::super::signing::generate_secret().unwrap();
        s.rotate_to(new.clone(), 1_000, 5_000);
        assert_eq!(s.current_secret(), Some(new.as_str()));
        assert_eq!(s.signing_keys(1_000).len(), 2);
        assert_eq!(s.signing_keys(5_999).len(), 2);
        assert_eq!(s.signing_keys(6_000).len(), 1);
        let v = s.view(2_000);
        assert_eq!(v.previous_secret_expires_ms, Some(6_000));
        assert!(v.secret_prefix.starts_with("whsec_") && !v.secret_prefix.contains(&new[12..]));
        assert_eq!(s.view(7_000).previous_secret_expires_ms, None);
        // No grace: the old one stops at once.
        let newer = super::super::signing::generate_secret().unwrap();
        s.rotate_to(newer, 10_000, 0);
        assert_eq!(s.signing_keys(10_000).len(), 1);
    }
}
