//! What the drivers need from the connection beneath the WebSocket: the settings each accepted
//! TCP connection gets ([`tune_call_socket`]), and which read errors mean something other than
//! "the socket is gone" ([`ReadError`]).

use std::convert::Infallible;
use std::error::Error as _;
use std::fmt;

use axum::extract::ws::Message;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tracing::{debug, warn};

/// The kernel send buffer (`SO_SNDBUF`) of each accepted connection, in bytes (Linux doubles
/// it for its own bookkeeping: `getsockopt` reports 32 KiB).
///
/// Left alone, Linux grows a connection's send buffer up to `net.ipv4.tcp_wmem`'s maximum
/// (4 MiB by default; on loopback it starts in the megabytes). A peer that stops reading then
/// has minutes of 20 ms media frames (~15 KB/s) absorbed by the kernel before the driver's
/// write blocks, and `send_timeout` only starts counting after that. A fixed size turns autotuning
/// off: 32 KiB is about 2 s of media frames, while a call needs far less in flight (its
/// bandwidth-delay product at 300 ms RTT is ~5 KB, and the session keeps only
/// `playout_lead_ms` of audio ahead).
pub const SEND_BUFFER_BYTES: usize = 16 * 1024;

/// Applies the per-connection settings to an accepted stream, before anything is read: no Nagle
/// delay (`TCP_NODELAY`) and a bounded send buffer ([`SEND_BUFFER_BYTES`]). Failures are
/// logged; the connection works without them.
pub fn tune_call_socket(stream: &TcpStream) {
    // Media is 20 ms frames on a paced schedule: Nagle's algorithm would hold a frame until
    // the previous one is acknowledged (up to a delayed-ACK timeout), a gap the caller hears.
    if let Err(e) = stream.set_nodelay(true) {
        warn!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
    if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(SEND_BUFFER_BYTES) {
        warn!(error = %e, "cannot bound the send buffer (SO_SNDBUF) of a connection");
    }
}

/// A failed read from a call's socket, as the drivers tell its kinds apart: any error ends
/// the call, but a message beyond the WebSocket layer's hard limit ends it as a bad message
/// with close 1009 rather than as a hang-up.
pub trait ReadError: fmt::Display {
    /// The peer sent a message beyond the WebSocket layer's limit: its length in bytes (as
    /// its frame header declared it). `None` for every other error.
    fn message_too_big(&self) -> Option<usize>;
}

/// How a call's socket stopped giving messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketEnd {
    /// The peer sent its close frame: answer it (RFC 6455 5.5.1), send nothing else.
    PeerClosed,
    /// The peer sent a message of this many bytes, beyond the WebSocket layer's limit: the
    /// socket cannot go on (close 1009).
    TooBig(usize),
    /// The socket failed, or ended without a close frame.
    Gone,
}

/// One read from a call's socket, for both drivers: a message (data, ping or pong), or how the
/// socket ended (logged here, in the call's span).
pub(crate) fn message_or_end<E: ReadError>(
    read: Option<Result<Message, E>>,
) -> Result<Message, SocketEnd> {
    match read {
        Some(Ok(Message::Close(frame))) => {
            debug!(?frame, "peer closed the socket");
            Err(SocketEnd::PeerClosed)
        }
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => {
            if let Some(len) = e.message_too_big() {
                warn!(len, "message beyond the WebSocket limit; closing with 1009");
                Err(SocketEnd::TooBig(len))
            } else {
                warn!(error = %e, "socket read failed");
                Err(SocketEnd::Gone)
            }
        }
        None => {
            debug!("socket ended");
            Err(SocketEnd::Gone)
        }
    }
}

/// The errors of axum's `WebSocket`, which wrap those of the tungstenite it is built on (the
/// workspace's `tokio-tungstenite` follows axum's, see the root `Cargo.toml`).
impl ReadError for axum::Error {
    fn message_too_big(&self) -> Option<usize> {
        // tungstenite checks a frame's declared length against `max_frame_size` before reading
        // its payload, and a fragmented message's against `max_message_size`.
        match self.source()?.downcast_ref::<tungstenite::Error>()? {
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size,
                ..
            }) => Some(*size),
            _ => None,
        }
    }
}

/// For in-memory streams that cannot fail.
impl ReadError for Infallible {
    fn message_too_big(&self) -> Option<usize> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::error::{CapacityError, ProtocolError};

    use super::*;

    #[test]
    fn only_a_capacity_error_is_a_message_too_big() {
        let too_long = axum::Error::new(tungstenite::Error::Capacity(
            CapacityError::MessageTooLong {
                size: 1 << 20,
                max_size: 69_632,
            },
        ));
        assert_eq!(too_long.message_too_big(), Some(1 << 20));
        let reset = axum::Error::new(tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake,
        ));
        assert_eq!(reset.message_too_big(), None);
        let io = axum::Error::new(std::io::Error::other("connection reset"));
        assert_eq!(io.message_too_big(), None);
    }

    #[tokio::test]
    async fn accepted_connections_get_a_bounded_send_buffer_and_no_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("bound address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        tune_call_socket(&accepted);
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"));
        let send_buffer = socket2::SockRef::from(&accepted)
            .send_buffer_size()
            .expect("SO_SNDBUF readable");
        // Linux reports twice what was set; other systems what was set.
        assert!(
            (SEND_BUFFER_BYTES..=2 * SEND_BUFFER_BYTES).contains(&send_buffer),
            "SO_SNDBUF is {send_buffer}"
        );
    }
}
