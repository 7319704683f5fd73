//! `run_on` (kala's extension): which live instances run a job's points,
//! chosen by their tags (`--tag key=value`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JobError;

/// The most tags a `run_on` may require.
pub const MAX_TAGS: usize = 16;
/// The most instances a point may run on with `count`.
pub const MAX_COUNT: u32 = 64;

/// Where a job's points run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOn {
    /// An instance matches when it has every one of these tags with this
    /// value (no tags: every instance matches).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// How many matching instances run each point (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Every live matching instance runs each point.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub every: bool,
}

impl RunOn {
    pub fn validate(&self) -> Result<(), JobError> {
        if self.tags.len() > MAX_TAGS {
            return Err(JobError::new(
                "run_on.tags",
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        for (k, v) in &self.tags {
            let key_ok = !k.is_empty()
                && k.len() <= 63
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !key_ok || v.len() > 255 || v.chars().any(|c| c.is_control() || c == ' ') {
                return Err(JobError::new(
                    format!("run_on.tags.{k}"),
                    "a tag key is 1-63 letters, digits, '_', '.' or '-'; its value at most 255 characters without spaces",
                ));
            }
        }
        match (self.count, self.every) {
            (Some(_), true) => Err(JobError::new(
                "run_on",
                "count and every exclude each other",
            )),
            (Some(c), false) if c == 0 || c > MAX_COUNT => Err(JobError::new(
                "run_on.count",
                format!("{c} is not between 1 and {MAX_COUNT}"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether an instance with `tags` may run the job's points.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }

    /// How many instances each point asks for (`None`: every match).
    pub fn wanted(&self) -> Option<usize> {
        if self.every {
            None
        } else {
            Some(self.count.unwrap_or(1) as usize)
        }
    }

    /// `{role: etl}`, for messages.
    pub fn describe(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", tags.join(", "))
    }
}

/// `run_on` from a request's JSON; unknown keys are errors.
pub fn run_on_from_value(field: &str, v: Value) -> Result<RunOn, JobError> {
    let Value::Object(obj) = v else {
        return Err(JobError::new(field, "expected an object"));
    };
    const KEYS: [&str; 3] = ["tags", "count", "every"];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(JobError::new(
            format!("{field}.{k}"),
            format!("unknown field (expected one of {})", KEYS.join(", ")),
        ));
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| JobError::new(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_needs_every_tag() {
        let r = RunOn {
            tags: tags(&[("role", "etl")]),
            ..RunOn::default()
        };
        assert!(r.matches(&tags(&[("role", "etl"), ("zone", "a")])));
        assert!(!r.matches(&tags(&[("role", "web")])));
        assert!(!r.matches(&tags(&[])));
        assert!(RunOn::default().matches(&tags(&[])));
        assert_eq!(r.wanted(), Some(1));
        assert_eq!(r.describe(), "{role: etl}");
    }

    #[test]
    fn bad_run_on_says_why() {
        let e = |v: Value| {
            run_on_from_value("run_on", v)
                .and_then(|r| r.validate())
                .map_err(|e| e.to_string())
        };
        assert!(e(serde_json::json!({"tags": {"role": "etl"}, "count": 2})).is_ok());
        assert!(
            e(serde_json::json!({"count": 0}))
                .unwrap_err()
                .contains("run_on.count")
        );
        assert!(
            e(serde_json::json!({"count": 2, "every": true}))
                .unwrap_err()
                .contains("exclude")
        );
        assert!(
            e(serde_json::json!({"tag": {}}))
                .unwrap_err()
                .contains("run_on.tag")
        );
        assert!(
            e(serde_json::json!({"tags": {"a b": "x"}}))
                .unwrap_err()
                .contains("run_on.tags.a b")
        );
        assert!(e(serde_json::json!({"count": "2"})).is_err());
    }
}
