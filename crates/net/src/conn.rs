//! One HTTP/1 connection: hyper's connection driver (with upgrades), watched by a timer that
//! closes it when its header block or the next request is late, with request bodies under a
//! deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use crate::ListenerConfig;
use crate::admission::Permit;
use crate::metrics::{ListenerMetrics, Timeout};

/// Where a connection is between requests, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a header block: since the connection opened, or since the
    /// first byte after an idle spell.
    Head,
    /// A request is being handled or its response written: no listener timer (the body has
    /// its own deadline).
    Busy,
    /// Between requests, no byte of the next one yet.
    Idle,
    /// Upgraded or closed: no longer watched.
    Detached,
}

/// A connection's phase, shared by its socket (reads), its service (requests) and its timer.
#[derive(Debug)]
struct Activity {
    phase: watch::Sender<(Phase, Instant)>,
    /// `Phase::Idle`, readable without the watch lock: the socket checks it on every read.
    idle: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: watch::Sender::new((Phase::Head, Instant::now())),
            idle: AtomicBool::new(false),
        })
    }

    fn set(&self, phase: Phase) {
        self.phase.send_replace((phase, Instant::now()));
    }

    /// Bytes arrived: after an idle spell they start the next header block.
    fn on_read(&self) {
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            self.set(Phase::Head);
        }
    }

    fn request_started(&self) {
        self.idle.store(false, Ordering::Release);
        self.set(Phase::Busy);
    }

    fn response_done(&self) {
        self.set(Phase::Idle);
        self.idle.store(true, Ordering::Release);
    }

    fn detach(&self) {
        self.idle.store(false, Ordering::Release);
        self.set(Phase::Detached);
    }

    /// Resolves with the timeout that expired: the header block or the next request was late.
    async fn expired(&self, config: &ListenerConfig) -> Timeout {
        let mut phase = self.phase.subscribe();
        loop {
            let (now, since) = *phase.borrow_and_update();
            let limit = match now {
                Phase::Head => Some((config.header_read_timeout, Timeout::Header)),
                Phase::Idle => Some((config.keep_alive_timeout, Timeout::Idle)),
                Phase::Busy | Phase::Detached => None,
            };
            match limit {
                Some((limit, which)) => {
                    tokio::select! {
                        changed = phase.changed() => {
                            if changed.is_err() {
                                return which;
                            }
                        }
                        () = tokio::time::sleep_until(since + limit) => return which,
                    }
                }
                None => {
                    if phase.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// The accepted socket: marks reads in [`Activity`] and holds the connection's [`Permit`] for
/// as long as the socket lives (an upgraded WebSocket takes it along).
#[derive(Debug)]
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: Permit,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The request body did not arrive within `body_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the body timeout")]
struct BodyTimeout;

/// A request body under a deadline counted from its header block.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first poll that has to wait (most requests have no body to wait for).
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle once hyper has written (and dropped) it.
struct DoneBody {
    inner: axum::body::Body,
    activity: Arc<Activity>,
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        self.activity.response_done();
    }
}

impl Body for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What every connection of one listener shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: ListenerConfig,
    pub(crate) metrics: Arc<ListenerMetrics>,
}

/// Serves one accepted connection until it closes, upgrades, times out, or `abort` fires;
/// `graceful` lets its request in flight finish, then closes it.
pub(crate) async fn run(
    stream: TcpStream,
    permit: Permit,
    shared: Arc<Shared>,
    graceful: CancellationToken,
    abort: CancellationToken,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        stream,
        activity: Arc::clone(&activity),
        _permit: permit,
    });
    let service = {
        let activity = Arc::clone(&activity);
        let shared = Arc::clone(&shared);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(request, Arc::clone(&shared), Arc::clone(&activity))
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header and idle timers are ours (hyper's header timer also runs between requests).
    builder.keep_alive(true).header_read_timeout(None);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let expired = activity.expired(&shared.config);
    tokio::pin!(expired);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            which = &mut expired => {
                debug!(?which, "closing a connection: listener timeout");
                shared.metrics.on_timeout(which);
                break;
            }
            () = graceful.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = abort.cancelled() => break,
        }
    }
    activity.detach();
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) -> Result<Response<DoneBody>, Infallible> {
    activity.request_started();
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + shared.config.body_timeout;
    let request = request.map(|inner| {
        axum::body::Body::new(DeadlineBody {
            inner,
            deadline,
            sleep: None,
            timed_out: Arc::clone(&timed_out),
        })
    });
    let Ok(mut response) = shared.router.clone().oneshot(request).await;
    if timed_out.load(Ordering::Acquire) {
        shared.metrics.on_timeout(Timeout::Body);
        debug!("request body timed out: 408, closing the connection");
        *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response.map(|inner| DoneBody { inner, activity }))
}
