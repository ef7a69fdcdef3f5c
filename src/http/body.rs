//! Request bodies, read within a size limit and a time limit.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reply::{closing, error_reply};

/// The largest `POST /pessoas` body read. A valid one is well under 8 KiB.
pub(super) const BODY_LIMIT_BYTES: usize = 64 * 1024;

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
pub(super) fn body_within(
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

/// The answer to a rejection of [`body_within`], if `rejection` is one.
pub(super) fn refusal(rejection: &Rejection) -> Option<Response> {
    if rejection.find::<BodyTooLarge>().is_some() {
        Some(error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body exceeds {BODY_LIMIT_BYTES} bytes"),
        ))
    } else if rejection.find::<BodyTooSlow>().is_some() {
        // The rest of the body may still come, so the connection cannot serve another request.
        Some(closing(error_reply(
            StatusCode::REQUEST_TIMEOUT,
            "the body was not received in time",
        )))
    } else if rejection.find::<BodyUnreadable>().is_some() {
        Some(error_reply(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
        ))
    } else {
        None
    }
}
