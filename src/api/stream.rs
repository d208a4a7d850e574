//! `GET /api/v1/events` (server-sent events of job and run state changes,
//! read from the ledger's `changes` table, so changes made by any worker
//! or by the CLI are seen) and `GET /api/v1/inbox` (consumed messages).

use super::{limit, ApiError, ApiQuery, ApiResult, ApiState};
use crate::ledger::{Change, Disposition, InboxRow};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream looks for new changes.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only the changes of this run (its jobs and itself).
    run: Option<String>,
    /// Resume after this change (the `id:` of the last event seen; the
    /// `Last-Event-ID` header does the same). Default: from now.
    #[param(minimum = 0, maximum = 9007199254740991_i64)]
    after: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// applied, duplicate, stale, deferred, foreign, quarantined or ignored.
    disposition: Option<String>,
    /// Rows (1-500, default 100).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Inbox {
    /// Newest first, with each message's body as received.
    pub events: Vec<InboxRow>,
}

const DISPOSITIONS: [Disposition; 7] = [
    Disposition::Applied,
    Disposition::Duplicate,
    Disposition::Stale,
    Disposition::Deferred,
    Disposition::Foreign,
    Disposition::Quarantined,
    Disposition::Ignored,
];

/// The inbox: the latest consumed messages and what became of them.
#[utoipa::path(get, path = "/api/v1/inbox", tag = "events", params(InboxQuery),
    responses(
        (status = 200, description = "Consumed messages, newest first", body = Inbox),
        (status = 400, description = "A bad filter", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn inbox(
    State(api): ApiState,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> ApiResult<Json<Inbox>> {
    let disposition = match q.disposition.as_deref().filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => Some(
            DISPOSITIONS
                .into_iter()
                .find(|x| x.as_str().eq_ignore_ascii_case(d))
                .ok_or_else(|| {
                    ApiError::bad(
                        "disposition",
                        format!(
                            "disposition={d:?}: one of {}",
                            DISPOSITIONS.map(|x| x.as_str()).join(", ")
                        ),
                    )
                })?,
        ),
    };
    let events = api
        .services
        .ledger
        .inbox_by(disposition, limit(q.limit, 100)?)
        .await?;
    Ok(Json(Inbox { events }))
}

/// Where a stream is.
struct Cursor {
    api: std::sync::Arc<super::Api>,
    run: Option<String>,
    /// The last change queued (the stream goes on after it).
    last: i64,
    queue: VecDeque<Change>,
}

impl Cursor {
    /// The next event to send, waiting for one; `None` when the worker
    /// stops.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(c) = self.queue.pop_front() {
                let data = serde_json::to_string(&c).unwrap_or_default();
                return Some(
                    Event::default()
                        .event(c.kind.clone())
                        .id(c.seq.to_string())
                        .data(data),
                );
            }
            match self
                .api
                .services
                .ledger
                .changes(self.last, self.run.as_deref(), 500)
                .await
            {
                Ok(rows) => {
                    // In the stream's order, each committed change once.
                    if let Some(c) = rows.last() {
                        self.last = c.seq;
                    }
                    self.queue.extend(rows);
                    if !self.queue.is_empty() {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "The event stream cannot read the ledger.");
                    let msg =
                        serde_json::json!({ "message": format!("cannot read the ledger: {e}") });
                    tokio::select! {
                        _ = self.api.stop.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    return Some(Event::default().event("error").data(msg.to_string()));
                }
            }
            tokio::select! {
                _ = self.api.stop.cancelled() => return None,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// The largest event id a client may send back: 2^53 - 1, the largest
/// whole number every JSON reader keeps exactly (the ids are the ledger's
/// change sequence numbers, far below it).
const MAX_EVENT_ID: i64 = (1 << 53) - 1;

/// An event id sent back (`Last-Event-ID` or `after`): a whole number 0 to
/// [`MAX_EVENT_ID`], else a 400 naming `field`.
fn event_id(field: &str, text: &str) -> ApiResult<i64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (0..=MAX_EVENT_ID).contains(n))
        .ok_or_else(|| {
            ApiError::bad(
                field,
                format!(
                    "{field}: {text:?} is not an event id this API sent: give the id: of an \
                     event, a whole number 0 to {MAX_EVENT_ID}"
                ),
            )
        })
}

/// Job and run state changes as server-sent events (`event: job` or
/// `event: run`, `id:` the change's sequence number, `data:` a Change).
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses(
        (status = 200, description = "An endless text/event-stream; each data line is a Change", content_type = "text/event-stream", body = Change),
        (status = 400, description = "A bad parameter", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn events(
    State(api): ApiState,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(event_id(
            "Last-Event-ID",
            &String::from_utf8_lossy(v.as_bytes()),
        )?),
    };
    let after = match q.after {
        None => None,
        Some(a) => Some(event_id("after", &a.to_string())?),
    };
    let last = match resume.or(after) {
        Some(n) => n,
        None => api.services.ledger.last_change().await?,
    };
    let cursor = Cursor {
        api,
        run: q.run.filter(|r| !r.is_empty()),
        last,
        queue: VecDeque::new(),
    };
    let stream =
        futures_util::stream::unfold(
            cursor,
            |mut c| async move { c.next().await.map(|e| (Ok(e), c)) },
        );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_range_checked() {
        assert_eq!(event_id("after", "0").unwrap(), 0);
        assert_eq!(event_id("Last-Event-ID", " 42 ").unwrap(), 42);
        for bad in ["-1", "-9223372036854775808", "9223372036854775807", "x", ""] {
            let e = event_id("Last-Event-ID", bad).unwrap_err();
            assert_eq!(e.body.field.as_deref(), Some("Last-Event-ID"), "{bad}");
        }
    }
}
