//! Opening a WebSocket the way Twilio does: to the `wss://` URL in the TwiML, with an
//! `X-Twilio-Signature` computed over that URL
//! (<https://www.twilio.com/docs/usage/security>). The simulator speaks plain `ws://` to a
//! local server, so the URL it dials may differ from the URL it signs: [`Route`] maps one to
//! the other.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use voxbridge_twilio::RequestValidator;

use crate::stamped::StampedTcp;

/// A client WebSocket over TCP whose reads carry the kernel's receive time
/// ([`StampedTcp::last_arrival`], reached through `get_ref()`).
pub type Socket = WebSocketStream<StampedTcp>;

/// Why a WebSocket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `ws://` or `wss://`.
    #[error("not a WebSocket URL: {0}")]
    BadUrl(String),
    /// The server answered the upgrade with an HTTP status (Twilio error 31920).
    #[error("handshake refused with HTTP {0}")]
    Refused(u16),
    /// TCP or WebSocket failure.
    #[error("cannot connect: {0}")]
    Io(String),
    /// No answer within the timeout (Twilio error 31901).
    #[error("connection timed out")]
    Timeout,
}

/// Where to dial for a URL found in TwiML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Replace the TwiML URL's scheme and authority with this base (e.g.
    /// `ws://127.0.0.1:8080`); `None` dials the URL itself with `wss` downgraded to `ws`.
    pub base: Option<String>,
}

impl Route {
    /// Dials `base` instead of the TwiML URL's host.
    pub fn to(base: impl Into<String>) -> Self {
        Self {
            base: Some(base.into()),
        }
    }

    /// The URL to dial for `twiml_url`.
    pub fn dial_url(&self, twiml_url: &str) -> Result<String, ConnectError> {
        let rest = twiml_url
            .strip_prefix("wss://")
            .or_else(|| twiml_url.strip_prefix("ws://"))
            .ok_or_else(|| ConnectError::BadUrl(twiml_url.to_owned()))?;
        let path = rest.find('/').map_or("/", |i| &rest[i..]);
        Ok(match &self.base {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => format!("ws://{rest}"),
        })
    }
}

/// Opens `twiml_url` (through `route`), signed with `auth_token` when given, with
/// `TCP_NODELAY` set, as a media endpoint should: Nagle's algorithm would hold a 20 ms frame
/// back until the previous one is acknowledged.
pub async fn connect(
    twiml_url: &str,
    route: &Route,
    auth_token: Option<&str>,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    let dial = route.dial_url(twiml_url)?;
    let mut request = dial
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl(format!("{dial}: {e}")))?;
    if let Some(token) = auth_token {
        let signature = RequestValidator::new(token).sign_websocket(twiml_url);
        let value = HeaderValue::from_str(&signature)
            .map_err(|e| ConnectError::Io(format!("signature header: {e}")))?;
        request.headers_mut().insert("X-Twilio-Signature", value);
    }
    let (host, port) = {
        let uri = request.uri();
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::BadUrl(dial.clone()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.scheme_str() == Some("wss") {
            return Err(ConnectError::BadUrl(format!(
                "{dial}: the simulator speaks plain ws:// (route it to the local server)"
            )));
        }
        (host, uri.port_u16().unwrap_or(80))
    };
    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(tungstenite::Error::Io)?;
        tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        tokio_tungstenite::client_async_with_config(
            request,
            StampedTcp::new(tcp),
            Some(socket_config()),
        )
        .await
    };
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            Err(ConnectError::Refused(response.status().as_u16()))
        }
        Ok(Err(e)) => Err(ConnectError::Io(e.to_string())),
    }
}

/// The client socket's settings. Twilio's frames are ~300 bytes: tungstenite's default
/// 128 KiB read buffer is zero-filled before every read, which at 50 reads per second per
/// call was over a quarter of the load generator's CPU, so 1 KiB (as the bridge uses; a
/// larger message just takes more reads).
/// Writes go out at once (no write buffering; [`connect`] also sets `TCP_NODELAY`).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
}

/// Builds text frames from a reused buffer: each frame is split off one growing `BytesMut`,
/// whose storage is reclaimed once earlier frames have been written and dropped, so steady
/// state sends do not allocate.
#[derive(Debug)]
pub struct FrameBuf {
    buf: BytesMut,
}

impl Default for FrameBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuf {
    /// A buffer sized for a few `media` frames.
    pub fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(2048),
        }
    }

    /// A text message holding `text`.
    pub fn text(&mut self, text: &str) -> Message {
        self.buf.reserve(text.len());
        self.buf.extend_from_slice(text.as_bytes());
        let bytes: Bytes = self.buf.split().freeze();
        // `text` is a `&str`, so the bytes are UTF-8 and the conversion cannot fail.
        Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_twiml_urls_to_the_local_server() {
        let url = "wss://voice.example.com/media";
        assert_eq!(
            Route::default().dial_url(url).unwrap(),
            "ws://voice.example.com/media"
        );
        assert_eq!(
            Route::to("ws://127.0.0.1:9/").dial_url(url).unwrap(),
            "ws://127.0.0.1:9/media"
        );
        assert_eq!(
            Route::to("ws://127.0.0.1:9")
                .dial_url("wss://h:443")
                .unwrap(),
            "ws://127.0.0.1:9/"
        );
        assert!(Route::default().dial_url("https://x/y").is_err());
    }

    #[test]
    fn frame_buf_makes_text_frames() {
        let mut frames = FrameBuf::new();
        for i in 0..100 {
            let text = format!("{{\"n\":{i}}}");
            let Message::Text(t) = frames.text(&text) else {
                panic!("text frame");
            };
            assert_eq!(t.as_str(), text);
        }
    }
}
