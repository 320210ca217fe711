//! The HTTP listener: an accept loop and one hyper HTTP/1.1 connection per task, with the
//! limits a listener reachable by hostile clients needs. `axum::serve` has none of them,
//! and a monitor that runs out of descriptors reports its own exhaustion as outages.
//!
//! * at most `max_connections` at once: past that, connections wait in the kernel's listen
//!   backlog (no descriptor spent on them) until one closes;
//! * a connection must send a whole request head within `header_read_timeout` of its first
//!   byte (of accepting it, for its first request): a slowloris holds a slot that long;
//! * a connection without a request for `idle_timeout` is closed, and one that has served
//!   `max_requests_per_connection` is told `Connection: close`;
//! * on shutdown, connections without a request in progress close at once; requests in
//!   progress get `shutdown_timeout`, then their connections are dropped.
//!
//! hyper's own `header_read_timeout` restarts whenever a keep-alive connection goes idle, so
//! it would also be the idle timeout; the two are tracked here instead, from the bytes the
//! connection reads and the requests it hands to the router.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The listener's limits (`[server]`), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_requests_per_connection: u64,
    pub shutdown_timeout: Duration,
}

/// Pause after `accept` fails for want of descriptors or memory: the pending connection
/// stays in the backlog and would wake the loop again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` is cancelled, then closes the listener
/// and the connections as [the module](self) says.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    spec: ListenerSpec,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(spec.max_connections));
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let dropping = CancellationToken::new();
    let mut accept_errors_logged = false;
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                accept_errors_logged = false;
                stream
            }
            Err(e) if is_resource_error(&e) => {
                if !accept_errors_logged {
                    tracing::warn!(error = %e, "cannot accept HTTP connections; retrying");
                    accept_errors_logged = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
            // The client went away before it was accepted (ECONNABORTED and the like).
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        connections.spawn(connection(
            stream,
            router.clone(),
            spec,
            slot,
            Arc::clone(&metrics),
            stopping.clone(),
            dropping.clone(),
        ));
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(spec.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "requests still in progress after server.shutdown_timeout; dropping their connections"
        );
        dropping.cancel();
        connections.wait().await;
    }
}

/// `accept` errors of this host (out of descriptors or memory), as opposed to a client
/// that went away.
fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Drives one connection until it ends, its client is too slow or idle, or shutdown.
async fn connection(
    stream: TcpStream,
    router: Router,
    spec: ListenerSpec,
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    stopping: CancellationToken,
    dropping: CancellationToken,
) {
    metrics.http_connections.inc();
    let _open = Defer(|| metrics.http_connections.dec());
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = Handler {
        router,
        activity: Arc::clone(&activity),
        max_requests: spec.max_requests_per_connection,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // Timed here instead (see the module's documentation).
        .header_read_timeout(None)
        .serve_connection(io, hyper::service::service_fn(move |r| service.call(r)));
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&spec);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stopping.cancelled(), if !draining => {
                // Nothing in progress: nothing to finish. A request in progress gets its
                // answer, then the connection closes.
                if activity.phase() != Phase::Busy {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = dropping.cancelled() => return,
            _ = activity.changed.notified() => {}
            _ = sleep_until(deadline) => {
                if let Some(phase) = activity.expired(&spec) {
                    tracing::debug!(?phase, "closing an HTTP connection: client too slow or idle");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a closure when dropped.
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Where a connection is between requests, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head since `since` (its first byte, or the accept).
    Head { since: Instant },
    /// The router has a request.
    Busy,
    /// No request since `since` (the last answer, or the last bytes of it written).
    Idle { since: Instant },
}

/// A connection's phase, updated by its reads and its requests.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a deadline may have come closer (a request head began, a request ended).
    changed: Notify,
    requests: Mutex<u64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
            requests: Mutex::new(0),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().expect("phase lock")
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().expect("phase lock") = phase;
    }

    fn deadline(&self, spec: &ListenerSpec) -> Option<Instant> {
        match self.phase() {
            Phase::Head { since } => Some(since + spec.header_read_timeout),
            Phase::Idle { since } => Some(since + spec.idle_timeout),
            Phase::Busy => None,
        }
    }

    /// The phase whose timeout has run out, if one has.
    fn expired(&self, spec: &ListenerSpec) -> Option<Phase> {
        let phase = self.phase();
        self.deadline(spec)
            .filter(|d| *d <= Instant::now())
            .map(|_| phase)
    }

    fn read(&self) {
        let mut phase = self.phase.lock().expect("phase lock");
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        let mut phase = self.phase.lock().expect("phase lock");
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Idle {
                since: Instant::now(),
            };
        }
    }

    /// A request arrives; returns how many this connection has had, this one included.
    fn begin(&self) -> u64 {
        self.set(Phase::Busy);
        let mut requests = self.requests.lock().expect("requests lock");
        *requests += 1;
        *requests
    }

    fn end(&self) {
        self.set(Phase::Idle {
            since: Instant::now(),
        });
        self.changed.notify_one();
    }
}

/// The router as a hyper service that tells [`Activity`] about each request.
#[derive(Clone)]
struct Handler {
    router: Router,
    activity: Arc<Activity>,
    max_requests: u64,
}

impl Handler {
    fn call(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
        let last = self.activity.begin() >= self.max_requests;
        let router = self.router.clone();
        let activity = Arc::clone(&self.activity);
        async move {
            // Ended however the request ends, even when hyper drops it unanswered.
            let _end = Defer(|| activity.end());
            let mut response = router.oneshot(request.map(Body::new)).await?;
            if last {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    }
}

/// A stream that reports its reads and writes to its connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bounds for what must happen: generous, so a loaded machine does not fail them.
    const SOON: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_millis(300);

    /// Serves `GET /` (`ok`) and `GET /slow` (never done; tells `entered` it began).
    async fn start(
        spec: ListenerSpec,
    ) -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<()>,
        Arc<Notify>,
    ) {
        let entered = Arc::new(Notify::new());
        let slow = Arc::clone(&entered);
        let router = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(move || async move {
                slow.notify_one();
                std::future::pending::<&str>().await
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            router,
            spec,
            Arc::new(Metrics::new()),
            token.clone(),
        ));
        (addr, token, task, entered)
    }

    fn spec() -> ListenerSpec {
        ListenerSpec {
            max_connections: 1,
            header_read_timeout: TIMEOUT,
            idle_timeout: TIMEOUT,
            max_requests_per_connection: 2,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    /// Reads one response to `GET /` (body `ok`); its head.
    async fn response(stream: &mut TcpStream) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !(seen.ends_with(b"\r\n\r\nok")) {
            let n = tokio::time::timeout(SOON, stream.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(
                n > 0,
                "closed before the answer: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(seen).unwrap().to_lowercase()
    }

    /// Waits for the server to close `stream`; how long it took.
    async fn closed(stream: &mut TcpStream) -> Duration {
        let start = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(SOON, stream.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        start.elapsed()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_heads_and_idle_connections_are_closed_and_keep_alive_is_capped() {
        let (addr, token, task, _) = start(spec()).await;
        // Half a head, then nothing: closed after the header timeout.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
        assert!(closed(&mut slow).await >= TIMEOUT - Duration::from_millis(50));

        // Keep-alive: the second request is the last (`Connection: close`), then EOF.
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(GET).await.unwrap();
        assert!(!response(&mut client).await.contains("connection: close"));
        client.write_all(GET).await.unwrap();
        assert!(response(&mut client).await.contains("connection: close"));
        closed(&mut client).await;

        // Idle after an answer: closed after the idle timeout.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        response(&mut idle).await;
        assert!(closed(&mut idle).await >= TIMEOUT - Duration::from_millis(50));
        token.cancel();
        tokio::time::timeout(SOON, task).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_cap_a_connection_waits_for_a_slot() {
        let (addr, token, task, _) = start(spec()).await;
        let held = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting.write_all(GET).await.unwrap();
        response(&mut waiting).await;
        // Served only once the first (silent) connection lost its slot to the timeout.
        assert!(opened.elapsed() >= TIMEOUT - Duration::from_millis(50));
        drop(held);
        token.cancel();
        tokio::time::timeout(SOON, task).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_closes_idle_connections_at_once_and_waits_for_requests_a_bounded_time() {
        let mut spec = spec();
        spec.max_connections = 4;
        spec.header_read_timeout = Duration::from_secs(60);
        spec.idle_timeout = Duration::from_secs(60);
        spec.shutdown_timeout = Duration::from_secs(3);
        let (addr, token, task, entered) = start(spec).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        response(&mut idle).await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(SOON, entered.notified())
            .await
            .expect("the slow request reaches its handler");

        let start = Instant::now();
        token.cancel();
        assert!(closed(&mut idle).await < spec.shutdown_timeout);
        tokio::time::timeout(SOON, task).await.unwrap().unwrap();
        let took = start.elapsed();
        assert!(took >= spec.shutdown_timeout, "{took:?}");
        closed(&mut busy).await;
    }
}
