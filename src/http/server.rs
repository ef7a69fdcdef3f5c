//! The HTTP server: the accept loop under a connection cap, hyper's header timeout, requests
//! refused before routing, a panic ending only its connection, and the drain at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::Either;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use warp::Filter;

use super::refuse::refuse_before_routing;
use super::reply::closing;
use super::routes::{AppState, api, metrics_elsewhere, metrics_only};
use crate::config::Settings;

tokio::task_local! {
    /// Set while a client connection's task runs: a panic there concerns that connection alone.
    static CONNECTION: ();
}

/// Makes a panic end only what it concerns. A panic while a client connection is being served
/// (parsing, routing, a handler) ends that connection's task, which closes the connection: it is
/// logged, counted in `panics_total`, and the replica goes on serving. A panic anywhere else (a
/// writer, the mirror's upkeep) leaves state shared by every request in doubt, so it ends the
/// process, as `panic = "abort"` would, for its supervisor to start a sound one.
pub fn contain_connection_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        if CONNECTION.try_with(|()| ()).is_ok() {
            crate::metrics::count_panic();
            tracing::error!(%panic, "a connection's task panicked; its connection is closed");
        } else {
            report(panic);
            std::process::abort();
        }
    }));
}

/// A replica's listeners, bound, and what they serve.
pub(crate) struct Server {
    listener: TcpListener,
    /// With `METRICS_PORT`, the listener that serves `/metrics` instead of the API port.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    limits: Limits,
}

impl Server {
    /// Binds the API port and, with `METRICS_PORT`, the metrics port; requests are served once
    /// [`Server::run_until`] is called.
    pub(crate) async fn bind(
        settings: &Settings,
        state: AppState,
    ) -> Result<Server, Box<dyn std::error::Error>> {
        let address = SocketAddr::from((settings.host, settings.port));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let metrics_listener = match settings.metrics_port {
            None => None,
            Some(port) => {
                let address = SocketAddr::from((settings.host, port));
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|e| format!("cannot listen for metrics on {address}: {e}"))?;
                Some(listener)
            }
        };
        Ok(Server {
            listener,
            metrics_listener,
            state,
            limits: Limits {
                max_connections: settings.max_connections,
                header_timeout: settings.header_timeout,
                shutdown_grace: settings.shutdown_grace,
                drain: settings.drain,
            },
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The metrics listener's address, with `METRICS_PORT`.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        let listener = self.metrics_listener.as_ref()?;
        Some(
            listener
                .local_addr()
                .expect("a bound listener has an address"),
        )
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish (closing the connections of those still open after the shutdown grace).
    pub(crate) async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Server {
            listener,
            metrics_listener,
            state,
            limits,
        } = self;
        match metrics_listener {
            None => serve(listener, api(state), limits, shutdown).await,
            Some(metrics_listener) => {
                let scrapes = tokio::spawn(serve_metrics(
                    metrics_listener,
                    metrics_only(state.clone()),
                    limits.header_timeout,
                ));
                let routes = metrics_elsewhere().or(api(state));
                serve(listener, routes, limits, shutdown).await;
                // Scrapes need no drain: one missed is taken again at the next interval.
                scrapes.abort();
            }
        }
    }
}

struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    shutdown_grace: Duration,
    drain: Duration,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then stops: see [`drain`].
///
/// Through hyper rather than `warp::serve`, which sets no timer: with one, a connection that
/// has not sent a whole request head within the header timeout, idle time included, is closed.
async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let mut connections = Connections::new(limits.header_timeout);
    // A connection is accepted only with a permit, as tokio-rs/mini-redis does: at the cap,
    // new clients wait in the listen backlog (and beyond it are refused by the kernel) instead
    // of each costing the replica a task, buffers and a descriptor.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.serve(stream, Some(permit), filter.clone());
    }
    drain(listener, connections, filter, &limits).await;
}

/// Serves `filter` on the metrics listener until the task is aborted, which ends its
/// connections too. No connection cap: only the scrapers reach this port.
async fn serve_metrics<F>(listener: TcpListener, filter: F, header_timeout: Duration)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    // Served as the API is, so that no request to this port can do more harm than to that one.
    let mut connections = Connections::new(header_timeout);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => connections.serve(stream, None, filter.clone()),
            Err(error) => accept_failed(error).await,
        }
    }
}

/// Stops serving without failing a request a proxy sent: a `POST` that nginx has sent down a
/// connection is never sent again (it may have been stored), so a connection that closes before
/// its answer costs the client a `502`, while a connection refused only sends the request to the
/// other replica.
///
/// So, first, every connection the kernel has already accepted is taken from the backlog (past
/// the connection cap: the backlog is bounded) and the listener closed, so new connections are
/// refused from then on. Then, for the drain time, each connection is closed after its next
/// answer, which lets nginx use each of its idle connections to this replica once more or drop
/// it (it keeps them idle 2 s), rather than send a request down one being closed. Then idle
/// connections are closed, and the others may finish their requests for at most the shutdown
/// grace: a client that stalls (one that never reads its answers, say) must not keep the
/// replica from exiting.
async fn drain<F>(listener: TcpListener, mut connections: Connections, filter: F, limits: &Limits)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    connections.draining.store(true, Ordering::Relaxed);
    // Out of the reactor, the listener accepts without waiting for it to notice readiness.
    match listener.into_std() {
        Ok(listener) => {
            while let Ok((stream, _)) = listener.accept() {
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream))
                {
                    Ok(stream) => connections.serve(stream, None, filter.clone()),
                    Err(error) => tracing::warn!(%error, "cannot serve a waiting connection"),
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot take the waiting connections"),
    }
    tokio::time::sleep(limits.drain).await;
    let Connections {
        graceful, mut open, ..
    } = connections;
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "closing {} connections still open after the shutdown grace of {:?}",
            open.len(),
            limits.shutdown_grace
        );
    }
    // Ends the connections still open; their requests already queued are written all the same.
    open.shutdown().await;
}

/// The connections being served, and whether the replica is draining.
struct Connections {
    http: hyper::server::conn::http1::Builder,
    graceful: GracefulShutdown,
    open: JoinSet<()>,
    /// Once set, each answer closes its connection.
    draining: Arc<AtomicBool>,
}

impl Connections {
    /// Connections that must send a whole request head within `header_timeout`.
    fn new(header_timeout: Duration) -> Connections {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        Connections {
            http,
            graceful: GracefulShutdown::new(),
            open: JoinSet::new(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Serves `stream` on a task of its own, holding `permit` until it closes.
    fn serve<F>(
        &mut self,
        stream: tokio::net::TcpStream,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        filter: F,
    ) where
        F: warp::Filter + Clone + Send + Sync + 'static,
        F::Extract: warp::Reply,
    {
        let service = TowerToHyperService::new(warp::service(filter));
        let draining = self.draining.clone();
        let service = hyper::service::service_fn(move |request| {
            let answer = match refuse_before_routing(&request) {
                Some(refusal) => Either::Left(std::future::ready(Ok(refusal))),
                None => Either::Right(service.call(request)),
            };
            let draining = draining.clone();
            async move {
                let mut response = answer.await?;
                if draining.load(Ordering::Relaxed) {
                    response = closing(response);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = self
            .graceful
            .watch(self.http.serve_connection(TokioIo::new(stream), service));
        self.open.spawn(CONNECTION.scope((), async move {
            // A client that goes away or times out is no error of the server's.
            let _ = connection.await;
            drop(permit);
        }));
        // Forget finished connections as they go, so the set holds only live ones.
        while self.open.try_join_next().is_some() {}
    }
}

/// Waits out a failed accept. Errors of one connection are nothing to wait for; running out of
/// descriptors or memory is, briefly, so the loop does not spin while it lasts.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!(%error, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
