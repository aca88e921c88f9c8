//! Decode errors. Each has a stable [`DecodeError::code`] used as the `reason`
//! label on metrics; the text carries the details (offsets, ids, values).

use thiserror::Error;

/// Why a datagram (or part of it) could not be decoded.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("datagram of {len} bytes exceeds the UDP maximum")]
    Oversized { len: usize },
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported export version {version}")]
    UnsupportedVersion { version: u16 },
    #[error("bad header: {what} (got {value})")]
    BadHeader { what: &'static str, value: u64 },
    #[error("malformed message: {detail}")]
    Malformed { detail: String },
    #[error("in set {set_id}: no template {template_id} known for this exporter and domain yet")]
    NoTemplate { set_id: u16, template_id: u16 },
    #[error("decoded output limit exceeded: {detail}")]
    Limit { detail: String },
}

impl DecodeError {
    /// Stable short code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::BadHeader { .. } => "bad_header",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::NoTemplate { .. } => "no_template",
            DecodeError::Limit { .. } => "limit",
        }
    }
}

impl From<netflow_parser::NetflowError> for DecodeError {
    fn from(e: netflow_parser::NetflowError) -> Self {
        use netflow_parser::NetflowError as E;
        match e {
            E::Incomplete { available, context } => DecodeError::Malformed {
                detail: format!("incomplete {context} ({available} bytes available)"),
            },
            E::UnsupportedVersion { version, .. } => DecodeError::UnsupportedVersion { version },
            E::DecodedOutputLimitExceeded { .. } => DecodeError::Limit {
                detail: e.to_string(),
            },
            other => DecodeError::Malformed {
                detail: other.to_string(),
            },
        }
    }
}
