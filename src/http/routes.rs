//! The HTTP API: one filter per route, handlers as plain async functions, and one place that
//! turns rejections into 4xx answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::{self, BODY_LIMIT_BYTES, body_within};
use super::reply::{error_reply, json, method_not_allowed, text, unavailable};
use crate::metrics::Metrics;
use crate::people::{People, PeopleError};

/// What the routes serve.
#[derive(Clone)]
pub struct AppState {
    pub(crate) people: People,
    pub(crate) metrics: Arc<Metrics>,
    /// How long a client may take to send a body.
    pub(crate) body_timeout: Duration,
}

/// The API, as a replica serves it: every route, every rejection answered, every answer counted.
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
            text(
                StatusCode::OK,
                state.metrics.render(state.people.readings()),
            )
        })
}

/// What the metrics listener (`METRICS_PORT`) serves: `GET /metrics`, and `404` to anything else.
pub(super) fn metrics_only(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    exact_path()
        .and(exposition(state))
        .recover(answer_rejection)
        .unify()
}

/// `404` to every path under `/metrics`, put before [`api`] on the API port of a replica that
/// serves its metrics on a port of its own.
pub(super) fn metrics_elsewhere() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
    match state.people.create(&body).await {
        Ok(created) => {
            let mut response = json(StatusCode::CREATED, created.record);
            response.headers_mut().insert(
                header::LOCATION,
                format!("/pessoas/{}", created.id)
                    .parse()
                    .expect("a path is a valid header value"),
            );
            response
        }
        Err(error) => failed(error),
    }
}

async fn find(id: String, state: AppState) -> Response {
    // The uuid crate also reads the simple, braced and URN forms; only the hyphenated form,
    // the one in Location, names a person, so each has one path.
    let hyphenated = id.len() == uuid::fmt::Hyphenated::LENGTH;
    let Some(id) = hyphenated.then(|| id.parse::<uuid::Uuid>().ok()).flatten() else {
        return error_reply(StatusCode::NOT_FOUND, "no such person");
    };
    match state.people.find(id).await {
        Ok(Some(record)) => json(StatusCode::OK, record),
        Ok(None) => error_reply(StatusCode::NOT_FOUND, "no such person"),
        Err(error) => failed(error),
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
    match state.people.search(&term).await {
        Ok(records) => json(StatusCode::OK, records),
        Err(error) => failed(error),
    }
}

async fn count(state: AppState) -> Response {
    match state.people.count().await {
        Ok(count) => {
            let mut response = text(StatusCode::OK, count.to_string());
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
            response
        }
        Err(error) => failed(error),
    }
}

/// The answer to what [`People`] refused or failed: a `400` for a body that is not a person's
/// JSON, a `422` for one that breaks a rule or takes an apelido already taken, a `503` while
/// the database is out of reach or too slow (which the store logs once for all the requests it
/// fails), a `500` for a bug, logged with its cause each time.
fn failed(error: PeopleError) -> Response {
    match error {
        PeopleError::Malformed(_) => error_reply(StatusCode::BAD_REQUEST, &error.to_string()),
        PeopleError::Invalid(_) | PeopleError::ApelidoTaken => {
            error_reply(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
        }
        PeopleError::Unavailable(_) => unavailable(),
        PeopleError::Bug(_) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "a request failed on a bug"
            );
            error_reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let reply = if let Some(refusal) = body::refusal(&rejection) {
        refusal
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
