//! `http` probe: one request, status and body checks, bounded body read.

use std::collections::BTreeMap;
use std::error::Error as _;

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, redirect};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::{DEFAULT_MAX_READ_BYTES, Phases, ProbeResult, Reason, regex_error};
use crate::config::Issues;

/// Redirects followed before the probe fails with `protocol`.
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Request method; default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Accepted status codes; empty means any 2xx.
    #[serde(default)]
    pub valid_status: Vec<u16>,
    /// The body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// Follow up to 10 redirects (default true); when false a 3xx is the final status.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Accept any certificate (self-signed lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
    /// Longest body read; a longer body fails the probe (default 1 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// A validated HTTP probe.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Option<String>,
    /// `None` means any 2xx.
    pub valid_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Regex>,
    pub follow_redirects: bool,
    pub tls_insecure: bool,
    pub max_body_bytes: u64,
}

impl HttpProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<HttpSpec> {
        let before = issues.len();
        let url = match Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            Ok(u) => {
                issues.push(
                    format!("{path}.url"),
                    format!("scheme `{}` is not http or https", u.scheme()),
                );
                None
            }
            Err(e) => {
                issues.push(format!("{path}.url"), e.to_string());
                None
            }
        };
        let method = match &self.method {
            None => Some(Method::GET),
            Some(m) => match Method::from_bytes(m.as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    issues.push(format!("{path}.method"), format!("invalid method `{m}`"));
                    None
                }
            },
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                (Err(_), _) => issues.push(
                    format!("{path}.headers.{name}"),
                    "invalid header name".to_string(),
                ),
                (_, Err(_)) => issues.push(
                    format!("{path}.headers.{name}"),
                    "invalid header value".to_string(),
                ),
            }
        }
        for (i, code) in self.valid_status.iter().enumerate() {
            if !(100..=599).contains(code) {
                issues.push(
                    format!("{path}.valid_status[{i}]"),
                    format!("{code} is not an HTTP status code (100-599)"),
                );
            }
        }
        let body_regex = self.body_regex.as_ref().and_then(|r| match Regex::new(r) {
            Ok(re) => Some(re),
            Err(e) => {
                issues.push(format!("{path}.body_regex"), regex_error(&e));
                None
            }
        });
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_READ_BYTES);
        if max_body_bytes == 0 {
            issues.push(format!("{path}.max_body_bytes"), "must be at least 1");
        }
        if issues.len() > before {
            return None;
        }
        Some(HttpSpec {
            url: url?,
            method: method?,
            headers,
            body: self.body.clone(),
            valid_status: (!self.valid_status.is_empty()).then(|| self.valid_status.clone()),
            body_contains: self.body_contains.clone(),
            body_regex,
            follow_redirects: self.follow_redirects,
            tls_insecure: self.tls_insecure,
            max_body_bytes,
        })
    }
}

/// The four client flavours probes need, built once and shared. Connection reuse is off:
/// a probe that rides a warm connection would not notice a dead listener.
#[derive(Debug, Clone)]
pub struct HttpClients {
    clients: [Client; 4],
}

impl HttpClients {
    pub fn new() -> Result<Self, reqwest::Error> {
        let build = |follow: bool, insecure: bool| {
            Client::builder()
                .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(0)
                .redirect(if follow {
                    redirect::Policy::limited(MAX_REDIRECTS)
                } else {
                    redirect::Policy::none()
                })
                .tls_danger_accept_invalid_certs(insecure)
                .no_proxy()
                .build()
        };
        Ok(Self {
            clients: [
                build(false, false)?,
                build(false, true)?,
                build(true, false)?,
                build(true, true)?,
            ],
        })
    }

    fn pick(&self, follow_redirects: bool, tls_insecure: bool) -> &Client {
        &self.clients[(follow_redirects as usize) * 2 + tls_insecure as usize]
    }
}

pub async fn run(clients: &HttpClients, spec: &HttpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let client = clients.pick(spec.follow_redirects, spec.tls_insecure);
    let mut request = client
        .request(spec.method.clone(), spec.url.clone())
        .headers(spec.headers.clone())
        .timeout(deadline.saturating_duration_since(start));
    if let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let (reason, detail) = classify(&e);
            return ProbeResult::failure(reason, detail, start.elapsed());
        }
    };
    let first_byte = start.elapsed();
    let status = response.status().as_u16();
    let status_ok = match &spec.valid_status {
        Some(valid) => valid.contains(&status),
        None => (200..300).contains(&status),
    };
    if !status_ok {
        return ProbeResult::failure(Reason::Status, format!("status {status}"), start.elapsed());
    }

    let keep_body = spec.body_contains.is_some() || spec.body_regex.is_some();
    let mut body = Vec::new();
    let mut read: u64 = 0;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return ProbeResult::failure(
                    Reason::Timeout,
                    "body not complete before the deadline",
                    start.elapsed(),
                );
            }
            Ok(Err(e)) => {
                let (reason, detail) = classify(&e);
                return ProbeResult::failure(reason, detail, start.elapsed());
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                read += chunk.len() as u64;
                if read > spec.max_body_bytes {
                    return ProbeResult::failure(
                        Reason::Assertion,
                        format!("body larger than max_body_bytes ({})", spec.max_body_bytes),
                        start.elapsed(),
                    );
                }
                if keep_body {
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
    let total = start.elapsed();
    if keep_body {
        let text = String::from_utf8_lossy(&body);
        if let Some(needle) = &spec.body_contains
            && !text.contains(needle.as_str())
        {
            return ProbeResult::failure(
                Reason::Assertion,
                format!("body does not contain {needle:?}"),
                total,
            );
        }
        if let Some(re) = &spec.body_regex
            && !re.is_match(&text)
        {
            return ProbeResult::failure(
                Reason::Assertion,
                format!("body does not match /{re}/"),
                total,
            );
        }
    }
    ProbeResult::success(
        total,
        Phases {
            first_byte: Some(first_byte),
            total: Some(total),
            ..Phases::default()
        },
    )
}

/// Maps a reqwest error to a reason by walking its source chain.
fn classify(error: &reqwest::Error) -> (Reason, String) {
    let detail = error_chain(error);
    if error.is_timeout() {
        return (Reason::Timeout, detail);
    }
    if error.is_redirect() {
        return (Reason::Protocol, detail);
    }
    let mut source = error.source();
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return (Reason::Tls, detail);
        }
        // `io::Error::source()` skips the error it wraps, and the connector nests io errors
        // (Other around InvalidData around rustls::Error), so descend with `get_ref()`.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            let inner = e.get_ref();
            if inner.is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) {
                return (Reason::Tls, detail);
            }
            match e.kind() {
                std::io::ErrorKind::ConnectionRefused => return (Reason::ConnectRefused, detail),
                std::io::ErrorKind::TimedOut => return (Reason::ConnectTimeout, detail),
                _ => {}
            }
            io = inner.and_then(|inner| inner.downcast_ref::<std::io::Error>());
        }
        if err.to_string().starts_with("dns error") {
            return (Reason::Dns, detail);
        }
        source = err.source();
    }
    if error.is_connect() {
        (Reason::ConnectRefused, detail)
    } else {
        (Reason::Protocol, detail)
    }
}

/// `error: cause: cause`, the way people read errors.
fn error_chain(error: &reqwest::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> HttpProbeConfig {
        HttpProbeConfig {
            url: url.into(),
            method: None,
            headers: BTreeMap::new(),
            body: None,
            valid_status: vec![],
            body_contains: None,
            body_regex: None,
            follow_redirects: true,
            tls_insecure: false,
            max_body_bytes: None,
        }
    }

    #[test]
    fn relative_url_is_refused_with_its_path() {
        let mut issues = Issues::default();
        assert!(
            config("/health")
                .build("targets[3].probe", &mut issues)
                .is_none()
        );
        assert_eq!(
            issues.to_string(),
            "targets[3].probe.url: relative URL without a base"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = config("ftp://x");
        c.valid_status = vec![200, 999];
        c.body_regex = Some("(".into());
        let mut issues = Issues::default();
        assert!(c.build("p", &mut issues).is_none());
        let text = issues.to_string();
        assert!(
            text.contains("p.url: scheme `ftp` is not http or https"),
            "{text}"
        );
        assert!(
            text.contains("p.valid_status[1]: 999 is not an HTTP status code"),
            "{text}"
        );
        assert!(text.contains("p.body_regex: "), "{text}");
        assert_eq!(issues.len(), 3);
    }

    #[test]
    fn empty_valid_status_means_any_2xx() {
        let mut issues = Issues::default();
        let spec = config("http://127.0.0.1/").build("p", &mut issues).unwrap();
        assert_eq!(spec.valid_status, None);
        assert_eq!(spec.max_body_bytes, DEFAULT_MAX_READ_BYTES);
    }
}
