//! Gzip of large bodies on the blocking pool.
//!
//! `/metrics` at 100 000 targets is over 100 MB of text and the status page of 2 000
//! services 20 MB: gzip at the default level costs seconds of CPU for the first, and run by
//! the router's `CompressionLayer` it runs on the runtime threads that also start the
//! probes, whose schedule slips while it does. A body of known size above
//! [`OFF_RUNTIME_BYTES`] is compressed here instead, on the blocking pool and at the fastest
//! level (about three times the speed of the default for a third more bytes); the layer
//! leaves a response that already has a `Content-Encoding` alone and still compresses the
//! small ones.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::sync::mpsc;

/// Bodies from this size up are gzipped off the runtime threads.
pub(crate) const OFF_RUNTIME_BYTES: u64 = 256 * 1024;

/// The middleware: gzips a large response when the request accepts gzip.
pub(crate) async fn gzip_large_bodies(request: Request, next: Next) -> Response {
    let accepts = accepts_gzip(request.headers());
    let response = next.run(request).await;
    let large = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n >= OFF_RUNTIME_BYTES);
    if !accepts || !large || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The size is exact: the body is already in memory, collecting it only joins its parts.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let gzipped = tokio::task::spawn_blocking(move || {
        let mut encoder = encoder();
        encoder
            .write_all(&bytes)
            .and_then(|()| encoder.finish())
            .map_err(|_| bytes)
    })
    .await;
    match gzipped {
        Ok(Ok(gzipped)) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            mark_gzipped(&mut parts.headers);
            Response::from_parts(parts, Body::from(gzipped))
        }
        // Writing into a Vec does not fail; the plain body goes out if it ever did.
        Ok(Err(bytes)) => Response::from_parts(parts, Body::from(bytes)),
        // The runtime is shutting down.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Gzip at the fastest level: about three times the default's speed for a third more bytes.
fn encoder() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())
}

fn mark_gzipped(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
}

/// A `content_type` response written by `write` on the blocking pool, piece by piece,
/// gzipped when `request` accepts it: the text is never whole in memory, and a client
/// reading slowly holds back the writer (a few pieces are queued), not the runtime. A
/// client that goes away stops what is sent, not what is written.
pub(crate) fn streamed<W>(request: &HeaderMap, content_type: &'static str, write: W) -> Response
where
    W: FnOnce(&mut dyn FnMut(&str)) + Send + 'static,
{
    let gzip = accepts_gzip(request);
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_PIECES);
    tokio::task::spawn_blocking(move || {
        let send = |bytes: Vec<u8>| {
            if !bytes.is_empty() {
                let _ = tx.blocking_send(Bytes::from(bytes));
            }
        };
        match gzip {
            true => {
                let mut encoder = encoder();
                write(&mut |piece| {
                    // Writing into a Vec does not fail.
                    let _ = encoder.write_all(piece.as_bytes());
                    send(std::mem::take(encoder.get_mut()));
                });
                send(encoder.finish().unwrap_or_default());
            }
            false => write(&mut |piece| send(piece.as_bytes().to_vec())),
        }
    });
    let mut response = Response::new(Body::new(Pieces(rx)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if gzip {
        mark_gzipped(headers);
    }
    response
}

/// Pieces written ahead of what the client has read.
const QUEUED_PIECES: usize = 4;

/// The body of [`streamed`]: the pieces as they come, until the writer is done.
struct Pieces(mpsc::Receiver<Bytes>);

impl axum::body::HttpBody for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut fields = item.split(';');
            let coding = fields.next().unwrap_or_default().trim();
            let weight = fields
                .filter_map(|f| f.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && weight > 0.0
        })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// The two layers as the router stacks them, over a large and a small body.
    fn app() -> Router {
        let large = "x".repeat(OFF_RUNTIME_BYTES as usize + 1);
        Router::new()
            .route("/large", get(move || async move { large }))
            .route("/small", get(|| async { "y".repeat(1024) }))
            .layer(axum::middleware::from_fn(gzip_large_bodies))
            .layer(tower_http::compression::CompressionLayer::new())
    }

    async fn get_with(path: &str, accept: Option<&str>) -> (HeaderMap, Vec<u8>) {
        let mut request = axum::http::Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (headers, body.to_vec())
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[tokio::test]
    async fn a_large_body_is_gzipped_once_and_reads_back_whole() {
        let (headers, body) = get_with("/large", Some("gzip, br")).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert!(body.len() < 4096, "{} bytes", body.len());
        assert_eq!(gunzip(&body), "x".repeat(OFF_RUNTIME_BYTES as usize + 1));
    }

    #[tokio::test]
    async fn small_bodies_and_clients_without_gzip_are_left_to_the_layer() {
        let (headers, body) = get_with("/small", Some("gzip")).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gunzip(&body), "y".repeat(1024));
        let (headers, body) = get_with("/large", None).await;
        assert!(!headers.contains_key(header::CONTENT_ENCODING));
        assert_eq!(body.len(), OFF_RUNTIME_BYTES as usize + 1);
    }

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        headers
    }

    /// What `streamed` sends, its headers and its body read back whole.
    async fn read_streamed(accept: Option<&str>) -> (HeaderMap, Vec<u8>) {
        let request = accept.map(with).unwrap_or_default();
        let response = streamed(&request, "text/plain", |sink| {
            for i in 0..100_000 {
                sink(&format!("line {i}\n"));
            }
        });
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (headers, body.to_vec())
    }

    #[tokio::test]
    async fn a_streamed_body_is_every_piece_in_order_gzipped_or_not() {
        let expected: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let (headers, plain) = read_streamed(None).await;
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain");
        assert!(!headers.contains_key(header::CONTENT_ENCODING));
        assert_eq!(plain, expected.as_bytes());
        let (headers, gzipped) = read_streamed(Some("gzip")).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert!(
            gzipped.len() < expected.len() / 3,
            "{} bytes",
            gzipped.len()
        );
        assert_eq!(gunzip(&gzipped), expected);
    }

    #[test]
    fn gzip_is_accepted_as_listed_with_a_weight() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("identity, br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
