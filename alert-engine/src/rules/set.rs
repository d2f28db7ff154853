//! A validated set of rules: the rules file, the default set, and changes one rule at a time.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::error::RuleError;
use super::rule::{CompositeScope, Condition, Rule};

/// The default rule set for Da Nang (`alert-engine/rules/da_nang.toml`).
pub const DEFAULT_RULES_TOML: &str = include_str!("../../rules/da_nang.toml");

/// The file form: `[[rule]]` tables.
#[derive(Serialize)]
struct RuleFile<'a> {
    rule: &'a [Rule],
}

/// A validated set of rules: distinct ids, every rule valid, composites referring to rules of
/// the set without cycles. Kept in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleSet {
    #[serde(rename = "rule")]
    rules: Vec<Rule>,
}

impl RuleSet {
    /// An empty set.
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// The city's default set ([`DEFAULT_RULES_TOML`]).
    pub fn da_nang() -> Result<RuleSet, RuleError> {
        RuleSet::from_toml(DEFAULT_RULES_TOML)
    }

    /// Parses and validates a rules file: `[[rule]]` tables and nothing else.
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| RuleError::Syntax(e.to_string().trim().to_owned()))?;
        let mut rules = Vec::new();
        for (key, value) in table {
            if key != "rule" {
                return Err(RuleError::Syntax(format!(
                    "unknown top-level key `{key}`; a rules file holds `[[rule]]` tables"
                )));
            }
            let toml::Value::Array(items) = value else {
                return Err(RuleError::Syntax(
                    "`rule` must be an array of tables (`[[rule]]`)".to_owned(),
                ));
            };
            for (i, item) in items.into_iter().enumerate() {
                let label = item
                    .get("id")
                    .and_then(|v| v.as_str())
                    .map_or_else(|| format!("#{}", i + 1), str::to_owned);
                let rule: Rule =
                    item.try_into()
                        .map_err(|e: toml::de::Error| RuleError::Malformed {
                            rule: label,
                            reason: e.message().trim().to_owned(),
                        })?;
                rules.push(rule);
            }
        }
        RuleSet::from_rules(rules)
    }

    /// Validates a list of rules (from JSON, say) into a set.
    pub fn from_rules(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let set = RuleSet { rules };
        set.validate()?;
        Ok(set)
    }

    /// Writes the set as a rules file (`[[rule]]` tables); [`RuleSet::from_toml`] reads it
    /// back to an equal set. Comments of the original file are not kept.
    pub fn to_toml(&self) -> Result<String, RuleError> {
        toml::to_string(&RuleFile { rule: &self.rules }).map_err(RuleError::Serialize)
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds a rule, or replaces the one with its id (in place). Validated against the whole
    /// set; on error the set is unchanged. Returns the rule replaced, if any.
    pub fn upsert(&mut self, rule: Rule) -> Result<Option<Rule>, RuleError> {
        let mut next = self.rules.clone();
        let old = match next.iter_mut().find(|r| r.id == rule.id) {
            Some(slot) => Some(std::mem::replace(slot, rule)),
            None => {
                next.push(rule);
                None
            }
        };
        let candidate = RuleSet { rules: next };
        candidate.validate()?;
        *self = candidate;
        Ok(old)
    }

    /// Adds a new rule; refused if its id is taken.
    pub fn insert(&mut self, rule: Rule) -> Result<(), RuleError> {
        if self.get(&rule.id).is_some() {
            return Err(RuleError::Duplicate(rule.id));
        }
        self.upsert(rule).map(|_| ())
    }

    /// Replaces an existing rule; refused if no rule has its id. Returns the old rule.
    pub fn replace(&mut self, rule: Rule) -> Result<Rule, RuleError> {
        if self.get(&rule.id).is_none() {
            return Err(RuleError::NotFound(rule.id));
        }
        self.upsert(rule)?
            .ok_or_else(|| RuleError::NotFound(String::new()))
    }

    /// Removes a rule; refused if it does not exist or a composite rule uses it.
    pub fn remove(&mut self, id: &str) -> Result<Rule, RuleError> {
        let Some(i) = self.rules.iter().position(|r| r.id == id) else {
            return Err(RuleError::NotFound(id.to_owned()));
        };
        if let Some(by) = self
            .rules
            .iter()
            .find(|r| r.inputs().iter().any(|input| input == id))
        {
            return Err(RuleError::InUse {
                rule: id.to_owned(),
                by: by.id.clone(),
            });
        }
        Ok(self.rules.remove(i))
    }

    /// Checks every rule, distinct ids, composite references and cycles.
    fn validate(&self) -> Result<(), RuleError> {
        let mut ids = BTreeSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !ids.insert(rule.id.as_str()) {
                return Err(RuleError::Duplicate(rule.id.clone()));
            }
        }
        for rule in &self.rules {
            let on_devices = matches!(
                rule.condition,
                Condition::Composite {
                    scope: CompositeScope::Devices(_),
                    ..
                }
            );
            for input in rule.inputs() {
                let Some(input_rule) = self.get(input) else {
                    return Err(RuleError::invalid(
                        &rule.id,
                        "condition.of",
                        format!("no rule `{input}` in the set"),
                    ));
                };
                if on_devices && !input_rule.inputs().is_empty() {
                    return Err(RuleError::invalid(
                        &rule.id,
                        "condition.of",
                        format!(
                            "a `devices` composite combines rules about devices; `{input}` is a composite rule"
                        ),
                    ));
                }
            }
        }
        self.check_cycles()
    }

    /// Depth-first search over composite references; reports the first cycle found.
    fn check_cycles(&self) -> Result<(), RuleError> {
        let inputs: BTreeMap<&str, &[String]> = self
            .rules
            .iter()
            .map(|r| (r.id.as_str(), r.inputs()))
            .collect();
        // 0 unvisited, 1 on the path, 2 done.
        let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
        for start in inputs.keys() {
            if mark.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            // Stack of (rule, next input index); `path` mirrors it for the message.
            let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
            mark.insert(start, 1);
            while let Some((node, next)) = stack.last_mut() {
                let node_inputs = inputs.get(*node).copied().unwrap_or(&[]);
                if let Some(child) = node_inputs.get(*next) {
                    *next += 1;
                    let child = child.as_str();
                    match mark.get(child).copied().unwrap_or(0) {
                        0 => {
                            mark.insert(child, 1);
                            stack.push((child, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                            let mut path: Vec<&str> =
                                stack.iter().skip(from).map(|(n, _)| *n).collect();
                            path.push(child);
                            return Err(RuleError::invalid(
                                child,
                                "condition.of",
                                format!("composite rules form a cycle: {}", path.join(" -> ")),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    mark.insert(node, 2);
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}
