//! `tls` probe: handshake with SNI, verify the whole chain, report its earliest expiry.
//!
//! Also the TLS half of the `http` probe: [`TlsClients`] holds the client settings built once
//! per [`Prober`](super::Prober), and `handshake` returns what blackbox_exporter exposes as
//! `probe_ssl_earliest_cert_expiry` and `probe_tls_version_info`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::conn::{self, fail};
use super::result::{Failure, Phases, ProbeResult, Reason, TlsInfo};
use crate::clock::Timestamp;
use crate::validation::Issues;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeConfig {
    /// `host:port`; IPv6 literals in brackets (`[::1]:443`).
    pub address: String,
    /// Server name sent in the handshake and checked against the certificate; default: the
    /// host of `address`.
    #[serde(default)]
    pub sni: Option<String>,
    /// A success whose chain expires within this (`"21d"`) makes the target degraded;
    /// unset: expiry only matters once the chain is invalid.
    #[serde(default, with = "humantime_serde")]
    pub cert_expiry_warning: Option<Duration>,
    /// PEM file of the CAs to trust instead of the system's (private PKI).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Local IP to connect from.
    #[serde(default)]
    pub source_address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub address: String,
    pub server_name: ServerName<'static>,
    pub cert_expiry_warning: Option<Duration>,
    pub trust: Trust,
    pub source_address: Option<IpAddr>,
}

/// Which certificates a probe accepts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's CAs.
    System,
    /// Anything (`tls_insecure`): the chain is still read for its expiry.
    Insecure,
    /// A client built at config time: around the CAs of a `ca_file`, or presenting a
    /// client certificate.
    CaFile(Arc<ClientConfig>),
}

/// The `ca_file` / `tls_insecure` pair of keys, read as the `http` probe reads them.
pub(crate) fn trust(
    ca_file: Option<&Path>,
    insecure: bool,
    path: &str,
    issues: &mut Issues,
) -> Option<Trust> {
    match (ca_file, insecure) {
        (Some(_), true) => {
            issues.push(
                format!("{path}.tls_insecure"),
                "set `ca_file` or `tls_insecure`, not both",
            );
            None
        }
        (Some(file), false) => ca_file_client(file, &[], path, issues).map(Trust::CaFile),
        (None, true) => Some(Trust::Insecure),
        (None, false) => Some(Trust::System),
    }
}

impl TlsProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<TlsSpec> {
        let before = issues.len();
        let host = match conn::check_host_port(&self.address) {
            Ok(()) => self.address.rsplit_once(':').map(|(host, _)| host),
            Err(message) => {
                issues.push(format!("{path}.address"), message);
                None
            }
        };
        let server_name = match (&self.sni, host) {
            (Some(sni), _) => server_name(sni).or_else(|| {
                issues.push(
                    format!("{path}.sni"),
                    format!("`{sni}` is not a DNS name or IP address"),
                );
                None
            }),
            (None, Some(host)) => server_name(host).or_else(|| {
                issues.push(
                    format!("{path}.address"),
                    format!("`{host}` is not a valid TLS server name; set `sni`"),
                );
                None
            }),
            (None, None) => None,
        };
        check_expiry_warning(self.cert_expiry_warning, path, issues);
        let trust = match &self.ca_file {
            Some(file) => ca_file_client(file, &[], path, issues).map(Trust::CaFile),
            None => Some(Trust::System),
        };
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        if issues.len() > before {
            return None;
        }
        Some(TlsSpec {
            address: self.address.clone(),
            server_name: server_name?,
            cert_expiry_warning: self.cert_expiry_warning,
            trust: trust?,
            source_address,
        })
    }
}

/// A name for SNI and certificate matching; IPv6 literals may come in brackets.
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).ok()
}

pub(crate) fn check_expiry_warning(warning: Option<Duration>, path: &str, issues: &mut Issues) {
    if warning.is_some_and(|w| w.is_zero()) {
        issues.push(
            format!("{path}.cert_expiry_warning"),
            "must be more than 0s",
        );
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting only the CAs in `file`, with `alpn`; problems go under `path.ca_file`.
pub(crate) fn ca_file_client(
    file: &std::path::Path,
    alpn: &[&[u8]],
    path: &str,
    issues: &mut Issues,
) -> Option<Arc<ClientConfig>> {
    let verifier = ca_verifier(file, path, issues)?;
    client(verifier, alpn)
        .map_err(|e| issues.push(format!("{path}.ca_file"), e.to_string()))
        .ok()
}

/// A verifier trusting only the CAs in `file`; problems go under `path.ca_file`.
fn ca_verifier(
    file: &std::path::Path,
    path: &str,
    issues: &mut Issues,
) -> Option<Arc<dyn ServerCertVerifier>> {
    let key = format!("{path}.ca_file");
    let certs = match CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
    {
        Ok(certs) => certs,
        Err(e) => {
            issues.push(key, format!("cannot read {}: {e}", file.display()));
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        issues.push(key, format!("{} holds no CA certificate", file.display()));
        return None;
    }
    match rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
    {
        Ok(verifier) => Some(verifier),
        Err(e) => {
            issues.push(key, e.to_string());
            None
        }
    }
}

/// A client that presents the certificate chain of `cert_file` and the key of `key_file`
/// (PEM), for peers that insist on mutual TLS (Diameter, RFC 6733 §13). Trust is read as
/// [`conn::trust`] reads it; the result is a client built at config time.
pub(crate) fn client_with_identity(
    ca_file: Option<&std::path::Path>,
    insecure: bool,
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    path: &str,
    issues: &mut Issues,
) -> Option<Trust> {
    let verifier: Option<Arc<dyn ServerCertVerifier>> = match (ca_file, insecure) {
        (Some(_), true) => {
            issues.push(
                format!("{path}.tls_insecure"),
                "set `ca_file` or `tls_insecure`, not both",
            );
            None
        }
        (Some(file), false) => ca_verifier(file, path, issues),
        (None, true) => Some(Arc::new(AcceptAnyCertificate(
            provider().signature_verification_algorithms,
        ))),
        (None, false) => match rustls_platform_verifier::Verifier::new(provider()) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                issues.push(path.to_string(), format!("system CA certificates: {e}"));
                None
            }
        },
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))
        .and_then(|chain| match chain.is_empty() {
            true => Err(format!("{} holds no certificate", cert_file.display())),
            false => Ok(chain),
        })
        .map_err(|e| issues.push(format!("{path}.tls_cert_file"), e))
        .ok();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| {
            issues.push(
                format!("{path}.tls_key_file"),
                format!("cannot read a private key from {}: {e}", key_file.display()),
            )
        })
        .ok();
    let (verifier, chain, key) = (verifier?, chain?, key?);
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.dangerous().with_custom_certificate_verifier(verifier))
        .and_then(|b| b.with_client_auth_cert(chain, key));
    match config {
        Ok(mut config) => {
            config.resumption = rustls::client::Resumption::disabled();
            Some(Trust::CaFile(Arc::new(config)))
        }
        Err(e) => {
            issues.push(format!("{path}.tls_key_file"), e.to_string());
            None
        }
    }
}

/// A client config for probing: no session resumption, so every probe sees a full
/// handshake and the whole chain.
fn client(
    verifier: Arc<dyn ServerCertVerifier>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// ALPN offered by the `http` probe: h2 when the server has it.
pub(crate) const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Client settings shared by every probe, built once: loading the system's CAs is not cheap.
#[derive(Debug, Clone)]
pub struct TlsClients {
    system: Arc<ClientConfig>,
    system_http: Arc<ClientConfig>,
    insecure: Arc<ClientConfig>,
    insecure_http: Arc<ClientConfig>,
}

impl TlsClients {
    pub fn new() -> Result<Self, rustls::Error> {
        let system = Arc::new(rustls_platform_verifier::Verifier::new(provider())?);
        let insecure = Arc::new(AcceptAnyCertificate(
            provider().signature_verification_algorithms,
        ));
        Ok(Self {
            system: client(system.clone(), &[])?,
            system_http: client(system, &HTTP_ALPN)?,
            insecure: client(insecure.clone(), &[])?,
            insecure_http: client(insecure, &HTTP_ALPN)?,
        })
    }

    /// The client for `trust`; `http` picks the one offering HTTP ALPN. Other protocols
    /// offer none: strict servers refuse a client offering only HTTP (Exim answers
    /// `no_application_protocol`). A `ca_file` client got its ALPN when it was built.
    pub(crate) fn config(&self, trust: &Trust, http: bool) -> Arc<ClientConfig> {
        match (trust, http) {
            (Trust::CaFile(config), _) => config.clone(),
            (Trust::System, false) => self.system.clone(),
            (Trust::System, true) => self.system_http.clone(),
            (Trust::Insecure, false) => self.insecure.clone(),
            (Trust::Insecure, true) => self.insecure_http.clone(),
        }
    }
}

/// `tls_insecure`: any chain is accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Runs the handshake before `deadline`; any failure in it is `tls`.
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    stream: TcpStream,
    warning: Option<Duration>,
    deadline: Instant,
) -> Result<(TlsStream<TcpStream>, TlsInfo), Failure> {
    let connect = TlsConnector::from(config).connect(name, stream);
    let stream = match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => {
            return Err(fail(
                Reason::Timeout,
                "TLS handshake not finished before the deadline",
            ));
        }
        Ok(Err(e)) => return Err(fail(Reason::Tls, format!("TLS handshake: {e}"))),
        Ok(Ok(stream)) => stream,
    };
    let info = info(stream.get_ref().1, warning)?;
    Ok((stream, info))
}

/// Whether `expiry` comes within `warning` of `now`. `cert_expiry_warning` is an
/// operator's duration (humantime reads up to 500 billion years): a warning reaching past
/// the last representable time covers every expiry, where `now + warning` would panic.
fn expires_within(expiry: Timestamp, warning: Duration, now: Timestamp) -> bool {
    chrono::Duration::from_std(warning)
        .ok()
        .and_then(|w| now.checked_add_signed(w))
        .is_none_or(|limit| expiry <= limit)
}

fn info(conn: &rustls::ClientConnection, warning: Option<Duration>) -> Result<TlsInfo, Failure> {
    let chain = conn.peer_certificates().unwrap_or_default();
    let mut earliest: Option<i64> = None;
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| fail(Reason::Tls, format!("certificate {i} of the chain: {e}")))?;
        let not_after = cert.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    let earliest_expiry = earliest
        .and_then(|secs| Timestamp::from_timestamp(secs, 0))
        .ok_or_else(|| fail(Reason::Tls, "the peer presented no usable certificate"))?;
    let expiring = warning.is_some_and(|w| expires_within(earliest_expiry, w, Utc::now()));
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "unknown",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    Ok(TlsInfo {
        version,
        cipher,
        earliest_expiry,
        expiring,
    })
}

pub async fn run(clients: &TlsClients, spec: &TlsSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let addr = match conn::resolve(&spec.address, spec.source_address, deadline).await {
        Ok(addr) => addr,
        Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
    };
    phases.dns = Some(start.elapsed());
    let step = Instant::now();
    let stream = match conn::connect(addr, spec.source_address, deadline).await {
        Ok(stream) => stream,
        Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
    };
    phases.connect = Some(step.elapsed());
    let step = Instant::now();
    let config = clients.config(&spec.trust, false);
    let name = spec.server_name.clone();
    let info = match handshake(config, name, stream, spec.cert_expiry_warning, deadline).await {
        Ok((_, info)) => info,
        Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
    };
    phases.tls = Some(step.elapsed());
    let total = start.elapsed();
    phases.total = Some(total);
    let mut result = ProbeResult::success(total, phases);
    result.tls = Some(info);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_expiry_warning_is_a_comparison_not_a_panic() {
        let now: Timestamp = "2026-07-05T14:00:00Z".parse().unwrap();
        let in_ten_days = now + chrono::Duration::days(10);
        let day = Duration::from_secs(86_400);
        assert!(expires_within(in_ten_days, 14 * day, now));
        assert!(!expires_within(in_ten_days, 7 * day, now));
        // Past chrono's last year, and past what a chrono::Duration holds.
        let million_years = Duration::from_secs(1_000_000 * 365 * 86_400);
        assert!(expires_within(in_ten_days, million_years, now));
        assert!(expires_within(in_ten_days, Duration::MAX, now));
    }
}
