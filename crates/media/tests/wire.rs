//! The WebSocket and TCP edges of both routes over real sockets on 127.0.0.1: the close
//! handshake when the peer closes first (RFC 6455 5.5.1), messages beyond the WebSocket
//! layer's limit (close 1009), and a peer that never reads (its call ends as a slow peer while
//! what it sends is still read).

mod common;
mod relay_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    AUTH_TOKEN, PUBLIC_URL, Records, Twilio, config, connect_signed, eventually, sign,
    start_server_with_agents, start_server_with_sink,
};
use futures::{SinkExt, StreamExt};
use relay_common::{Relay, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voxbridge_brain::{
    Agents, BoxFuture, Brain, BrainError, BrainEvent, BrainFactory, BrainIo, BrainResult, CallInfo,
    Command, TurnId,
};
use voxbridge_media::{MediaConfig, RelayEnd, SEND_BUFFER_BYTES};
use voxbridge_session::EndReason;
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

const SECOND: Duration = Duration::from_secs(1);

/// mu-law silence (code 0xFF is +0).
const SILENCE: [u8; 160] = [0xFF; 160];

/// Reads until the bridge's close frame: its code and reason (`None` for an empty close
/// frame). Panics if the socket ends or fails first (a client would report 1006).
async fn close_frame(ws: &mut common::Ws) -> Option<(u16, String)> {
    tokio::time::timeout(2 * SECOND, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket failed before a close frame (1006): {e}"),
                None => panic!("socket ended without a close frame (1006)"),
            }
        }
    })
    .await
    .expect("close frame within 2 s")
}

/// After the close handshake the bridge closes the TCP connection: the stream ends cleanly.
async fn expect_clean_end(ws: &mut common::Ws) {
    let end = tokio::time::timeout(2 * SECOND, ws.next())
        .await
        .expect("connection closed within 2 s");
    assert!(end.is_none(), "expected a clean end, got {end:?}");
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[tokio::test]
async fn media_answers_the_peers_close_with_its_code() {
    let records = Records::default();
    let server = start_server_with_sink(config(), Arc::new(records.clone())).await;
    for (code, reason) in [(CloseCode::Normal, "bye"), (CloseCode::Away, "going away")] {
        let mut twilio = Twilio::new(connect_signed(server.addr).await);
        twilio.begin(&[]).await;
        twilio.media(&SILENCE).await;
        twilio
            .ws
            .send(close(code, reason))
            .await
            .expect("send close");
        let answer = close_frame(&mut twilio.ws).await;
        assert_eq!(
            answer,
            Some((u16::from(code), reason.to_owned())),
            "the peer's close is echoed"
        );
        expect_clean_end(&mut twilio.ws).await;
    }
    eventually(2 * SECOND, "both calls recorded", || {
        records.0.lock().expect("not poisoned").len() == 2
    })
    .await;
    for record in records.0.lock().expect("not poisoned").iter() {
        assert_eq!(record.summary.end_reason, Some(EndReason::SocketClosed));
        assert_eq!(record.summary.bad_messages, 0);
    }
    eventually(2 * SECOND, "connections gone", || {
        server.state.connections() == 0
    })
    .await;
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean stop");
}

#[tokio::test]
async fn relay_answers_the_peers_close_with_its_code() {
    let server = relay_common::start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000041").await;
    twilio
        .ws
        .send(close(CloseCode::Away, "caller hung up"))
        .await
        .expect("send close");
    let answer = close_frame(&mut twilio.ws).await;
    assert_eq!(answer, Some((1001, "caller hung up".to_owned())));
    expect_clean_end(&mut twilio.ws).await;
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::CallerHungUp);
    server.stop().await;
}

/// A `[media]` config whose WebSocket layer refuses messages over 6 KiB (2 KiB + its margin).
fn small_limit(config: MediaConfig) -> MediaConfig {
    MediaConfig {
        max_message_bytes: 2048,
        ..config
    }
}

/// Over `max_message_bytes` (2 KiB) but within the WebSocket layer's margin.
fn oversize() -> Message {
    Message::text(format!(
        r#"{{"event":"media","pad":"{}"}}"#,
        "x".repeat(3000)
    ))
}

/// Beyond the WebSocket layer's limit (2 KiB + 4 KiB).
fn too_big() -> Message {
    Message::text("x".repeat(20_000))
}

#[tokio::test]
async fn media_message_beyond_the_limit_is_a_bad_message_closed_with_1009() {
    let records = Records::default();
    let server = start_server_with_sink(small_limit(config()), Arc::new(records.clone())).await;
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio.begin(&[]).await;
    twilio.media(&SILENCE).await;
    // Over max_message_bytes: a bad message; one alone does not end the call.
    twilio.ws.send(oversize()).await.expect("send oversize");
    twilio.media(&SILENCE).await;
    assert!(twilio.still_open(Duration::from_millis(200)).await);
    // Beyond what the WebSocket layer reads: the socket cannot go on.
    twilio.ws.send(too_big()).await.expect("send too big");
    let answer = close_frame(&mut twilio.ws).await;
    assert_eq!(answer.map(|(code, _)| code), Some(1009), "message too big");

    eventually(2 * SECOND, "call recorded", || {
        !records.0.lock().expect("not poisoned").is_empty()
    })
    .await;
    let summary = records.0.lock().expect("not poisoned")[0].summary.clone();
    assert_eq!(summary.end_reason, Some(EndReason::MessageTooBig));
    assert_eq!(
        summary.end_reason.as_ref().map(EndReason::label),
        Some("message-too-big"),
        "the stored end says why"
    );
    assert_eq!(summary.bad_messages, 2, "{summary:?}");
    assert_eq!(summary.frames_in, 2);
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean stop");
}

#[tokio::test]
async fn relay_message_beyond_the_limit_is_a_bad_message_closed_with_1009() {
    let server = start_with(
        Arc::new(relay_common::screenings()),
        small_limit(relay_common::config()),
    )
    .await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000042").await;
    twilio.ws.send(oversize()).await.expect("send oversize");
    assert!(twilio.say("yes").await.contains("at least 18"));
    twilio.ws.send(too_big()).await.expect("send too big");
    let answer = close_frame(&mut twilio.ws).await;
    assert_eq!(answer.map(|(code, _)| code), Some(1009), "message too big");
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::MessageTooBig);
    assert_eq!(record.end.label(), "message-too-big");
    assert_eq!(record.bad_messages, 2);
    server.stop().await;
}

/// An agent that talks without pause for a minute (as fast as the driver takes its audio).
struct Talker;

impl BrainFactory for Talker {
    fn name(&self) -> &'static str {
        "talker"
    }

    fn start(&self, _call: &CallInfo) -> Result<Box<dyn Brain>, BrainError> {
        Ok(Box::new(Talker))
    }
}

impl Brain for Talker {
    fn run(self: Box<Self>, mut io: BrainIo) -> BoxFuture<BrainResult> {
        Box::pin(async move {
            while let Some(event) = io.events.recv().await {
                if matches!(event, BrainEvent::CallStarted(_)) {
                    break;
                }
            }
            let turn = TurnId(1);
            for _ in 0..600 {
                let audio = Command::Audio {
                    turn,
                    pcm: vec![4000; 800],
                    sample_rate: 8000,
                };
                tokio::select! {
                    sent = io.commands.send(audio) => if sent.is_err() {
                        break;
                    },
                    () = io.cancel.cancelled() => break,
                }
            }
            io.cancel.cancelled().await;
            Ok(None)
        })
    }
}

/// A client WebSocket text frame (RFC 6455 5.2: FIN, opcode 1, masked).
fn client_text_frame(text: &str) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    if let Ok(len @ 0..=125) = u8::try_from(payload.len()) {
        frame.push(0x80 | len);
    } else {
        // Length 126: the real length follows in 16 bits.
        let len = u16::try_from(payload.len()).expect("test frames are under 64 KiB");
        frame.push(0x80 | 0x7e);
        frame.extend(len.to_be_bytes());
    }
    frame.extend(MASK);
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Opens `path` with a hand-written upgrade and reads exactly the response head, so that
/// nothing the bridge sends later is ever read.
async fn upgrade_by_hand(tcp: &mut TcpStream, addr: SocketAddr, path: &str) {
    let signature = sign(&format!("{PUBLIC_URL}{path}"), AUTH_TOKEN);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Twilio-Signature: {signature}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("send upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("response head"));
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

#[tokio::test]
async fn media_peer_that_never_reads_ends_as_slow_peer_and_is_read_until_then() {
    let send_timeout = SECOND;
    let records = Records::default();
    let server = start_server_with_agents(
        MediaConfig {
            send_timeout,
            send_queue_frames: 8,
            ..config()
        },
        Agents::builtin().with(Talker),
        Arc::new(records.clone()),
    )
    .await;

    // Twilio's side by hand: a small receive window, the upgrade, then writes only.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let receive_buffer = u64::from(socket.recv_buffer_size().expect("SO_RCVBUF readable"));
    let mut tcp = socket.connect(server.addr).await.expect("connect");
    upgrade_by_hand(&mut tcp, server.addr, "/media").await;
    let began = Instant::now();
    let (_never_read, mut writer) = tcp.into_split();

    let media_sent = Arc::new(AtomicU64::new(0));
    let sent = media_sent.clone();
    let caller = tokio::spawn(async move {
        let mut twilio =
            TwilioEncoder::new(StreamSid::new(format!("MZ{:032x}", 41)).expect("valid stream SID"));
        let account = AccountSid::new(format!("AC{:032x}", 7)).expect("valid account SID");
        let call = CallSid::new(format!("CA{:032x}", 41)).expect("valid call SID");
        let params = BTreeMap::from([("agent".to_owned(), "talker".to_owned())]);
        let mut messages = vec![
            client_text_frame(twilio.connected()),
            client_text_frame(twilio.start(account, call, vec![Track::Inbound], params)),
        ];
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for chunk in 1_u64.. {
            for message in messages.drain(..) {
                if writer.write_all(&message).await.is_err() {
                    return; // the bridge closed the connection
                }
            }
            if chunk > 1 {
                sent.fetch_add(1, Ordering::SeqCst);
            }
            pace.tick().await;
            let frame = twilio.media(Track::Inbound, chunk, (chunk - 1) * 20, &SILENCE);
            messages.push(client_text_frame(frame));
        }
    });

    // What the talker's frames (50 a second, each over 250 bytes) take to fill before the
    // bridge's writes block: its bounded send buffer and our receive window.
    let absorbed = 2 * SEND_BUFFER_BYTES as u64 + receive_buffer;
    let fill = Duration::from_millis(absorbed * 1000 / (50 * 250));
    let bound = fill + send_timeout + 2 * SECOND;
    eventually(bound, "the call ends", || {
        !records.0.lock().expect("not poisoned").is_empty()
    })
    .await;
    let took = began.elapsed();
    let sent_by_then = media_sent.load(Ordering::SeqCst);
    let summary = records.0.lock().expect("not poisoned")[0].summary.clone();
    assert_eq!(summary.end_reason, Some(EndReason::SlowPeer), "{summary:?}");
    assert!(took >= send_timeout, "ended after {took:?}");
    assert!(summary.frames_out > 0, "the talker was heard from");
    // Every frame the caller sent was read until the end (a driver that stopped reading
    // while its output was blocked would miss at least a send timeout's worth: 50 frames).
    assert!(
        summary.frames_in + 10 >= sent_by_then,
        "read {} of {sent_by_then} media frames",
        summary.frames_in
    );
    assert_eq!(summary.bad_messages, 0);
    caller.abort();
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean stop");
}
