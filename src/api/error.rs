//! Twilio-shaped error JSON: `{"code", "message", "more_info", "status"}` with the HTTP
//! status Twilio uses for each code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::core::error::CoreError;
use crate::core::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// A parameter failed validation (80701, 400).
    pub fn invalid(param: &str, reason: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            80701,
            format!("'{param}' is invalid: {reason}"),
        )
    }
    /// A SID parameter that does not match Twilio's pattern for its prefix
    /// (`^<prefix>[0-9a-fA-F]{32}$`): the "Invalid … Sid" code Twilio has for that resource
    /// (80401–80409), else 80701. Always 400.
    pub fn invalid_sid(param: &str, prefix: &str) -> Self {
        let (code, resource) = match prefix {
            "AC" => (80401, "Account"),
            "KI" => (80403, "Interaction"),
            "KP" => (80405, "Participant"),
            "PN" => (80407, "Phone Number"),
            "KS" => (80408, "Service"),
            "KC" => (80409, "Session"),
            _ => {
                return ApiError::invalid(
                    param,
                    format!("must be {prefix} followed by 32 hexadecimal digits"),
                )
            }
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!(
                "Invalid {resource} Sid: '{param}' must be {prefix} followed by 32 hexadecimal digits"
            ),
        )
    }
    pub fn missing(param: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            80701,
            format!("Missing required parameter {param}"),
        )
    }
    pub fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        )
    }
    /// The path exists but not with this method (Twilio's 20004, 405).
    pub fn method_not_allowed() -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed")
    }
    pub fn too_many_requests() -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests")
    }
    /// The store cannot be reached: nothing was changed.
    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable: the store cannot be reached; try again",
        )
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - invalid username",
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let status = match &e {
            CoreError::NotFound(_) | CoreError::SessionNameNotFound => StatusCode::NOT_FOUND,
            CoreError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        CoreError::Store(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        super::json_response(self.status, &body)
    }
}
