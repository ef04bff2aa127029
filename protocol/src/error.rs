//! The errors of parsing and validating sylkRTC messages.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a message could not be turned into the typed model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not JSON at all.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is valid but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// A mandatory field is absent (or `null`).
    #[error("missing field `{0}`")]
    MissingField(String),
    /// A field is present but has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name, with its path for nested fields (`candidates[0].candidate`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `sylkrtc` value names no request of the protocol.
    #[error("unknown request: {0}")]
    UnknownRequest(String),
    /// The message names no known event or response (when parsing server messages).
    #[error("unknown message: {0}")]
    UnknownMessage(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A client message that could not be parsed into a [`crate::Request`].
///
/// It keeps what could be read before the failure: the `transaction` (so that the gateway can
/// answer with an `error`) and the request name (for logs and metrics).
#[derive(Debug)]
pub struct RequestError {
    /// The message's `transaction`, when it is present and a string.
    pub transaction: Option<String>,
    /// The message's `sylkrtc` value, when it is present and a string.
    pub name: Option<String>,
    /// What went wrong.
    pub error: Error,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
