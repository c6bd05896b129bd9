//! The guarded listener over real sockets on 127.0.0.1: each limit is observed from the
//! client's side (`axum::serve`, which these replace, holds every one of these sockets open).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voxbridge_net::{ListenerConfig, ListenerMetrics, Refusal, Served, Server, Timeout};

/// Upper bound for anything the server must do "soon" (timeouts under test are ~300 ms).
const SOON: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    metrics: Arc<ListenerMetrics>,
    shutdown: CancellationToken,
    task: JoinHandle<Served>,
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

async fn start(config: ListenerConfig, drain: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = Server::new(config);
    let metrics = Arc::clone(server.metrics());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(listener, app(), shutdown.clone(), drain));
    Running {
        addr,
        metrics,
        shutdown,
        task,
    }
}

fn long() -> ListenerConfig {
    ListenerConfig {
        header_read_timeout: Duration::from_secs(60),
        keep_alive_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        ..ListenerConfig::default()
    }
}

/// Reads until the server closes the socket (or resets it); `None` if it stays open for
/// [`SOON`].
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(SOON, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&all).into_owned())
}

/// One GET on `stream`: the whole response (head and `Content-Length` body).
async fn request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("write request");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(SOON, async {
        loop {
            let n = stream.read(&mut buf).await.expect("read response");
            assert!(n > 0, "closed before the response: {all:?}");
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return;
                }
            }
        }
    })
    .await
    .expect("response in time");
    String::from_utf8_lossy(&all).into_owned()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(SOON, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((ip, 0)))
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test]
async fn beyond_the_global_cap_new_connections_are_closed_at_once() {
    let server = start(
        ListenerConfig {
            max_connections: 2,
            ..long()
        },
        SOON,
    )
    .await;
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    let _second = TcpStream::connect(server.addr).await.expect("connect");
    wait_for("two open connections", || server.metrics.open() == 2).await;
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        read_to_close(&mut third).await.is_some(),
        "a connection beyond max_connections must be closed at once"
    );
    assert_eq!(server.metrics.refused(Refusal::Global), 1);
    // Those within the cap are served; once one closes, its place is free.
    assert!(request(&mut first, "/").await.starts_with("HTTP/1.1 200"));
    drop(first);
    wait_for("a free place", || server.metrics.open() == 1).await;
    let mut fourth = TcpStream::connect(server.addr).await.expect("connect");
    assert!(request(&mut fourth, "/").await.ends_with("ok"));
}

#[tokio::test]
async fn the_per_ip_cap_closes_only_that_addresss_extra_connections() {
    let server = start(
        ListenerConfig {
            max_connections: 10,
            max_connections_per_ip: 2,
            ..long()
        },
        SOON,
    )
    .await;
    let _a1 = connect_from([127, 0, 0, 1], server.addr).await;
    let _a2 = connect_from([127, 0, 0, 1], server.addr).await;
    wait_for("two open connections", || server.metrics.open() == 2).await;
    let mut a3 = connect_from([127, 0, 0, 1], server.addr).await;
    assert!(
        read_to_close(&mut a3).await.is_some(),
        "a third connection from one address must be closed at once"
    );
    assert_eq!(server.metrics.refused(Refusal::PerIp), 1);
    let mut b = connect_from([127, 0, 0, 2], server.addr).await;
    assert!(request(&mut b, "/").await.ends_with("ok"));
}

#[tokio::test]
async fn a_silent_or_trickling_client_is_closed_at_the_header_timeout() {
    let server = start(
        ListenerConfig {
            header_read_timeout: Duration::from_millis(300),
            ..long()
        },
        SOON,
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write half a header block");
    assert!(
        read_to_close(&mut silent).await.is_some(),
        "silent socket held open"
    );
    assert_eq!(
        read_to_close(&mut partial).await.as_deref(),
        Some(""),
        "half a header block: closed without an answer"
    );
    assert_eq!(server.metrics.timed_out(Timeout::Header), 2);
    // A handler slower than the header timeout is not cut off.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    assert!(request(&mut slow, "/slow").await.ends_with("slow"));
    wait_for("no open connections", || server.metrics.open() == 1).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let server = start(
        ListenerConfig {
            keep_alive_timeout: Duration::from_millis(300),
            ..long()
        },
        SOON,
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // Kept alive between requests...
    assert!(request(&mut stream, "/").await.ends_with("ok"));
    assert!(request(&mut stream, "/").await.ends_with("ok"));
    // ...and closed once idle for keep_alive_timeout (the header timeout is a minute).
    assert_eq!(read_to_close(&mut stream).await.as_deref(), Some(""));
    assert_eq!(server.metrics.timed_out(Timeout::Idle), 1);
    assert_eq!(server.metrics.timed_out(Timeout::Header), 0);
}

#[tokio::test]
async fn an_unfinished_body_gets_408_at_the_body_timeout() {
    let server = start(
        ListenerConfig {
            body_timeout: Duration::from_millis(300),
            ..long()
        },
        SOON,
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write a tenth of the body");
    let answer = read_to_close(&mut stream)
        .await
        .expect("the server must answer and close an unfinished body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(server.metrics.timed_out(Timeout::Body), 1);
    // A whole body is fine.
    let mut good = TcpStream::connect(server.addr).await.expect("connect");
    good.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .expect("write");
    assert!(read_to_close_after_one(&mut good).await.ends_with("hello"));
}

/// Reads one response with a small body (the connection stays open).
async fn read_to_close_after_one(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(SOON, async {
        while !String::from_utf8_lossy(&all).ends_with("hello") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answer in time");
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_unfinished_requests_at_the_drain_deadline() {
    let server = start(long(), Duration::from_millis(300)).await;
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    assert!(request(&mut idle, "/").await.ends_with("ok"));
    let mut stuck = TcpStream::connect(server.addr).await.expect("connect");
    stuck
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n01234")
        .await
        .expect("write part of a body");
    wait_for("the request in flight", || server.metrics.open() == 2).await;
    server.shutdown.cancel();
    let ended = tokio::time::timeout(SOON, server.task)
        .await
        .expect("serve must return at the drain deadline")
        .expect("serve task");
    assert_eq!(ended.closed_at_deadline, 1);
    assert!(read_to_close(&mut idle).await.is_some());
    assert!(read_to_close(&mut stuck).await.is_some());
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}
