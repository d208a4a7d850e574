//! The worker's HTTP listener (`listen`, loopback by default): Prometheus
//! `/metrics`, `/healthz` (the process is alive) and `/readyz` (the ledger
//! answers and the last SQS receive succeeded recently), which need no
//! token; the JSON API (`/api`, behind a token: `api_token`, or one the
//! worker makes at start) and the web console (`/`). Every route is behind
//! the API's guard (the Host must be the listener's, a state change must
//! come from the same origin as JSON).

use super::*;
use crate::api::access::{self, Tokens};
use crate::api::guard::{Guard, LocalAddr};
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

/// A bound listener and what its routes check.
pub struct Bound {
    listener: tokio::net::TcpListener,
    tokens: Tokens,
    guard: Guard,
}

/// The routes of the listener. `stop` ends the API's event streams.
pub fn router(
    worker: Arc<Worker>,
    tokens: Tokens,
    guard: Guard,
    stop: CancellationToken,
) -> Router {
    let probes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(worker.clone());
    probes
        .merge(crate::api::router(worker.api_services(), tokens, stop))
        .merge(crate::console::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            crate::api::guard::guard,
        ))
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
        let why = match ledger {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("the ledger does not answer: {e}")),
            Err(_) => Some("the ledger does not answer within 2 s".to_string()),
        };
        if let Some(why) = why {
            // The pool's wait hides the cause (refused, unknown host, ...):
            // a connection of its own says it.
            let cause = match self.ledger.postgres() {
                Some(pg) => pg.unreachable(Duration::from_secs(2)).await,
                None => None,
            };
            return Some(match cause {
                Some(cause) => format!("{why} ({cause}); work resumes by itself once it is back"),
                None => format!("{why}; work resumes by itself once it is back"),
            });
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
    /// is an error at start-up), with its token: the configured one, else
    /// one made now (or at an earlier start) and kept in `api_token_path`,
    /// whose console address is printed on stdout, the one place the token
    /// is ever written. `None` when `listen` is empty.
    pub async fn bind(&self) -> Result<Option<Bound>> {
        let Some(addr) = self.cfg.listen_addr()? else {
            return Ok(None);
        };
        if access::configured_token(&self.cfg)?.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "listen = {addr} is not a loopback address and no api_token is set: a token the \
                 worker makes for itself is for a console on this machine. Set api_token \
                 (REDRELAY_API_TOKEN) or api_token_file to a long random value shared by the \
                 fleet, or listen on 127.0.0.1"
            );
        }
        let made = access::worker_token(&self.cfg)?;
        let read = access::read_token(&self.cfg)?;
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} ({e}): set `listen` (REDRELAY_LISTEN) to a free \
                 address, e.g. 127.0.0.1:0, or to \"\" to turn the listener off"
            )
        })?;
        let bound = l.local_addr().unwrap_or(addr);
        let _ = self.info.listen.set(bound.to_string());
        let tokens = Tokens::new(&made.token, read.as_ref());
        let token_from = match &made.kept_at {
            Some(path) => format!(
                "the one this worker made, kept in {} (`redrelay console-url` prints the \
                 console's address with it)",
                path.display()
            ),
            None => "api_token".into(),
        };
        info!(
            listen = %bound,
            read_token = read.is_some(),
            "HTTP listener on {bound}: console at /, API at /api/v1, /metrics, /healthz, \
             /readyz. The API's token: {token_from}."
        );
        if made.kept_at.is_some() {
            // The one line with the token: on stdout, never in the log.
            println!(
                "Open the console at {}",
                access::console_url(bound, &made.token)
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        Ok(Some(Bound {
            listener: l,
            tokens,
            guard: Guard::new(bound, &self.cfg.api_allowed_hosts),
        }))
    }

    pub(super) async fn serve(self: Arc<Self>, http: Bound, stop: CancellationToken) -> Result<()> {
        let routes = router(self, http.tokens, http.guard, stop.clone());
        axum::serve(
            http.listener,
            routes.into_make_service_with_connect_info::<LocalAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("the HTTP listener stopped: {e}"))
    }
}
