//! The HTTP API: one filter per route, handlers as plain async functions, and one place that
//! turns rejections into 4xx answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::domain::{Pessoa, RejectedPayload};
use crate::metrics::{Metrics, Readings};
use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use crate::writer::{Outcome, WriteError, Writer};

/// The largest `POST /pessoas` body read. A valid one is well under 8 KiB.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub mirror: Arc<Mirror>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// The last byte of the ids this replica makes, if set.
    pub id_slot: Option<u8>,
}

pub fn api(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let metrics = state.metrics.clone();
    let body_timeout = state.body_timeout;
    let metrics_route = exposition(state.clone());
    let with_state = warp::any().map(move || state.clone());

    let create = warp::post()
        .and(warp::path("pessoas"))
        .and(warp::path::end())
        .and(body_within(BODY_LIMIT_BYTES, body_timeout))
        .and(with_state.clone())
        .then(create);
    let find = get_or_head()
        .and(warp::path!("pessoas" / String))
        .and(with_state.clone())
        .then(find);
    let search = get_or_head()
        .and(warp::path("pessoas"))
        .and(warp::path::end())
        .and(warp::query::<SearchQuery>())
        .and(with_state.clone())
        .then(search);
    let count = get_or_head()
        .and(warp::path("contagem-pessoas"))
        .and(warp::path::end())
        .and(with_state)
        .then(count);

    // A known path asked with a method it does not offer: 405, naming the ones it does.
    let not_allowed = warp::path("pessoas")
        .and(warp::path::end())
        .and(other_method_than(&[
            Method::GET,
            Method::HEAD,
            Method::POST,
        ]))
        .map(|| method_not_allowed("GET, HEAD, POST"))
        .or(warp::path!("pessoas" / String)
            .and(other_method_than(&[Method::GET, Method::HEAD]))
            .map(|_| method_not_allowed("GET, HEAD")))
        .unify()
        .or(warp::path("contagem-pessoas")
            .or(warp::path("metrics"))
            .unify()
            .and(warp::path::end())
            .and(other_method_than(&[Method::GET, Method::HEAD]))
            .map(|| method_not_allowed("GET, HEAD")))
        .unify();

    let routes = create
        .or(find)
        .unify()
        .or(search)
        .unify()
        .or(count)
        .unify()
        .or(metrics_route)
        .unify()
        .or(not_allowed)
        .unify();
    exact_path()
        .and(routes)
        .recover(answer_rejection)
        .unify()
        .with(warp::log::custom(move |info| {
            metrics.observe(info.method(), info.path(), info.status(), info.elapsed())
        }))
}

/// GET, or HEAD, which RFC 9110 asks a server to answer wherever it answers GET: the same
/// answer, whose body hyper leaves unsent.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// `GET /metrics`: this replica's metrics as Prometheus text.
fn exposition(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    get_or_head()
        .and(warp::path("metrics"))
        .and(warp::path::end())
        .map(move || {
            let (mirror_bytes, mirror_budget_bytes) = state.mirror.memory();
            let readings = Readings {
                mirror_people: state.mirror.count(),
                mirror_bytes,
                mirror_budget_bytes,
                mirror_full: state.mirror.is_full(),
                pool: state.store.pool_status(),
                families: state.mirror.registry().gather(),
            };
            text(StatusCode::OK, state.metrics.render(readings))
        })
}

/// What the metrics listener (`METRICS_PORT`) serves: `GET /metrics`, and `404` to anything else.
pub fn metrics_only(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    exact_path()
        .and(exposition(state))
        .recover(answer_rejection)
        .unify()
}

/// `404` to every path under `/metrics`, put before [`api`] on the API port of a replica that
/// serves its metrics on a port of its own.
pub fn metrics_elsewhere() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("metrics").map(|| error_reply(StatusCode::NOT_FOUND, "not found"))
}

/// Passes requests whose method is none of `served`, so that a route's own rejections (a body
/// too large, a bad query) are never taken for a wrong method.
fn other_method_than(
    served: &'static [Method],
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(move |method: Method| async move {
            if served.contains(&method) {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            }
        })
        .untuple_one()
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Lets through only paths without empty segments, so each resource has one path: warp's own
/// matching would also accept `/metrics/`, `/contagem-pessoas/` or `//pessoas`.
fn exact_path() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            let segments = path.as_str().strip_prefix('/').unwrap_or(path.as_str());
            if segments.split('/').all(|segment| !segment.is_empty()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

async fn create(body: Bytes, state: AppState) -> Response {
    let pessoa = match Pessoa::parse(&body, state.id_slot) {
        Ok(pessoa) => pessoa,
        Err(RejectedPayload::Malformed(error)) => {
            return error_reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
        Err(RejectedPayload::Invalid(errors)) => {
            return error_reply(StatusCode::UNPROCESSABLE_ENTITY, &errors.to_string());
        }
    };
    let location = format!("/pessoas/{}", pessoa.id());
    let record = serde_json::to_vec(&pessoa).expect("a person serialises");
    match state.writer.create(pessoa.clone()).await {
        Ok(Outcome::Created) => {
            state.mirror.add_stored(&pessoa);
            let mut response = json(StatusCode::CREATED, record);
            response.headers_mut().insert(
                header::LOCATION,
                location.parse().expect("a path is a valid header value"),
            );
            response
        }
        Ok(Outcome::ApelidoTaken) => {
            error_reply(StatusCode::UNPROCESSABLE_ENTITY, "apelido: already taken")
        }
        Err(WriteError::Store(error)) => store_failed(&error),
        Err(_) => unavailable(),
    }
}

async fn find(id: String, state: AppState) -> Response {
    // The uuid crate also reads the simple, braced and URN forms; only the hyphenated form,
    // the one in Location, names a person, so each has one path.
    let hyphenated = id.len() == uuid::fmt::Hyphenated::LENGTH;
    let Some(id) = hyphenated.then(|| id.parse::<uuid::Uuid>().ok()).flatten() else {
        return error_reply(StatusCode::NOT_FOUND, "no such person");
    };
    match state.mirror.find(id).await {
        Ok(Some(record)) => json(StatusCode::OK, record),
        Ok(None) => error_reply(StatusCode::NOT_FOUND, "no such person"),
        Err(error) => store_failed(&error),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    t: Option<String>,
}

async fn search(query: SearchQuery, state: AppState) -> Response {
    let Some(term) = query.t.filter(|t| !t.is_empty()) else {
        return error_reply(StatusCode::BAD_REQUEST, "t: a search term is required");
    };
    match state.mirror.search(&term).await {
        Ok(records) => json(StatusCode::OK, records),
        Err(error) => store_failed(&error),
    }
}

async fn count(state: AppState) -> Response {
    match state.mirror.count_stored().await {
        Ok(count) => {
            let mut response = text(StatusCode::OK, count.to_string());
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
            response
        }
        Err(error) => store_failed(&error),
    }
}

#[derive(Debug)]
struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

#[derive(Debug)]
struct BodyTooSlow;
impl warp::reject::Reject for BodyTooSlow {}

/// The request body, refused with `413` as soon as it is known to exceed `limit`: at once when
/// `Content-Length` says so, otherwise as soon as the chunks read pass it. A body not received
/// whole within `timeout` gets `408`, so a client that stops sending cannot hold the
/// connection.
fn body_within(
    limit: usize,
    timeout: Duration,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared, chunks| async move {
            tokio::time::timeout(timeout, read_within(limit, declared, chunks))
                .await
                .unwrap_or_else(|_| Err(warp::reject::custom(BodyTooSlow)))
        })
}

async fn read_within(
    limit: usize,
    declared: Option<u64>,
    chunks: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Bytes, Rejection> {
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    let mut chunks = std::pin::pin!(chunks);
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if body.len() + chunk.remaining() > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        body.put(chunk);
    }
    Ok(body.freeze())
}

async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let reply = if rejection.find::<BodyTooLarge>().is_some() {
        error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body exceeds {BODY_LIMIT_BYTES} bytes"),
        )
    } else if rejection.find::<BodyTooSlow>().is_some() {
        let mut reply = error_reply(
            StatusCode::REQUEST_TIMEOUT,
            "the body was not received in time",
        );
        // The rest of the body may still come, so the connection cannot serve another request.
        reply
            .headers_mut()
            .insert(header::CONNECTION, "close".parse().expect("valid"));
        reply
    } else if rejection.find::<BodyUnreadable>().is_some() {
        error_reply(StatusCode::BAD_REQUEST, "the body could not be read")
    } else if let Some(error) = rejection.find::<warp::reject::InvalidQuery>() {
        error_reply(StatusCode::BAD_REQUEST, &error.to_string())
    } else if let Some(error) = rejection.find::<warp::reject::InvalidHeader>() {
        error_reply(StatusCode::BAD_REQUEST, &error.to_string())
    } else {
        // Unknown paths, and known paths with a method the API does not offer.
        error_reply(StatusCode::NOT_FOUND, "not found")
    };
    Ok(reply)
}

/// The answer to a request that must not reach warp, if this is one:
/// - a `400` when its target is neither in origin form (`/path?query`) nor in absolute form
///   (`http://host/path`), nor `*`: warp routes on the path, and a request without one (the
///   authority form of `CONNECT host:port`, or `GET contagem-pessoas`) makes warp build an empty
///   path that the http crate refuses with a panic;
/// - a `501` when its body comes in any transfer coding but chunked alone: hyper decodes only
///   chunked and would pass, say, `gzip, chunked` on as if it were plain. nginx answers the same.
pub fn refuse_before_routing<B>(request: &warp::http::Request<B>) -> Option<Response> {
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
        _ => {
            let mut reply = error_reply(
                StatusCode::NOT_IMPLEMENTED,
                "no transfer coding but chunked is accepted",
            );
            // The body was not read, so the connection cannot carry another request.
            reply
                .headers_mut()
                .insert(header::CONNECTION, "close".parse().expect("valid"));
            Some(reply)
        }
    }
}

/// A `503` while the database is out of reach or too slow, which the store logs once for all
/// the requests it fails; a `500` for a bug, logged with its cause each time.
fn store_failed(error: &StoreError) -> Response {
    if error.is_outage() {
        return unavailable();
    }
    tracing::error!(
        error = error as &dyn std::error::Error,
        "a request failed on a bug"
    );
    error_reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn unavailable() -> Response {
    let mut response = error_reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, "1".parse().expect("valid"));
    response
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error_reply(status: StatusCode, message: &str) -> Response {
    json_of(status, &ErrorBody { error: message })
}

fn json_of(status: StatusCode, value: &impl Serialize) -> Response {
    json(
        status,
        serde_json::to_vec(value).expect("API values serialise"),
    )
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = body.into_response();
    *response.status_mut() = status;
    response
}
