//! Rendering replies: JSON bodies, text, and the errors every route answers the same way.

use serde::Serialize;
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// An error, as JSON: `{"error": message}`.
pub(super) fn error_reply(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message }).expect("API values serialise");
    json(status, body)
}

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    response
}

pub(super) fn text(status: StatusCode, body: String) -> Response {
    let mut response = body.into_response();
    *response.status_mut() = status;
    response
}

/// A `503` while the database is out of reach or too slow: worth retrying in a second.
pub(super) fn unavailable() -> Response {
    let mut response = error_reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, "1".parse().expect("valid"));
    response
}

/// A `405` for a path asked with a method it does not offer, naming those it does.
pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `response`, closing its connection once sent: for an answer given before the request was
/// read whole, after which the connection cannot carry another request.
pub(super) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
