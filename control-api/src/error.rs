//! The body of every non-2xx answer of the admin API.

use serde::{Deserialize, Serialize};

/// `{"error": "message"}`: what failed and on what, for people and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

impl ErrorBody {
    /// A body carrying `message`.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self {
            error: message.to_string(),
        }
    }

    /// The message of an answer body: its `error` field when it is this JSON, else its text
    /// (trimmed, at most 200 characters), so a proxy's HTML page still says something.
    #[must_use]
    pub fn message_of(body: &[u8]) -> String {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => b.error,
            Err(_) => String::from_utf8_lossy(body).trim().chars().take(200).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_is_one_field() {
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("no such bucket: b")).unwrap(),
            r#"{"error":"no such bucket: b"}"#
        );
        assert_eq!(
            ErrorBody::message_of(br#"{"error":"wrong admin token"}"#),
            "wrong admin token"
        );
        assert_eq!(ErrorBody::message_of(b"  <html>bad</html>\n"), "<html>bad</html>");
        assert_eq!(ErrorBody::message_of(&[b'x'; 300]).len(), 200);
        assert_eq!(ErrorBody::message_of(b""), "");
    }
}
