//! Small machine-readable views: `/badge/{service}.svg` (shields-style) and
//! `/history.atom` (incidents and their updates, for people who subscribe).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::extract::PathParams;
use super::{ApiError, AppState};
use crate::format;
use crate::incident::ComponentStatus;
use crate::incident::public::{escape, incident_name, public_updates};
use crate::store::IncidentFilter;

/// `GET /badge/{service}.svg`.
pub async fn badge(
    State(state): State<AppState>,
    PathParams(file): PathParams<String>,
) -> Result<Response, ApiError> {
    let Some(id) = file.strip_suffix(".svg") else {
        return Err(ApiError::not_found("badges are /badge/{service}.svg"));
    };
    let snap = state.snapshot.borrow().clone();
    let service = snap
        .services
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no service `{id}`")))?;
    let (message, colour) = match service.status {
        ComponentStatus::Operational => ("operational", "#1a7f37"),
        ComponentStatus::DegradedPerformance => ("degraded", "#9a6700"),
        ComponentStatus::PartialOutage => ("partial outage", "#c2410c"),
        ComponentStatus::MajorOutage => ("major outage", "#b91c1c"),
        ComponentStatus::UnderMaintenance => ("maintenance", "#1d4ed8"),
    };
    let svg = render_badge(&service.name, message, colour);
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        svg,
    )
        .into_response())
}

/// A flat two-part badge; widths approximated from character counts (Verdana 11px).
pub fn render_badge(label: &str, message: &str, colour: &str) -> String {
    let width = |s: &str| 10 + s.chars().count() * 7;
    let (lw, mw) = (width(label), width(message));
    let total = lw + mw;
    let (label, message) = (escape(label), escape(message));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {message}"><title>{label}: {message}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{mx}" y="14">{message}</text></g></svg>"##,
        lx = lw / 2,
        mx = lw + mw / 2,
    )
}

/// `GET /history.atom`: the 50 most recent incidents, one entry each, newest first.
pub async fn history(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let site = state.site.borrow().clone();
    let snap = state.snapshot.borrow().clone();
    let base = state.base_url(&site);
    let incidents = state
        .store
        .incidents(IncidentFilter {
            open: None,
            service: None,
            limit: 50,
        })
        .await?;
    let views: Vec<_> = incidents
        .iter()
        .map(|inc| {
            snap.open_incidents
                .iter()
                .find(|v| v.id == inc.id)
                .cloned()
                .unwrap_or_else(|| inc.view(now))
        })
        .collect();
    let updated = views
        .iter()
        .filter_map(|v| v.timeline.last().map(|e| e.at))
        .max()
        .unwrap_or(now);
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{title} — incident history</title><id>{base}/history.atom</id><link rel="self" href="{base}/history.atom"/><link href="{base}/"/><updated>{updated}</updated><author><name>{title}</name></author>"#,
        title = escape(&site.server.page_title),
        base = escape(&base),
        updated = updated.to_rfc3339(),
    );
    for v in &views {
        let updates = public_updates(v);
        let updated = updates.last().map_or(v.detected_at, |u| u.at);
        let mut content = String::from("<ul>");
        for update in updates.iter().rev() {
            let _ = write!(
                content,
                "<li>{} — {}: {}</li>",
                escape(&site.page.time(update.at)),
                update.status,
                escape(&update.text)
            );
        }
        content.push_str("</ul>");
        let share = v
            .per_service
            .values()
            .map(|s| s.peak_share)
            .fold(0.0, f64::max);
        let _ = write!(
            out,
            r#"<entry><title>{title}</title><id>{base}/incidents/{id}</id><link href="{base}/incidents/{id}"/><published>{published}</published><updated>{updated}</updated><summary>{status}, {share} of subscribers at worst</summary><content type="html">{content}</content></entry>"#,
            title = escape(&incident_name(v)),
            base = escape(&base),
            id = escape(&v.id),
            published = v.detected_at.to_rfc3339(),
            updated = updated.to_rfc3339(),
            status = updates.last().map_or("investigating", |u| u.status),
            share = format::percent(share),
            content = escape(&content),
        );
    }
    out.push_str("</feed>");
    Ok((
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        out,
    )
        .into_response())
}
