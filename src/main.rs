use std::io::IsTerminal;
use std::process::ExitCode;

use rinha::config::Settings;
use rinha::startup::Application;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts. A replica gets a fraction of a CPU and a small
/// memory budget, so: one arena (a handful of threads contend little), dirty pages returned
/// after one second instead of ten and muzzy pages at once, and that purging done by one
/// background thread rather than on the request path. `MALLOC_CONF` still overrides these.
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(
    c"narenas:1,background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
        .as_ptr(),
);

/// jemalloc reads `malloc_conf` as a C `const char *`.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to a string literal, immutable for the whole run.
unsafe impl Sync for MallocConf {}

fn main() -> ExitCode {
    init_logging();
    rinha::http::contain_connection_panics();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(2);
        }
    };
    match std::env::args().nth(1).as_deref() {
        None => serve(settings),
        Some("healthcheck") => match rinha::healthcheck::probe(settings.host, settings.port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("healthcheck: {error}");
                ExitCode::FAILURE
            }
        },
        Some("index-search") => index_search(&settings),
        Some(other) => {
            tracing::error!(
                "usage: rinha [healthcheck | index-search] (unknown argument {other:?})"
            );
            ExitCode::from(2)
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let app = match Application::build(&settings).await {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(error = &*error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "rinha {} listening on {} (pool {}, writers {}, batch max {})",
            env!("CARGO_PKG_VERSION"),
            app.local_addr(),
            settings.pool_size,
            settings.writers,
            settings.batch_max
        );
        if let Some(address) = app.metrics_addr() {
            tracing::info!("metrics on {address}");
        }
        app.run_until(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Builds the search index, for as long as it takes (minutes on millions of people).
fn index_search(settings: &Settings) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let started = std::time::Instant::now();
    match runtime.block_on(rinha::startup::index_search(settings)) {
        Ok(()) => {
            tracing::info!("the search index is built ({:.1?})", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = &*error, "the search index could not be built");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error, as lines of text (colour only on a terminal), filtered by
/// `RUST_LOG` (`info` when unset).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .init();
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
