//! The relay driver's writer task: frames queued by the driver are written by a task of their
//! own, batching whatever is queued into one flush; each write has `send_timeout`. (The media
//! driver writes from its own task instead: [`crate::outbox`].)

use std::fmt;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

/// Why writing to the socket stopped (the relay's writer task, the media driver's outbox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// A write did not complete within `send_timeout`: the peer is not reading.
    #[error("write to Twilio timed out after {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("socket write failed: {0}")]
    Socket(String),
}

/// Writes queued frames, batching whatever is queued into one flush. Ends after a close frame
/// or when the queue closes.
pub(crate) async fn write_frames<W>(
    mut sink: W,
    mut queue: mpsc::Receiver<Message>,
    send_timeout: Duration,
) -> Result<(), WriteError>
where
    W: Sink<Message> + Unpin,
    W::Error: fmt::Display,
{
    while let Some(first) = queue.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        let batch = async {
            sink.feed(first).await?;
            while !closing {
                let Ok(next) = queue.try_recv() else { break };
                closing = matches!(next, Message::Close(_));
                sink.feed(next).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(send_timeout, batch).await {
            Err(_) => return Err(WriteError::Timeout(send_timeout)),
            Ok(Err(e)) => return Err(WriteError::Socket(e.to_string())),
            Ok(Ok(())) => {}
        }
        if closing {
            break;
        }
    }
    // Best effort: the close frame (if any) is already flushed.
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
    Ok(())
}

/// Queues the close frame, closes the queue (so the writer ends even if the frame did not
/// fit) and waits up to `send_timeout` for the writer. Whether the close frame went out.
pub(crate) async fn close_writer(
    out: mpsc::Sender<Message>,
    mut writer: JoinHandle<Result<(), WriteError>>,
    (code, reason): (u16, &'static str),
    send_timeout: Duration,
) -> bool {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if out.try_send(frame).is_err() {
        debug!("send queue full at close; dropping the close frame");
    }
    drop(out);
    match tokio::time::timeout(send_timeout, &mut writer).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => {
            debug!(error = %e, "writer failed while closing");
            false
        }
        Ok(Err(e)) => {
            error!(error = %e, "writer task failed");
            false
        }
        Err(_) => {
            warn!("close did not flush within the send timeout");
            writer.abort();
            false
        }
    }
}
