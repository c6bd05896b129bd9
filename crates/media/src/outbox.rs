//! The media driver's outbound side, written from the driver's own task.
//!
//! A call sends up to 50 frames a second. Handing each to a writer task would cost a channel
//! hop and a second task wake-up per frame. Instead the driver queues frames here and writes
//! them at once from its own task ([`Outbox::poll_write`]): a socket that takes the frame (the
//! usual case) costs one write call and nothing else. A socket that does not take it registers
//! the driver's waker, the frames wait here, and the driver keeps polling `poll_write` until
//! they are written, or until the socket has taken nothing for `send_timeout`
//! ([`Outbox::stall_deadline`]): then the peer is not reading and the call ends. A peer that
//! reads, however slowly, restarts that clock with every frame it takes. Memory stays bounded
//! by `capacity` frames: the driver stops taking output from the session while the queue is
//! full (and keeps reading input; [`Outbox::poll_room`] tells it when to take output again).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ws::Message;
use futures::{Sink, SinkExt};
use tokio::time::Instant;

/// Control messages (operator hang-up, drain) queued per call, for both drivers.
pub(crate) const CONTROL_QUEUE: usize = 4;
/// After our close frame, how long both drivers wait for the peer's close reply.
pub(crate) const CLOSE_HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// Why writing to the socket stopped (the media and relay drivers' outbox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// A write did not complete within `send_timeout`: the peer is not reading.
    #[error("write to Twilio timed out after {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("socket write failed: {0}")]
    Socket(String),
}

pub(crate) struct Outbox<W> {
    sink: W,
    queue: VecDeque<Message>,
    /// Frames were handed to the sink since its last completed flush.
    unflushed: bool,
    /// Frames are held up: since when the sink has taken nothing (`None` while it keeps up).
    stalled_since: Option<Instant>,
    /// The sink failed: nothing more is written.
    failed: bool,
    capacity: usize,
    send_timeout: Duration,
}

impl<W> Outbox<W>
where
    W: Sink<Message> + Unpin,
    W::Error: fmt::Display,
{
    pub(crate) fn new(sink: W, capacity: usize, send_timeout: Duration) -> Self {
        Self {
            sink,
            queue: VecDeque::with_capacity(capacity.min(8)),
            unflushed: false,
            stalled_since: None,
            failed: false,
            capacity: capacity.max(1),
            send_timeout,
        }
    }

    /// Queues a frame (dropped once the sink has failed). Call [`Outbox::poll_write`] after.
    pub(crate) fn push(&mut self, message: Message) {
        if !self.failed {
            self.queue.push_back(message);
        }
    }

    /// `capacity` frames are waiting: take no more output until [`Outbox::poll_room`] says
    /// there is room.
    pub(crate) fn is_full(&self) -> bool {
        self.queue.len() >= self.capacity
    }

    /// The sink failed; nothing more will be written.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed
    }

    /// When the sink will have taken nothing for `send_timeout` (`None` while it keeps up).
    /// While this is `Some`, the driver must keep polling [`Outbox::poll_write`].
    pub(crate) fn stall_deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|since| since + self.send_timeout)
    }

    /// Hands every queued frame to the sink and flushes it. `Ready(Ok)` when all is written
    /// (or nothing was queued), `Pending` while the sink holds frames up (the task is woken
    /// when it can take more), `Ready(Err)` once when the sink fails.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        if self.failed {
            return Poll::Ready(Ok(()));
        }
        let mut progress = false;
        match self.poll_write_inner(cx, &mut progress) {
            Poll::Ready(Ok(())) => {
                self.stalled_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.failed = true;
                self.queue.clear();
                self.stalled_since = None;
                Poll::Ready(Err(WriteError::Socket(e.to_string())))
            }
            Poll::Pending => {
                if progress || self.stalled_since.is_none() {
                    self.stalled_since = Some(Instant::now());
                }
                Poll::Pending
            }
        }
    }

    fn poll_write_inner(
        &mut self,
        cx: &mut Context<'_>,
        progress: &mut bool,
    ) -> Poll<Result<(), W::Error>> {
        while !self.queue.is_empty() {
            ready!(self.sink.poll_ready_unpin(cx))?;
            if let Some(message) = self.queue.pop_front() {
                self.sink.start_send_unpin(message)?;
                self.unflushed = true;
                *progress = true;
            }
        }
        if self.unflushed {
            ready!(self.sink.poll_flush_unpin(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Like [`Outbox::poll_write`], but also `Ready(Ok)` as soon as the queue has room again.
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        match self.poll_write(cx) {
            Poll::Pending if !self.is_full() => Poll::Ready(Ok(())),
            other => other,
        }
    }

    /// Keeps writing until everything is out, or fails with [`WriteError::Timeout`] once the
    /// sink has taken nothing for `send_timeout`.
    pub(crate) async fn write_by_deadline(&mut self) -> Result<(), WriteError> {
        let send_timeout = self.send_timeout;
        let deadline = tokio::time::sleep(send_timeout);
        tokio::pin!(deadline);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = self.poll_write(cx) {
                return Poll::Ready(result);
            }
            // Each frame the sink takes moves the deadline.
            if let Some(at) = self.stall_deadline()
                && deadline.deadline() != at
            {
                deadline.as_mut().reset(at);
            }
            deadline
                .as_mut()
                .poll(cx)
                .map(|()| Err(WriteError::Timeout(send_timeout)))
        })
        .await
    }

    /// Closes the sink after the last frame (best effort: an error only means it is closed).
    pub(crate) async fn close(&mut self) {
        if !self.failed {
            let _ = self.sink.close().await;
        }
    }

    /// Drops the frames still queued and closes the sink: after the peer's close frame the
    /// WebSocket layer takes no more frames, and closing flushes its reply (RFC 6455 5.5.1).
    pub(crate) async fn close_unsent(&mut self) {
        self.queue.clear();
        self.stalled_since = None;
        self.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use futures::task::noop_waker_ref;

    use super::*;

    /// A sink that takes `room` frames and then holds the rest up until given more room.
    #[derive(Clone, Default)]
    struct Gate {
        inner: Arc<Mutex<GateState>>,
    }

    #[derive(Default)]
    struct GateState {
        room: usize,
        taken: Vec<String>,
        flushes: usize,
        fail: bool,
    }

    impl Sink<Message> for Gate {
        type Error = String;

        fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            let state = self.inner.lock().expect("not poisoned");
            if state.fail {
                Poll::Ready(Err("connection reset".into()))
            } else if state.room > 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), String> {
            let mut state = self.inner.lock().expect("not poisoned");
            state.room -= 1;
            if let Message::Text(text) = item {
                state.taken.push(text.to_string());
            }
            Ok(())
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            self.inner.lock().expect("not poisoned").flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
    }

    fn text(s: &str) -> Message {
        Message::Text(s.to_owned().into())
    }

    fn cx() -> Context<'static> {
        Context::from_waker(noop_waker_ref())
    }

    #[tokio::test(start_paused = true)]
    async fn writes_at_once_when_the_sink_takes_it_and_flushes_once_per_batch() {
        let gate = Gate::default();
        gate.inner.lock().expect("not poisoned").room = 10;
        let mut outbox = Outbox::new(gate.clone(), 4, Duration::from_secs(2));
        outbox.push(text("a"));
        outbox.push(text("b"));
        assert_eq!(outbox.poll_write(&mut cx()), Poll::Ready(Ok(())));
        assert_eq!(outbox.stall_deadline(), None);
        let state = gate.inner.lock().expect("not poisoned");
        assert_eq!(state.taken, ["a", "b"]);
        assert_eq!(state.flushes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_sink_keeps_the_frames_and_the_deadline_runs_from_the_last_frame_taken() {
        let gate = Gate::default();
        gate.inner.lock().expect("not poisoned").room = 1;
        let mut outbox = Outbox::new(gate.clone(), 3, Duration::from_secs(2));
        let began = Instant::now();
        outbox.push(text("a"));
        outbox.push(text("b"));
        assert!(outbox.poll_write(&mut cx()).is_pending());
        assert_eq!(
            outbox.stall_deadline(),
            Some(began + Duration::from_secs(2))
        );

        // Still stuck later: the deadline stays where the stall began.
        tokio::time::advance(Duration::from_millis(500)).await;
        outbox.push(text("c"));
        assert!(outbox.poll_write(&mut cx()).is_pending());
        assert_eq!(
            outbox.stall_deadline(),
            Some(began + Duration::from_secs(2))
        );
        // The peer takes one frame: it is reading, so the clock starts again.
        gate.inner.lock().expect("not poisoned").room = 1;
        assert!(outbox.poll_write(&mut cx()).is_pending());
        assert_eq!(
            outbox.stall_deadline(),
            Some(began + Duration::from_millis(2500))
        );
        // One waiting of three: room for two more, then full.
        assert!(outbox.poll_room(&mut cx()).is_ready());
        outbox.push(text("d"));
        outbox.push(text("e"));
        assert!(outbox.is_full());
        assert!(outbox.poll_room(&mut cx()).is_pending());

        // The peer reads again: everything goes out in order and the stall is over.
        gate.inner.lock().expect("not poisoned").room = 10;
        assert_eq!(outbox.poll_write(&mut cx()), Poll::Ready(Ok(())));
        assert_eq!(outbox.stall_deadline(), None);
        assert!(!outbox.is_full());
        assert_eq!(
            gate.inner.lock().expect("not poisoned").taken,
            ["a", "b", "c", "d", "e"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_sink_reports_once_and_takes_nothing_more() {
        let gate = Gate::default();
        gate.inner.lock().expect("not poisoned").fail = true;
        let mut outbox = Outbox::new(gate.clone(), 3, Duration::from_secs(2));
        outbox.push(text("a"));
        assert_eq!(
            outbox.poll_write(&mut cx()),
            Poll::Ready(Err(WriteError::Socket("connection reset".into())))
        );
        assert!(outbox.has_failed());
        assert_eq!(outbox.stall_deadline(), None);
        outbox.push(text("b"));
        assert_eq!(outbox.poll_write(&mut cx()), Poll::Ready(Ok(())));
        assert!(gate.inner.lock().expect("not poisoned").taken.is_empty());
    }
}
