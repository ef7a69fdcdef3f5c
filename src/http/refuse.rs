//! Requests refused before they reach warp, on what hyper lets through: a target warp cannot
//! route, a transfer coding hyper does not decode.

use warp::http::{StatusCode, header};
use warp::reply::Response;

use super::reply::{closing, error_reply};

/// The answer to a request that must not reach warp, if this is one:
/// - a `400` when its target is neither in origin form (`/path?query`) nor in absolute form
///   (`http://host/path`), nor `*`: warp routes on the path, and a request without one (the
///   authority form of `CONNECT host:port`, or `GET contagem-pessoas`) makes warp build an empty
///   path that the http crate refuses with a panic;
/// - a `501` when its body comes in any transfer coding but chunked alone: hyper decodes only
///   chunked and would pass, say, `gzip, chunked` on as if it were plain. nginx answers the same.
pub(super) fn refuse_before_routing<B>(request: &warp::http::Request<B>) -> Option<Response> {
    refuse_target_form(request.uri()).or_else(|| refuse_transfer_codings(request.headers()))
}

fn refuse_target_form(target: &warp::http::Uri) -> Option<Response> {
    let has_path = match target.path_and_query() {
        // Absolute form: the path may be empty, which stands for `/`.
        Some(_) if target.scheme().is_some() => true,
        Some(path) => path.as_str().starts_with('/') || path.as_str() == "*",
        None => false,
    };
    (!has_path).then(|| {
        error_reply(
            StatusCode::BAD_REQUEST,
            "the request target must be a path (origin form) or an absolute URI",
        )
    })
}

fn refuse_transfer_codings(headers: &header::HeaderMap) -> Option<Response> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|coding| coding.trim_ascii());
    match (codings.next(), codings.next()) {
        (None, _) => None,
        (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => None,
        // The body was not read, so the connection cannot carry another request.
        _ => Some(closing(error_reply(
            StatusCode::NOT_IMPLEMENTED,
            "no transfer coding but chunked is accepted",
        ))),
    }
}
