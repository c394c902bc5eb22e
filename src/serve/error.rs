//! The JSON error every route answers with: `{"error": {"code", "message", ...}}`, the shape
//! promptflow's serving app returns (`ErrorResponse.to_simplified_dict`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::record::{ErrorInfo, ErrorKind};

/// An error answer: HTTP status, a stable code and a message for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields of the error object (the failing node, the exception type, ...).
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with no extra fields.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// 400: the request body is not what the flow takes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// A failed line: 504 when it ran out of time, 400 when a flow input was rejected, else 500.
    pub fn from_line_error(error: &ErrorInfo) -> Self {
        let (status, code) = match error.kind {
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ErrorKind::Input if error.node.is_none() => (StatusCode::BAD_REQUEST, "BadRequest"),
            // a streamed request whose flex output has two generators: promptflow's 400
            _ if error.error_type.as_deref() == Some("MultipleStreamOutputFieldsNotSupported") => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "FlowRunFailed"),
        };
        let mut e = Self::new(status, code, error.message.clone());
        let kind = serde_json::to_value(error.kind).unwrap_or(Value::Null);
        e.details.insert("kind".into(), kind);
        if let Some(node) = &error.node {
            e.details.insert("node".into(), Value::String(node.clone()));
        }
        if let Some(t) = &error.error_type {
            e.details.insert("type".into(), Value::String(t.clone()));
        }
        e
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::String(self.code.into()));
        error.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.details {
            error.insert(k.clone(), v.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_errors_map_to_statuses() {
        let timeout = ErrorInfo::new(ErrorKind::Timeout, "too slow");
        assert_eq!(
            ApiError::from_line_error(&timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        let mut python = ErrorInfo::new(ErrorKind::Python, "node `x`: ValueError: no");
        python.node = Some("x".into());
        python.error_type = Some("ValueError".into());
        let e = ApiError::from_line_error(&python);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body();
        assert_eq!(body["error"]["code"], "FlowRunFailed");
        assert_eq!(body["error"]["node"], "x");
        assert_eq!(body["error"]["type"], "ValueError");
        assert_eq!(body["error"]["kind"], "python");
    }
}
