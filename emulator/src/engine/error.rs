//! The errors the engine answers: the Data API's `__type`, message and
//! the resource it is about.

use crate::faults::ApiFault;

/// An API error: its `__type`, message, and the resource it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub(crate) struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub resource_id: Option<String>,
}

/// The error types the emulator answers (`__type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Validation,
    ResourceNotFound,
    ActiveStatementsExceeded,
    Throttling,
    Serialization,
    UnknownOperation,
    ActiveWaitingRequestsExceeded,
    Internal,
}

impl ErrorKind {
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ActiveStatementsExceeded => "ActiveStatementsExceededException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::ActiveWaitingRequestsExceeded => "ActiveWaitingRequestsExceededException",
            ErrorKind::Internal => "InternalServerException",
        }
    }

    /// HTTP status: 500 for the service's own failures, 400 otherwise.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            ErrorKind::Internal => 500,
            _ => 400,
        }
    }
}

impl ApiError {
    pub(crate) fn validation(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::Validation,
            message: message.into(),
            resource_id: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::Internal,
            message: message.into(),
            resource_id: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>, id: &str) -> ApiError {
        ApiError {
            kind: ErrorKind::ResourceNotFound,
            message: message.into(),
            resource_id: Some(id.to_string()),
        }
    }
}

pub(super) fn api_fault_error(fault: ApiFault, message: String) -> ApiError {
    ApiError {
        kind: match fault {
            ApiFault::Throttle => ErrorKind::Throttling,
            ApiFault::ActiveExceeded => ErrorKind::ActiveStatementsExceeded,
        },
        message,
        resource_id: None,
    }
}
