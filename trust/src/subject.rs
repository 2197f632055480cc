//! Subjects of trust: `kind:id`, with kind `backend`, `node`, `agent` or `principal`.

use std::fmt;
use std::str::FromStr;

/// Longest id accepted (bytes): S3 access keys are at most 128, backend and agent ids shorter.
pub const MAX_ID_LEN: usize = 256;

/// What kind of thing a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    /// A storage backend.
    Backend,
    /// A gateway node.
    Node,
    /// A MAPE agent.
    Agent,
    /// An S3 principal (access key).
    Principal,
}

impl SubjectKind {
    /// Every kind.
    pub const ALL: [SubjectKind; 4] = [
        SubjectKind::Backend,
        SubjectKind::Node,
        SubjectKind::Agent,
        SubjectKind::Principal,
    ];

    /// Lowercase name, as in `kind:id`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            SubjectKind::Backend => "backend",
            SubjectKind::Node => "node",
            SubjectKind::Agent => "agent",
            SubjectKind::Principal => "principal",
        }
    }

    /// Whether subjects of this kind prove who they are with an enrolled key (nodes, agents);
    /// backends and principals are who their configuration or credential says.
    #[must_use]
    pub const fn has_key(self) -> bool {
        matches!(self, SubjectKind::Node | SubjectKind::Agent)
    }
}

impl FromStr for SubjectKind {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, SubjectError> {
        SubjectKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SubjectError::Kind(s.chars().take(32).collect()))
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a subject name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// No `:` between kind and id.
    #[error("subject {0:?} is not `kind:id` (kind: backend, node, agent or principal)")]
    Shape(String),
    /// A kind other than the four.
    #[error("unknown subject kind {0:?} (expected backend, node, agent or principal)")]
    Kind(String),
    /// An empty, too long or control-character id.
    #[error("bad id {id:?}: {why}")]
    Id {
        /// The id (at most 64 characters of it).
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Checks an id: 1..=256 bytes, no control characters.
pub fn validate_id(id: &str) -> Result<(), SubjectError> {
    let bad = |why| SubjectError::Id {
        id: id.chars().take(64).collect(),
        why,
    };
    if id.is_empty() {
        return Err(bad("empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad("longer than 256 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(())
}

/// The subject kind of an identity's holder.
#[must_use]
pub const fn kind_of(kind: control_api::trust::IdentityKind) -> SubjectKind {
    match kind {
        control_api::trust::IdentityKind::Agent => SubjectKind::Agent,
        control_api::trust::IdentityKind::Node => SubjectKind::Node,
    }
}

/// A validated subject name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    kind: SubjectKind,
    id: String,
}

impl Subject {
    /// A subject of `kind` named `id`, validated.
    pub fn new(kind: SubjectKind, id: &str) -> Result<Self, SubjectError> {
        validate_id(id)?;
        Ok(Self {
            kind,
            id: id.to_owned(),
        })
    }

    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> SubjectKind {
        self.kind
    }

    /// Its id, without the kind.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for Subject {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, SubjectError> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| SubjectError::Shape(s.chars().take(64).collect()))?;
        Subject::new(kind.parse()?, id)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_and_print_back() {
        for s in ["backend:b1", "node:n-1", "agent:c1", "principal:AKIA1", "principal:a:b"] {
            assert_eq!(s.parse::<Subject>().unwrap().to_string(), s);
        }
        let p: Subject = "principal:a:b".parse().unwrap();
        assert_eq!((p.kind(), p.id()), (SubjectKind::Principal, "a:b"));
    }

    #[test]
    fn bad_subjects_say_why() {
        let err = |s: &str| s.parse::<Subject>().unwrap_err().to_string();
        assert!(err("b1").contains("kind:id"), "{}", err("b1"));
        assert!(err("bucket:b1").contains("unknown subject kind \"bucket\""));
        assert!(err("backend:").contains("empty"));
        assert!(err("backend:a\nb").contains("control"));
        assert!(err(&format!("backend:{}", "x".repeat(257))).contains("256"));
        assert!(format!("backend:{}", "x".repeat(256)).parse::<Subject>().is_ok());
    }
}
