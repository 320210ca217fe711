//! `POST /api/v1/targets/{id}/results`: results pushed from the field for a target with
//! `probe = { type = "push", … }`, carrying that target's own bearer token. They go to the
//! engine like a probe run of the scheduler's.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::extract::{JsonBody, PathParams};
use super::{ApiError, AppState};
use crate::clock::{Timestamp, check_input_time};
use crate::engine::Control;
use crate::probe::sanitize::{self, Secrets};
use crate::probe::{Phases, ProbeResult, Reason};
use crate::topology::Topology;

/// Largest body taken: a result with a detail of a few hundred characters is far less.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// How far back `at` may be: a field probe that buffered its results while out of
/// coverage; older ones are history, not health.
const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
/// How far ahead `at` may be: clock skew between the field probe and tocsin.
const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// Largest `latency_ms`: an hour.
const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// The body: `{ok, reason?, latency_ms?, at?, detail?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushedResult {
    ok: bool,
    reason: Option<Reason>,
    latency_ms: Option<f64>,
    at: Option<Timestamp>,
    detail: Option<String>,
}

impl PushedResult {
    /// The result this body reports and when it was taken (`now` without `at`), or every
    /// reason it is refused, `; `-separated. `last` is the target's last result, which a
    /// result may not precede. With the deserialization, the parser the `api_bodies` fuzz
    /// target drives.
    pub fn into_result(
        self,
        now: Timestamp,
        last: Option<Timestamp>,
        secrets: &Secrets,
    ) -> Result<(Timestamp, ProbeResult), String> {
        let mut problems = Vec::new();
        if self.ok && (self.reason.is_some() || self.detail.is_some()) {
            problems.push("reason, detail: describe a failure; only with `ok: false`".into());
        }
        let latency = match self.latency_ms {
            None => Duration::ZERO,
            Some(ms) if (0.0..=MAX_LATENCY_MS).contains(&ms) => Duration::from_secs_f64(ms / 1e3),
            Some(_) => {
                problems.push("latency_ms: must be between 0 and 3600000".to_string());
                Duration::ZERO
            }
        };
        let at = self.at.unwrap_or(now);
        if let Err(e) = check_input_time(at) {
            problems.push(format!("at: {e}"));
        } else if !(now - MAX_AGE..=now + MAX_AHEAD).contains(&at) {
            problems.push(format!(
                "at: must be within the last 15 minutes and at most 1 minute ahead of now ({})",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        } else if let Some(last) = last.filter(|&last| at < last) {
            problems.push(format!(
                "at: before this target's last result ({}); results go in order",
                last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let result = if self.ok {
            ProbeResult::success(latency, Phases::default())
        } else {
            let detail = self
                .detail
                .unwrap_or_else(|| "reported by the field probe".into());
            ProbeResult::failure(
                self.reason.unwrap_or(Reason::Reported),
                sanitize::detail(&detail, secrets),
                latency,
            )
        };
        Ok((at, result))
    }
}

/// What a `202` says: the target and the time the result counts at.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub target: String,
    pub at: Timestamp,
}

/// `202` once the engine has the result; `401` without a bearer token, `403` with a token
/// that is no push target's, or another target's; `404` for no such target.
pub async fn post_result(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Result<JsonBody<PushedResult>, ApiError>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let topology = std::sync::Arc::clone(&state.site.borrow().topology);
    let index = authorize(&topology, &id, &headers)?;
    let JsonBody(request) = body?;
    let last = state.snapshot.borrow().last_result_at(&id);
    let token = topology.targets[index]
        .probe
        .pushed()
        .map(|p| p.token.as_str());
    let secrets = Secrets::new(token);
    let (at, result) = request
        .into_result(state.clock.now(), last, &secrets)
        .map_err(ApiError::bad_request)?;
    state
        .engine
        .send(Control::Pushed {
            target: id.clone(),
            at,
            result,
        })
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { target: id, at })))
}

/// The index of push target `id` if the request carries its token. Every push target's
/// token is compared, each in constant time, so that neither the answer's timing nor its
/// status tells a wrong token from one of another target until one matches.
fn authorize(topology: &Topology, id: &str, headers: &HeaderMap) -> Result<usize, ApiError> {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let mut holder = None;
    for (i, t) in topology.targets.iter().enumerate() {
        if let Some(push) = t.probe.pushed()
            && bool::from(given.as_bytes().ct_eq(push.token.as_bytes()))
        {
            holder.get_or_insert(i);
        }
    }
    let Some(holder) = holder else {
        return Err(ApiError::forbidden("wrong token"));
    };
    if topology.targets[holder].id == id {
        return Ok(holder);
    }
    match topology.target_index(id) {
        None => Err(ApiError::not_found(format!("no target `{id}`"))),
        Some(_) => Err(ApiError::forbidden(
            "this token is another target's: each target takes its own",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-07-05T14:00:00Z".parse().unwrap()
    }

    fn parse(body: &str) -> Result<(Timestamp, ProbeResult), String> {
        let request: PushedResult = serde_json::from_str(body).map_err(|e| e.to_string())?;
        request.into_result(now(), None, &Secrets::new(["s3cret"]))
    }

    #[test]
    fn a_failure_keeps_its_reason_and_a_sanitized_detail() {
        let (at, result) =
            parse(r#"{"ok": false, "reason": "timeout", "detail": "no bearer\u0007 s3cret"}"#)
                .unwrap();
        assert_eq!(at, now());
        let failure = result.failure.unwrap();
        assert_eq!(failure.reason, Reason::Timeout);
        assert!(!failure.detail.contains("s3cret"), "{}", failure.detail);
        assert!(!failure.detail.contains('\u{7}'));
        let (_, result) = parse(r#"{"ok": false}"#).unwrap();
        assert_eq!(result.failure.unwrap().reason, Reason::Reported);
    }

    #[test]
    fn times_far_off_and_out_of_order_are_refused() {
        assert!(parse(r#"{"ok": true, "at": "2026-07-05T13:40:00Z"}"#).is_err());
        assert!(parse(r#"{"ok": true, "at": "2026-07-05T14:05:00Z"}"#).is_err());
        assert!(parse(r#"{"ok": true, "at": "2026-07-05T13:50:00Z", "latency_ms": 12}"#).is_ok());
        let earlier: PushedResult =
            serde_json::from_str(r#"{"ok": true, "at": "2026-07-05T13:59:00Z"}"#).unwrap();
        let last = "2026-07-05T13:59:30Z".parse().ok();
        assert!(earlier.into_result(now(), last, &Secrets::NONE).is_err());
    }

    #[test]
    fn bad_fields_are_all_named() {
        let e = parse(r#"{"ok": true, "reason": "dns", "latency_ms": -1}"#).unwrap_err();
        assert!(e.contains("reason") && e.contains("latency_ms"), "{e}");
        assert!(parse(r#"{"ok": true, "extra": 1}"#).is_err());
        assert!(parse(r#"{"ok": false, "reason": "no_such_reason"}"#).is_err());
    }
}
