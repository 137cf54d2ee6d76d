//! Errors as Docker answers them: `{"message": "..."}` with `Content-Type:
//! application/json` and Docker's status codes. Clients branch on the codes: `stack
//! deploy` creates what answers 404, and the CLI prints the message as it is.

use hyper::StatusCode;
use tonic::Code;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed (a body that is not JSON, a bad parameter).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404, worded as dockerd words it: "service web not found".
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The node is in no swarm, or is a worker: dockerd's 503 and wording.
    pub fn not_a_manager(in_swarm: bool) -> Self {
        let message = if in_swarm {
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
        } else {
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

/// A Control API refusal as Docker's status: not found is 404, a bad spec 400, a name in
/// use 409, a version conflict 409 (dockerd: 500, "update out of sequence"), no leader 503.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(code, status.message().to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
