//! `http` probe: one request driven phase by phase (resolve, connect, TLS, response head,
//! body), so each phase has its own time, the way blackbox_exporter's httptrace does.
//! Redirects are followed by hand and their phases summed. Every probe opens a fresh
//! connection: one riding a warm connection would not notice a dead listener.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, HOST, HeaderMap, HeaderName, HeaderValue,
    LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::Regex;
use serde::Deserialize;
use serde_json_path::JsonPath;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use url::Url;

use super::conn::{self, DEFAULT_MAX_READ_BYTES, fail};
use super::http_decode::{DecodeError, Decoder, Encoding};
use super::result::{Failure, Phases, ProbeResult, Reason, TlsInfo};
use super::sanitize::{Secrets, authorization_secrets, peer_text};
use super::tls::{self, TlsClients, Trust};
use crate::validation::{Issues, regex_error};

/// Redirects followed before the probe fails with `protocol`.
const MAX_REDIRECTS: usize = 10;

/// Carried by every request of the http probe with this process's [`loop_marker`]: tocsin's
/// own `/probe` refuses a request bearing its marker, so a target redirecting there (to
/// probe itself again) cannot make one scrape recurse through this process.
pub(crate) const LOOP_HEADER: HeaderName = HeaderName::from_static("tocsin-probe-origin");

/// This process's random marker: another tocsin's probes carry a different one, so probing
/// one tocsin from another stays possible.
pub(crate) fn loop_marker() -> &'static HeaderValue {
    static MARKER: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..)))
            .expect("hex digits are a valid header value")
    })
}

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
    /// RFC 9535 JSONPath the JSON body must have at least one match for.
    #[serde(default)]
    pub json_path: Option<String>,
    /// Every match of `json_path` must equal this JSON value (`"ok"` is not `1`, nor `true`).
    #[serde(default)]
    pub json_equals: Option<serde_json::Value>,
    /// Follow up to 10 redirects (default true); when false a 3xx is the final status.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Accept any certificate (self-signed lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
    /// PEM file of the CAs to trust instead of the system's (private PKI).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A success whose certificate chain expires within this (`"21d"`) makes the target
    /// degraded.
    #[serde(default, with = "humantime_serde")]
    pub cert_expiry_warning: Option<Duration>,
    /// Longest body read; a longer body fails the probe (default 1 MiB). With
    /// `accept_encoding`, the limit is on the decoded body.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Ask for a compressed body (`["gzip", "deflate"]`) and decode it before the checks;
    /// by default none is asked for and the body is read as sent.
    #[serde(default)]
    pub accept_encoding: Vec<Encoding>,
    /// Local IP to connect from.
    #[serde(default)]
    pub source_address: Option<String>,
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
    /// `None` (most probes): any 2xx, the body unread. Boxed: rarely set, and a topology
    /// holds a spec per target.
    pub checks: Option<Box<ResponseChecks>>,
    pub follow_redirects: bool,
    pub trust: Trust,
    pub cert_expiry_warning: Option<Duration>,
    pub max_body_bytes: u64,
    pub accept_encoding: Vec<Encoding>,
    pub source_address: Option<IpAddr>,
    /// Credentials the request carries (`Authorization`, `Proxy-Authorization` headers),
    /// which no detail may show.
    pub secrets: Secrets,
}

/// What a response must be beyond a 2xx status.
#[derive(Debug, Clone)]
pub struct ResponseChecks {
    /// `None` means any 2xx.
    pub valid_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Regex>,
    pub json_path: Option<JsonPath>,
    pub json_equals: Option<serde_json::Value>,
}

impl ResponseChecks {
    /// Whether the body is read for a check (`json_equals` needs `json_path`).
    fn reads_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some() || self.json_path.is_some()
    }
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
        if !self.accept_encoding.is_empty() {
            let offer: Vec<&str> = self.accept_encoding.iter().map(|e| e.as_str()).collect();
            let value = HeaderValue::from_str(&offer.join(", ")).expect("token characters");
            headers.insert(ACCEPT_ENCODING, value);
            if self
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("accept-encoding"))
            {
                issues.push(
                    format!("{path}.accept_encoding"),
                    "set `accept_encoding` or an Accept-Encoding header, not both",
                );
            }
        }
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
        let json_path = self
            .json_path
            .as_ref()
            .and_then(|p| match JsonPath::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    issues.push(format!("{path}.json_path"), format!("`{p}`: {e}"));
                    None
                }
            });
        if self.json_equals.is_some() && self.json_path.is_none() {
            issues.push(format!("{path}.json_equals"), "needs `json_path`");
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_READ_BYTES);
        if max_body_bytes == 0 {
            issues.push(format!("{path}.max_body_bytes"), "must be at least 1");
        }
        let trust = match (&self.ca_file, self.tls_insecure) {
            (Some(_), true) => {
                issues.push(
                    format!("{path}.tls_insecure"),
                    "set `ca_file` or `tls_insecure`, not both",
                );
                None
            }
            (Some(file), false) => {
                tls::ca_file_client(file, &tls::HTTP_ALPN, path, issues).map(Trust::CaFile)
            }
            (None, true) => Some(Trust::Insecure),
            (None, false) => Some(Trust::System),
        };
        tls::check_expiry_warning(self.cert_expiry_warning, path, issues);
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        if issues.len() > before {
            return None;
        }
        let secrets = [AUTHORIZATION, PROXY_AUTHORIZATION]
            .iter()
            .filter_map(|name| headers.get(name)?.to_str().ok())
            .flat_map(authorization_secrets);
        let checks = ResponseChecks {
            valid_status: (!self.valid_status.is_empty()).then(|| self.valid_status.clone()),
            body_contains: self.body_contains.clone(),
            body_regex,
            json_path,
            json_equals: self.json_equals.clone(),
        };
        Some(HttpSpec {
            secrets: Secrets::new(secrets),
            url: url?,
            method: method?,
            headers,
            body: self.body.clone(),
            checks: (checks.valid_status.is_some() || checks.reads_body())
                .then(|| Box::new(checks)),
            follow_redirects: self.follow_redirects,
            trust: trust?,
            cert_expiry_warning: self.cert_expiry_warning,
            max_body_bytes,
            accept_encoding: self.accept_encoding.clone(),
            source_address,
        })
    }
}

/// Plain TCP or TLS, so one hyper connection type serves both.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Aborts the task driving a connection when the probe is done with it, whichever way it
/// ends (even cut by the outer deadline), so the peer sees the connection close.
struct Hangup(AbortHandle);

impl Drop for Hangup {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response head and the connection its body arrives on.
struct Hop {
    response: Response<Incoming>,
    _connection: Hangup,
}

/// What one request needs besides the shared spec; redirects change these.
struct Target<'a> {
    url: &'a Url,
    method: &'a Method,
    body: Option<&'a str>,
}

fn add(slot: &mut Option<Duration>, d: Duration) {
    *slot = Some(slot.unwrap_or_default() + d);
}

/// One request over a fresh connection, up to the response head; adds to `phases` and
/// records the TLS handshake in `tls_info`.
async fn request(
    clients: &TlsClients,
    spec: &HttpSpec,
    target: Target<'_>,
    deadline: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
) -> Result<Hop, Failure> {
    let url = target.url;
    let host = url
        .host_str()
        .ok_or_else(|| fail(Reason::Protocol, format!("{url} has no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| fail(Reason::Protocol, format!("{url} has no port")))?;

    let step = Instant::now();
    let addr = conn::resolve(&format!("{host}:{port}"), spec.source_address, deadline).await?;
    add(&mut phases.dns, step.elapsed());

    let step = Instant::now();
    let stream = conn::connect(addr, spec.source_address, deadline).await?;
    add(&mut phases.connect, step.elapsed());

    let (io, h2): (Box<dyn Io>, bool) = if url.scheme() == "https" {
        let step = Instant::now();
        let name = tls::server_name(host)
            .ok_or_else(|| fail(Reason::Tls, format!("`{host}` is not a TLS server name")))?;
        let config = clients.config(&spec.trust, true);
        let (stream, info) =
            tls::handshake(config, name, stream, spec.cert_expiry_warning, deadline).await?;
        add(&mut phases.tls, step.elapsed());
        *tls_info = Some(info);
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        (Box::new(stream), h2)
    } else {
        (Box::new(stream), false)
    };

    let step = Instant::now();
    let body = Full::new(Bytes::from(target.body.unwrap_or_default().to_owned()));
    let mut builder = Request::builder().method(target.method.clone());
    builder = if h2 {
        builder.uri(url.as_str())
    } else {
        let mut origin = url.path().to_string();
        if let Some(query) = url.query() {
            origin.push('?');
            origin.push_str(query);
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        builder.uri(origin).header(HOST, authority)
    };
    let mut request = builder
        .body(body)
        .map_err(|e| fail(Reason::Internal, format!("request: {e}")))?;
    let headers = request.headers_mut();
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tocsin/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &spec.headers {
        headers.insert(name, value.clone());
    }
    headers.insert(LOOP_HEADER, loop_marker().clone());

    let io = TokioIo::new(io);
    let hyper_error = |e: hyper::Error| fail(Reason::Protocol, error_chain(&e));
    let exchange = async {
        if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(hyper_error)?;
            let hangup = Hangup(tokio::spawn(connection).abort_handle());
            let response = sender.send_request(request).await.map_err(hyper_error)?;
            Ok(Hop {
                response,
                _connection: hangup,
            })
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(hyper_error)?;
            let hangup = Hangup(tokio::spawn(connection).abort_handle());
            let response = sender.send_request(request).await.map_err(hyper_error)?;
            Ok(Hop {
                response,
                _connection: hangup,
            })
        }
    };
    let hop = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(fail(
            Reason::Timeout,
            "no response head before the deadline",
        )),
        Ok(hop) => hop,
    }?;
    add(&mut phases.first_byte, step.elapsed());
    Ok(hop)
}

/// Where a redirect points, if this response is one the probe follows.
fn redirect_target(
    url: &Url,
    response: &Response<Incoming>,
    secrets: &Secrets,
) -> Option<Result<Url, Failure>> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?;
    let next = location
        .to_str()
        .ok()
        .and_then(|l| url.join(l).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    Some(next.ok_or_else(|| {
        fail(
            Reason::Protocol,
            format!(
                "redirect to an unusable location `{}`",
                peer_text(location.as_bytes(), secrets)
            ),
        )
    }))
}

pub async fn run(clients: &TlsClients, spec: &HttpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut tls_info = None;
    let mut status = None;
    let outcome = exchange(
        clients,
        spec,
        deadline,
        &mut phases,
        &mut tls_info,
        &mut status,
    )
    .await;
    let total = start.elapsed();
    phases.total = Some(total);
    let mut result = match outcome {
        Ok(()) => ProbeResult::success(total, phases),
        Err(failure) => ProbeResult::failed(failure, total, phases),
    };
    result.tls = tls_info;
    result.http_status = status;
    result
}

/// The request, its redirects, the body and the checks.
async fn exchange(
    clients: &TlsClients,
    spec: &HttpSpec,
    deadline: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
    status_code: &mut Option<u16>,
) -> Result<(), Failure> {
    let mut url = spec.url.clone();
    let mut method = spec.method.clone();
    let mut body = spec.body.as_deref();
    let mut redirects = 0;
    let hop = loop {
        let target = Target {
            url: &url,
            method: &method,
            body,
        };
        let hop = request(clients, spec, target, deadline, phases, tls_info).await?;
        if !spec.follow_redirects {
            break hop;
        }
        let Some(next) = redirect_target(&url, &hop.response, &spec.secrets) else {
            break hop;
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(fail(
                Reason::Protocol,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        // As browsers do: 303, and 301/302 after a POST, continue with a GET.
        let status = hop.response.status();
        if status == StatusCode::SEE_OTHER
            || (method == Method::POST
                && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
        {
            method = Method::GET;
            body = None;
        }
        url = next?;
    };

    let status = hop.response.status().as_u16();
    *status_code = Some(status);
    let checks = spec.checks.as_deref();
    let status_ok = match checks.and_then(|c| c.valid_status.as_ref()) {
        Some(valid) => valid.contains(&status),
        None => (200..300).contains(&status),
    };
    if !status_ok {
        return Err(fail(Reason::Status, format!("status {status}")));
    }

    let body_checks = checks.filter(|c| c.reads_body());
    let keep_body = body_checks.is_some();
    let decoder = decoder(spec, &hop.response, keep_body)?;
    let body = read_body(hop, spec.max_body_bytes, keep_body, decoder, deadline).await?;
    if let Some(checks) = body_checks {
        check_body(checks, &spec.secrets, &body)?;
    }
    Ok(())
}

/// The decoder for the response's Content-Encoding, when the probe asked for one.
fn decoder(
    spec: &HttpSpec,
    response: &Response<Incoming>,
    keep: bool,
) -> Result<Option<Decoder>, Failure> {
    if spec.accept_encoding.is_empty() {
        return Ok(None);
    }
    let Some(value) = response.headers().get(CONTENT_ENCODING) else {
        return Ok(None);
    };
    let name = value.to_str().unwrap_or_default().trim();
    if name.eq_ignore_ascii_case("identity") {
        return Ok(None);
    }
    match spec
        .accept_encoding
        .iter()
        .find(|e| name.eq_ignore_ascii_case(e.as_str()))
    {
        Some(&encoding) => Ok(Some(Decoder::new(encoding, spec.max_body_bytes, keep))),
        None => Err(fail(
            Reason::Protocol,
            format!("Content-Encoding {value:?}, which the probe did not ask for"),
        )),
    }
}

fn decode_failure(error: DecodeError) -> Failure {
    match error {
        DecodeError::TooLarge(_) => fail(Reason::Assertion, error.to_string()),
        DecodeError::Corrupt { .. } => fail(Reason::Protocol, error.to_string()),
    }
}

/// Reads the body up to `limit` bytes (decoded, with a decoder), keeping it only when a
/// check needs it; returning drops the connection, so a longer body is never drained.
async fn read_body(
    hop: Hop,
    limit: u64,
    keep: bool,
    mut decoder: Option<Decoder>,
    deadline: Instant,
) -> Result<Vec<u8>, Failure> {
    let mut incoming = hop.response.into_body();
    let mut body = Vec::new();
    let mut read: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, incoming.frame()).await {
            Err(_) => {
                return Err(fail(
                    Reason::Timeout,
                    "body not complete before the deadline",
                ));
            }
            Ok(None) => {
                return match decoder {
                    Some(d) => d.finish().map_err(decode_failure),
                    None => Ok(body),
                };
            }
            Ok(Some(Err(e))) => return Err(fail(Reason::Protocol, error_chain(&e))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        read += chunk.len() as u64;
        if read > limit {
            return Err(fail(
                Reason::Assertion,
                format!("body larger than max_body_bytes ({limit})"),
            ));
        }
        if let Some(d) = &mut decoder {
            d.write(&chunk).map_err(decode_failure)?;
        } else if keep {
            body.extend_from_slice(&chunk);
        }
    }
}

fn check_body(checks: &ResponseChecks, secrets: &Secrets, body: &[u8]) -> Result<(), Failure> {
    let text = String::from_utf8_lossy(body);
    let quoted = || format!("; the body starts `{}`", peer_text(body, secrets));
    if let Some(needle) = &checks.body_contains
        && !text.contains(needle.as_str())
    {
        return Err(fail(
            Reason::Assertion,
            format!("body does not contain {needle:?}{}", quoted()),
        ));
    }
    if let Some(re) = &checks.body_regex
        && !re.is_match(&text)
    {
        return Err(fail(
            Reason::Assertion,
            format!("body does not match /{re}/{}", quoted()),
        ));
    }
    if let Some(path) = &checks.json_path {
        let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            fail(
                Reason::Assertion,
                format!("body is not JSON: {e}{}", quoted()),
            )
        })?;
        let nodes = path.query(&json).all();
        if nodes.is_empty() {
            return Err(fail(Reason::Assertion, format!("{path} matches nothing")));
        }
        if let Some(expected) = &checks.json_equals
            && let Some(other) = nodes.iter().find(|n| **n != expected)
        {
            let other = peer_text(other.to_string().as_bytes(), secrets);
            return Err(fail(
                Reason::Assertion,
                format!("{path} is {other}, not {expected}"),
            ));
        }
    }
    Ok(())
}

/// `error: cause: cause`, the way people read errors.
fn error_chain(error: &dyn std::error::Error) -> String {
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
            json_path: None,
            json_equals: None,
            follow_redirects: true,
            tls_insecure: false,
            ca_file: None,
            cert_expiry_warning: None,
            max_body_bytes: None,
            accept_encoding: vec![],
            source_address: None,
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

    /// A server echoing the request (headers and all) in its body: the excerpt in the
    /// assertion detail shows neither the basic credentials nor their decoded password.
    #[test]
    fn body_excerpts_never_show_the_credentials_sent() {
        use base64::Engine as _;
        let mut c = config("http://127.0.0.1/");
        let token = base64::engine::general_purpose::STANDARD.encode("probe:s3cret-pw");
        c.headers
            .insert("Authorization".into(), format!("Basic {token}"));
        c.body_contains = Some("ready".into());
        let spec = c.build("p", &mut Issues::default()).unwrap();
        let body = format!("GET / HTTP/1.1\r\nauthorization: Basic {token}\r\n\r\nS3CRET-PW");
        let checks = spec.checks.as_deref().expect("a body check");
        let detail = check_body(checks, &spec.secrets, body.as_bytes())
            .unwrap_err()
            .detail;
        assert!(detail.starts_with("body does not contain \"ready\"; the body starts `GET"));
        for secret in [token.as_str(), "s3cret-pw", "S3CRET-PW"] {
            assert!(!detail.contains(secret), "{secret} in {detail}");
        }
        assert!(!detail.chars().any(char::is_control), "{detail:?}");
    }

    #[test]
    fn empty_valid_status_means_any_2xx() {
        let mut issues = Issues::default();
        let spec = config("http://127.0.0.1/").build("p", &mut issues).unwrap();
        assert!(spec.checks.is_none());
        assert_eq!(spec.max_body_bytes, DEFAULT_MAX_READ_BYTES);
    }
}
