//! The daemon's HTTP server: `/healthz` and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

struct Served {
    metrics: PrometheusHandle,
    started: Instant,
}

/// Binds `listen` and returns the listener with its real address (port 0 picks a free one).
pub async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "[daemon] listen is not a loopback address, so other hosts can read /metrics; put it behind a firewall or use 127.0.0.1");
    }
    let listener = TcpListener::bind(listen).await.map_err(|err| {
        format!(
            "cannot listen on {listen}: {err}; change [daemon] listen (port 0 picks a free port)"
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|err| format!("cannot read the address of {listen}: {err}"))?;
    Ok((listener, addr))
}

/// Serves the two endpoints until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let state = Arc::new(Served {
        metrics,
        started: Instant::now(),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(state);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(%err, "the /healthz and /metrics server stopped");
    }
}

async fn healthz(State(state): State<Arc<Served>>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "uptime_seconds": state.started.elapsed().as_secs(),
        "stopping": super::shutdown_requested(),
    }))
}

async fn render_metrics(State(state): State<Arc<Served>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
