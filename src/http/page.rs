//! `GET /`: a minimal server-rendered status page (services and open incidents).
//! No JavaScript, no external assets; everything from config or state is escaped.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use super::AppState;
use crate::incident::ComponentStatus;

pub async fn index(State(state): State<AppState>) -> Html<String> {
    let snap = state.snapshot.borrow().clone();
    let title = state.settings.borrow().server.page_title.clone();
    let mut out = String::with_capacity(4096);
    let worst = snap
        .services
        .iter()
        .map(|s| s.status)
        .filter(|s| s.is_failing())
        .max();
    let banner = match worst {
        None => "All systems operational",
        Some(ComponentStatus::MajorOutage) => "Major outage",
        Some(ComponentStatus::PartialOutage) => "Partial outage",
        Some(_) => "Degraded performance",
    };
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="15"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}}
.banner{{padding:1rem;border-radius:.4rem;font-weight:600;background:#e6f4ea}}
.banner.bad{{background:#fde8e8}} table{{width:100%;border-collapse:collapse}}
td,th{{padding:.5rem;border-bottom:1px solid #ddd;text-align:left}}
.operational{{color:#1e7b34}} .degraded_performance{{color:#8a6100}}
.partial_outage{{color:#b3261e}} .major_outage{{color:#7f0000;font-weight:700}}
.under_maintenance{{color:#1f4e99}}
</style></head><body><h1>{title}</h1>
<p class="banner{bad}" role="status">{banner}</p>
<h2>Services</h2><table><thead><tr><th>Service</th><th>Status</th><th>Affected subscribers</th></tr></thead><tbody>
"#,
        title = escape(&title),
        bad = if worst.is_some() { " bad" } else { "" },
    );
    for s in &snap.services {
        let affected = if s.status == ComponentStatus::Operational {
            "—".to_string()
        } else {
            format!("{} ({:.2}%)", s.affected, s.share * 100.0)
        };
        let _ = writeln!(
            out,
            r#"<tr><td>{}</td><td class="{status}">{label}</td><td>{affected}</td></tr>"#,
            escape(&s.name),
            status = s.status.as_str(),
            label = s.status.as_str().replace('_', " "),
        );
    }
    out.push_str("</tbody></table><h2>Open incidents</h2>");
    if snap.open_incidents.is_empty() {
        out.push_str("<p>No open incidents.</p>");
    }
    for inc in &snap.open_incidents {
        let _ = write!(
            out,
            "<section><h3>{id}: {services}</h3><p>{status:?}, {severity:?}, {scope:?} scope; \
             {peak} subscribers at peak; since {onset}</p><ul>",
            id = escape(&inc.id),
            services = escape(&inc.services.join(", ")),
            status = inc.status,
            severity = inc.severity,
            scope = inc.scope,
            peak = inc.peak_affected,
            onset = inc.onset_at.format("%Y-%m-%d %H:%M:%S UTC"),
        );
        for entry in &inc.timeline {
            let _ = write!(
                out,
                "<li><time>{}</time> {}</li>",
                entry.at.format("%H:%M:%S"),
                escape(&entry.message)
            );
        }
        out.push_str("</ul></section>");
    }
    let _ = write!(
        out,
        "<footer><p>Updated {}. <a href=\"/api/v1/status\">JSON</a> · <a href=\"/metrics\">metrics</a></p></footer></body></html>",
        snap.generated_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    Html(out)
}

/// HTML escaping for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
