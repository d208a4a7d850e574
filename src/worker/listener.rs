//! The worker's HTTP listener (`listen`, loopback by default): Prometheus
//! `/metrics`, `/healthz` (the process is alive) and `/readyz` (the ledger
//! answers and the last SQS receive succeeded recently), which stay open;
//! the JSON API (`/api`, behind `api_token`) and the web console (`/`).

use super::*;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// How long after the last successful receive the worker is still ready:
/// three long polls (an empty one succeeds too), at least 5 s.
fn receive_bound(cfg: &Config) -> Duration {
    Duration::from_secs((u64::from(cfg.wait_time_secs) * 3).max(5))
}

/// The routes of the listener. `stop` ends the API's event streams.
pub fn router(worker: Arc<Worker>, stop: CancellationToken) -> Router {
    let token = worker.api_token.get().cloned();
    let probes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(worker.clone());
    probes
        .merge(crate::api::router(worker.api_services(), token, stop))
        .merge(crate::console::router())
}

async fn metrics(State(w): State<Arc<Worker>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        w.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(w): State<Arc<Worker>>) -> (StatusCode, String) {
    match w.not_ready().await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

impl Worker {
    /// What the JSON API acts through: this worker's ledger, Data API
    /// client, configuration and clock, and its submitter's wake-up.
    fn api_services(&self) -> crate::api::Services {
        crate::api::Services {
            ledger: self.ledger.clone(),
            data_api: self.data_api.clone(),
            cfg: self.cfg.clone(),
            clock: self.clock.clone(),
            submit_wake: self.submit_wake.clone(),
        }
    }

    /// Why the worker is not ready, if it is not.
    pub async fn not_ready(&self) -> Option<String> {
        let ledger = tokio::time::timeout(Duration::from_secs(2), self.ledger.in_flight()).await;
        match ledger {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("the ledger does not answer: {e}")),
            Err(_) => return Some("the ledger does not answer within 2 s".into()),
        }
        let last = self
            .last_receive_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let bound = receive_bound(&self.cfg);
        if last == 0 {
            return Some("no SQS receive has succeeded yet".into());
        }
        let age = self.clock.now_ms() - last;
        if age > bound.as_millis() as i64 {
            return Some(format!(
                "the last successful SQS receive was {:.0} s ago (more than {} s)",
                age as f64 / 1000.0,
                bound.as_secs()
            ));
        }
        None
    }

    /// Binds the listener (before the worker starts, so that a taken port
    /// is an error at start-up). `None` when `listen` is empty.
    pub async fn bind(&self) -> Result<Option<tokio::net::TcpListener>> {
        let Some(addr) = self.cfg.listen_addr()? else {
            return Ok(None);
        };
        let token = self.cfg.api_token()?;
        if token.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "listen = {addr} is not a loopback address and no api_token is set: the JSON \
                 API and the console would let anyone who reaches it submit SQL. Set api_token \
                 (REDRELAY_API_TOKEN) or api_token_file to a long random value, or listen on \
                 127.0.0.1"
            );
        }
        if let Some(t) = token {
            let _ = self.api_token.set(t);
        }
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} ({e}): set `listen` (REDRELAY_LISTEN) to a free \
                 address, e.g. 127.0.0.1:0, or to \"\" to turn the listener off"
            )
        })?;
        let bound = l.local_addr().unwrap_or(addr);
        let _ = self.info.listen.set(bound.to_string());
        info!(
            listen = %bound,
            token = self.api_token.get().is_some(),
            "HTTP listener: console at http://{bound}/, API at /api/v1, /metrics, /healthz, /readyz."
        );
        Ok(Some(l))
    }

    pub(super) async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> Result<()> {
        axum::serve(listener, router(self, stop.clone()))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .map_err(|e| anyhow::anyhow!("the HTTP listener stopped: {e}"))
    }
}
