//! Exposure limits of the bridge over real sockets on 127.0.0.1: `max_calls` refuses further
//! upgrades with 503 while the live call goes on, and idle TCP connections (a scanner, a
//! slowloris) cannot keep a good signed call out.

mod common;
mod relay_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{
    AUTH_TOKEN, PUBLIC_URL, Twilio, config, connect, connect_signed, eventually, sign, start_server,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use voxbridge_media::MediaConfig;
use voxbridge_net::ListenerConfig;

const SECOND: Duration = Duration::from_secs(1);
/// mu-law silence.
const SILENCE: [u8; 160] = [0xFF; 160];

/// The value of the metric line starting with `prefix` in the bridge's `/metrics` text.
fn metric(server: &common::Server, prefix: &str) -> u64 {
    let text = server.state.render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
}

/// A signed upgrade of `/media`: the socket, or the HTTP status it was refused with.
async fn try_call(addr: SocketAddr) -> Result<common::Ws, u16> {
    let signature = sign(&format!("{PUBLIC_URL}/media"), AUTH_TOKEN);
    connect(addr, "/media", Some(&signature)).await
}

/// A good call (the only one live): `start` registers it and media flows without the bridge
/// closing it.
async fn good_call(ws: common::Ws, server: &common::Server) -> Twilio {
    let mut twilio = Twilio::new(ws);
    twilio.begin(&[]).await;
    twilio.media(&SILENCE).await;
    eventually(2 * SECOND, "the call registered", || {
        server.state.registry().count() == 1
    })
    .await;
    assert!(twilio.still_open(Duration::from_millis(200)).await);
    twilio
}

#[tokio::test]
async fn beyond_max_calls_upgrades_get_503_while_the_live_call_goes_on() {
    let server = start_server(MediaConfig {
        max_calls: 1,
        ..config()
    })
    .await;
    let mut live = good_call(connect_signed(server.addr).await, &server).await;
    assert_eq!(try_call(server.addr).await.err(), Some(503), "second call");
    assert_eq!(
        metric(
            &server,
            "voxbridge_upgrades_rejected_total{transport=\"media\",reason=\"max_calls\"} "
        ),
        1
    );
    // The live call is untouched by the refusal.
    live.media(&SILENCE).await;
    assert!(live.still_open(Duration::from_millis(200)).await);
    live.stop().await;
    eventually(2 * SECOND, "the call's place freed", || {
        server.state.connections() == 0
    })
    .await;
    let next = try_call(server.addr).await.expect("a place is free again");
    good_call(next, &server).await;
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean stop");
}

#[tokio::test]
async fn max_calls_counts_relay_and_media_calls_together() {
    let server = relay_common::start_with(
        Arc::new(relay_common::screenings()),
        MediaConfig {
            max_calls: 1,
            // The live session is cut at shutdown rather than waited for.
            drain_timeout: Duration::from_millis(100),
            ..relay_common::config()
        },
    )
    .await;
    let mut live = relay_common::Relay::open(&server).await;
    live.setup("CA10000000000000000000000000000077").await;
    let signature = relay_common::sign("/relay");
    let relay = relay_common::connect_relay(server.addr, Some(&signature)).await;
    assert_eq!(relay.err(), Some(503), "a second relay session");
    assert_eq!(try_call(server.addr).await.err(), Some(503), "a media call");
    // The live session still answers.
    assert!(!live.say("yes").await.is_empty());
    server.stop().await;
}

async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((ip, 0))).expect("bind");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test]
async fn idle_sockets_from_one_address_do_not_keep_a_good_call_out() {
    let server = start_server(MediaConfig {
        listener: ListenerConfig {
            max_connections: 100,
            max_connections_per_ip: 20,
            ..ListenerConfig::default()
        },
        ..config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(connect_from([127, 0, 0, 2], server.addr).await);
    }
    eventually(2 * SECOND, "the extra sockets refused", || {
        metric(
            &server,
            "voxbridge_tcp_connections_refused_total{reason=\"max_connections_per_ip\"} ",
        ) == 130
    })
    .await;
    // The idle sockets are still open (the header timeout is 10 s), yet a caller from another
    // address gets in at once.
    let ws = try_call(server.addr)
        .await
        .expect("the good call is admitted");
    good_call(ws, &server).await;
    drop(idle);
}

#[tokio::test]
async fn idle_sockets_filling_the_cap_are_closed_and_a_good_call_gets_in() {
    let server = start_server(MediaConfig {
        listener: ListenerConfig {
            max_connections: 50,
            header_read_timeout: Duration::from_millis(300),
            ..ListenerConfig::default()
        },
        ..config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    eventually(2 * SECOND, "the cap full of idle sockets", || {
        metric(&server, "voxbridge_tcp_connections_open ") == 50
    })
    .await;
    // Refused while the cap is full, then admitted once the header timeout closed them.
    let deadline = Instant::now() + 5 * SECOND;
    let ws = loop {
        let attempt = tokio::time::timeout(SECOND, try_call_quietly(server.addr)).await;
        if let Ok(Some(ws)) = attempt {
            break ws;
        }
        assert!(
            Instant::now() < deadline,
            "idle sockets kept the good call out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    good_call(ws, &server).await;
    assert!(
        metric(
            &server,
            "voxbridge_tcp_connections_timed_out_total{timeout=\"header\"} "
        ) >= 50
    );
    drop(idle);
}

/// A signed upgrade, `None` when the connection was closed before an answer.
async fn try_call_quietly(addr: SocketAddr) -> Option<common::Ws> {
    let signature = sign(&format!("{PUBLIC_URL}/media"), AUTH_TOKEN);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/media"
        ))
        .expect("valid URL");
    request.headers_mut().insert(
        "X-Twilio-Signature",
        signature.parse().expect("a valid header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .ok()
        .map(|(ws, _)| ws)
}
