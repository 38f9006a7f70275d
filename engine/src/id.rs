//! Validated names: workflow ids, task names and store keys.
//!
//! Every object name in a store is built from these, so that no id can escape
//! the store root: no `..`, no absolute path, no separator inside an id, no
//! control character, nothing empty or overlong.

use std::fmt;

/// Longest workflow id or task name accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest store key accepted (S3 allows 1024 bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidId {
    /// What kind of name it was ("workflow id", "task name", "store key").
    pub what: &'static str,
    /// The refused value, as given.
    pub value: String,
    /// What rule it broke.
    pub reason: &'static str,
}

fn is_id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'=')
}

/// Checks one name: 1..=`max` bytes of `[A-Za-z0-9._=-]`, not starting with `.`.
pub fn validate_component(what: &'static str, value: &str, max: usize) -> Result<(), InvalidId> {
    let fail = |reason| {
        Err(InvalidId {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > max {
        return fail("it is too long");
    }
    if value.starts_with('.') {
        return fail("it starts with '.' (reserved for temporary files and commit logs, and '..' would escape)");
    }
    if value.contains('/') || value.contains('\\') {
        return fail("it contains a path separator");
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return fail("it contains a control character");
    }
    if !value.bytes().all(is_id_char) {
        return fail("only letters, digits, '.', '_', '-' and '=' are allowed");
    }
    Ok(())
}

/// Checks a store key: `/`-separated components, each a valid component.
pub fn validate_key(key: &str) -> Result<(), InvalidId> {
    if key.len() > MAX_KEY_LEN {
        return Err(InvalidId {
            what: "store key",
            value: key.to_owned(),
            reason: "it is too long",
        });
    }
    if key.starts_with('/') {
        return Err(InvalidId {
            what: "store key",
            value: key.to_owned(),
            reason: "it is absolute",
        });
    }
    for part in key.split('/') {
        validate_component("store key", part, 255).map_err(|e| InvalidId {
            value: key.to_owned(),
            ..e
        })?;
    }
    Ok(())
}

/// Checks a key prefix used for listing: empty, or components each valid, where
/// the last one may be empty (a prefix ending in `/`) or partial.
pub fn validate_prefix(prefix: &str) -> Result<(), InvalidId> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    validate_key(trimmed).map_err(|e| InvalidId {
        what: "store prefix",
        value: prefix.to_owned(),
        ..e
    })
}

/// A validated workflow id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowId(String);

impl WorkflowId {
    /// Validates `id` as a workflow id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        validate_component("workflow id", &id, MAX_ID_LEN)?;
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkflowId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<WorkflowId> for String {
    fn from(value: WorkflowId) -> Self {
        value.0
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for WorkflowId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_rejected() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [
            "", "..", ".", "../x", "/abs", "a/b", "a\\b", "a\nb", "a\0b", "tab\t", "sp ace", "ü",
            &long,
        ] {
            let err = WorkflowId::new(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid workflow id"), "{err}");
        }
        for good in ["wf-1", "a.b_c=d", "0", &"y".repeat(MAX_ID_LEN)] {
            WorkflowId::new(good).expect(good);
        }
    }

    #[test]
    fn keys_are_checked_per_component() {
        assert!(validate_key("workflows/wf/tasks/t0").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "a/./b", "a/", "a/.tmp"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("workflows/").is_ok());
        assert!(validate_prefix("workflows/w").is_ok());
        assert!(validate_prefix("../").is_err());
    }
}
