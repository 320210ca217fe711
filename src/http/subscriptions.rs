//! Subscribing to the status page: `POST /api/v1/subscriptions` (JSON) and
//! `POST /subscriptions` (the page's form), and the links of the mails,
//! `GET /subscriptions/confirm?token=…` and `GET /subscriptions/unsubscribe?token=…`
//! (also POST, for one-click unsubscribe). Tokens are compared through their hashes; no
//! address is logged.

use std::fmt::Write as _;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use url::Url;

use super::extract::{JsonBody, QueryParams};
use super::status_page::head;
use super::{ApiError, AppState};
use crate::alert::subscribers::{
    address_key, confirm_link, hash_token, new_subscription, parse_channel, unsubscribe_link,
};
use crate::incident::public::escape;
use crate::store::{Channel, TokenKind};

/// `POST /api/v1/subscriptions`: `email` or `webhook`, and `services` (ids; all when
/// empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionCreated {
    pub id: String,
    /// `pending` (an e-mail waiting for its confirmation) or `active` (a webhook).
    pub status: &'static str,
    pub services: Vec<String>,
    /// For a webhook, which has no mail to carry it (every payload has it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: String,
}

/// `202` with a pending e-mail subscription, `201` with an active webhook one.
pub async fn subscribe_json(
    State(state): State<AppState>,
    body: Result<JsonBody<SubscriptionRequest>, ApiError>,
) -> Result<(StatusCode, Json<SubscriptionCreated>), ApiError> {
    let JsonBody(request) = body?;
    let created = create(&state, request).await?;
    let status = match created.status {
        "active" => StatusCode::CREATED,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(created)))
}

/// The page's form (`application/x-www-form-urlencoded`: `email`, `service` repeated).
pub async fn subscribe_form(State(state): State<AppState>, body: Bytes) -> Response {
    let mut request = SubscriptionRequest {
        email: None,
        webhook: None,
        services: Vec::new(),
    };
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "email" => request.email = Some(value.into_owned()),
            "service" => request.services.push(value.into_owned()),
            _ => {}
        }
    }
    match create(&state, request).await {
        Ok(_) => page(
            &state,
            StatusCode::OK,
            "Check your inbox",
            "We sent a confirmation link to the address. Nothing is sent until it is followed.",
        ),
        Err(e) => {
            let (status, message) = e.parts();
            page(&state, status, "Not subscribed", message)
        }
    }
}

async fn create(
    state: &AppState,
    request: SubscriptionRequest,
) -> Result<SubscriptionCreated, ApiError> {
    let site = state.site.borrow().clone();
    let Some(spec) = site.subscriptions.as_ref() else {
        return Err(ApiError::not_found("subscriptions are not enabled"));
    };
    let channel = parse_channel(request.email.as_deref(), request.webhook.as_deref())
        .map_err(ApiError::bad_request)?;
    let mut services = Vec::new();
    for id in request.services {
        if site.topology.service_index(&id).is_none() {
            return Err(ApiError::bad_request(format!(
                "no service `{}`",
                id.escape_debug()
            )));
        }
        if !services.contains(&id) {
            services.push(id);
        }
    }
    let now = state.clock.now();
    state
        .subscribe_limit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&address_key(&channel), spec.max_per_address_per_hour, now)
        .map_err(|_| {
            ApiError::too_many_requests("too many subscription requests for this address")
        })?;
    let confirm_within =
        chrono::Duration::from_std(spec.confirm_within).unwrap_or(chrono::Duration::MAX);
    state.store.expire_unconfirmed(now - confirm_within);
    let email = match &channel {
        Channel::Email(address) => Some(address.clone()),
        Channel::Webhook(_) => None,
    };
    let (sub, confirm) = new_subscription(channel, services, now);
    let unsubscribe = spec.unsubscribe_token(&sub.id);
    state.store.subscribe(
        &sub,
        confirm.as_deref().map(hash_token),
        hash_token(&unsubscribe),
    );
    state.store.flush().await?;
    let base = Url::parse(&state.base_url(&site)).ok();
    if let (Some(address), Some(token)) = (&email, &confirm) {
        let link = confirm_link(base.as_ref(), token);
        if let Err(e) = spec
            .send_confirmation(address, &site.server.page_title, &link)
            .await
        {
            // The reason goes to debug: an SMTP answer may quote the address.
            tracing::warn!(subscription = %sub.id, "cannot send a confirmation mail");
            tracing::debug!(subscription = %sub.id, error = %e, "confirmation mail failure");
            state.store.unsubscribe(&sub.id);
            state.store.flush().await?;
            return Err(ApiError::unavailable(
                "cannot send the confirmation mail now; try again later",
            ));
        }
    }
    let kind = if email.is_some() { "email" } else { "webhook" };
    tracing::info!(subscription = %sub.id, kind, "subscription created");
    Ok(SubscriptionCreated {
        id: sub.id.clone(),
        status: if sub.confirmed { "active" } else { "pending" },
        services: sub.services.clone(),
        unsubscribe_url: email
            .is_none()
            .then(|| unsubscribe_link(base.as_ref(), &unsubscribe)),
    })
}

/// The confirmation link: the subscription starts receiving notices.
pub async fn confirm(
    State(state): State<AppState>,
    query: Result<QueryParams<TokenQuery>, ApiError>,
) -> Response {
    let site = state.site.borrow().clone();
    let (Some(spec), Ok(QueryParams(query))) = (site.subscriptions.as_ref(), query) else {
        return not_valid(&state);
    };
    let found = state
        .store
        .subscription_by_token(TokenKind::Confirm, hash_token(&query.token))
        .await;
    let sub = match found {
        Ok(Some(sub)) => sub,
        Ok(None) => return not_valid(&state),
        Err(e) => return store_error(&state, e),
    };
    let age = (state.clock.now() - sub.created_at)
        .to_std()
        .unwrap_or_default();
    if age > spec.confirm_within {
        state.store.unsubscribe(&sub.id);
        let _ = state.store.flush().await;
        return not_valid(&state);
    }
    state.store.confirm_subscription(&sub.id);
    if let Err(e) = state.store.flush().await {
        return store_error(&state, e);
    }
    tracing::info!(subscription = %sub.id, "subscription confirmed");
    page(
        &state,
        StatusCode::OK,
        "Subscription confirmed",
        "You will get the status page's updates. Every mail has a link to stop them.",
    )
}

/// The unsubscribe link: deletes the subscription and its address.
pub async fn unsubscribe(
    State(state): State<AppState>,
    query: Result<QueryParams<TokenQuery>, ApiError>,
) -> Response {
    let Ok(QueryParams(query)) = query else {
        return not_valid(&state);
    };
    let found = state
        .store
        .subscription_by_token(TokenKind::Unsubscribe, hash_token(&query.token))
        .await;
    match found {
        Ok(Some(sub)) => {
            state.store.unsubscribe(&sub.id);
            if let Err(e) = state.store.flush().await {
                return store_error(&state, e);
            }
            tracing::info!(subscription = %sub.id, "subscription deleted");
            page(
                &state,
                StatusCode::OK,
                "Unsubscribed",
                "The subscription and its address are deleted. Nothing more will be sent.",
            )
        }
        Ok(None) => page(
            &state,
            StatusCode::NOT_FOUND,
            "No such subscription",
            "It may have been deleted already.",
        ),
        Err(e) => store_error(&state, e),
    }
}

fn not_valid(state: &AppState) -> Response {
    page(
        state,
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "It may have expired: subscribe again from the status page.",
    )
}

fn store_error(state: &AppState, e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "subscription store access failed");
    page(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The request could not be stored.",
    )
}

fn page(state: &AppState, status: StatusCode, heading: &str, text: &str) -> Response {
    let site = state.site.borrow().clone();
    let mut out = String::with_capacity(2048);
    head(&mut out, &site.server.page_title, false);
    let _ = write!(
        out,
        r#"<main><h1>{}</h1><p>{}</p><p><a href="/">Back to the status page</a></p></main></body></html>"#,
        escape(heading),
        escape(text)
    );
    (status, Html(out)).into_response()
}
