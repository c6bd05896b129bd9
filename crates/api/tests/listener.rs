//! `voxbridge_api::serve` on a real socket on 127.0.0.1 with a real SQLite file: its listener
//! limits, and its drain deadline after shutdown (a request with an unfinished body once kept
//! the service alive for as long as the client liked).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxbridge_api::{ApiConfig, ListenerConfig, Secret, ServeError, TwilioConfig};
use voxbridge_store::StoreConfig;

struct Api {
    addr: SocketAddr,
    shutdown: CancellationToken,
    /// `serve`'s result (it runs on a thread of its own: its future is not provably `Send`
    /// to `tokio::spawn` because of sqlx's higher-ranked executor bounds).
    task: oneshot::Receiver<Result<(), ServeError>>,
    _dir: tempfile::TempDir,
}

fn start(config: ApiConfig) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StoreConfig {
        database_url: format!("sqlite://{}", dir.path().join("api.db").display()).into(),
        ..StoreConfig::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let (done, task) = oneshot::channel();
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            voxbridge_api::serve(config, store, listener, stop).await
        });
        let _ = done.send(result);
    });
    Api {
        addr,
        shutdown,
        task,
        _dir: dir,
    }
}

fn config(listener: ListenerConfig, drain: Duration) -> ApiConfig {
    ApiConfig {
        twilio: TwilioConfig {
            auth_token: Secret::new("test-auth-token"),
            ..TwilioConfig::default()
        },
        drain_timeout: drain,
        listener,
        ..ApiConfig::default()
    }
}

/// `GET /healthz` on `stream` (kept alive), once the service is up.
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&all).ends_with("{\"status\":\"ok\"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("healthz answered")
            .expect("read");
        assert!(n > 0, "closed before the answer");
        all.extend_from_slice(&buf[..n]);
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    // The store is opened before the listener serves: retry until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let up = tokio::time::timeout(Duration::from_millis(500), healthz(&mut stream)).await;
        if up.is_ok() {
            return stream;
        }
        assert!(Instant::now() < deadline, "the API never answered");
    }
}

#[tokio::test]
async fn shutdown_with_an_unfinished_body_exits_at_the_drain_deadline() {
    let drain = Duration::from_millis(300);
    // The body timeout is a minute: only the drain deadline can end this request.
    let api = start(config(
        ListenerConfig {
            body_timeout: Duration::from_secs(60),
            ..ListenerConfig::default()
        },
        drain,
    ));
    let mut stuck = connect(api.addr).await;
    stuck
        .write_all(
            b"POST /twilio/voice/status HTTP/1.1\r\nHost: t\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nCallSid=CA",
        )
        .await
        .expect("write part of a body");
    // Let the request reach its handler (not an assertion: only makes the case the hard one).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    api.shutdown.cancel();
    let result = tokio::time::timeout(drain + Duration::from_secs(3), api.task)
        .await
        .expect("the API must exit within its drain deadline (+3 s)");
    result.expect("serve thread").expect("a clean exit");
    assert!(asked.elapsed() < drain + Duration::from_secs(3));
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stuck.read_to_end(&mut rest)).await;
    assert!(
        TcpStream::connect(api.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_silent_socket_is_closed_and_healthz_still_answers() {
    let api = start(config(
        ListenerConfig {
            header_read_timeout: Duration::from_millis(300),
            ..ListenerConfig::default()
        },
        Duration::from_secs(1),
    ));
    let mut good = connect(api.addr).await;
    let mut silent = TcpStream::connect(api.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("a silent socket must be closed at the header timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    healthz(&mut good).await;
    api.shutdown.cancel();
    api.task.await.expect("serve thread").expect("a clean exit");
}

/// One request on a fresh connection; the status line's code.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_public_port() {
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("address")
    };
    let api = start(ApiConfig {
        metrics_listen: metrics_addr.to_string(),
        ..config(ListenerConfig::default(), Duration::from_secs(1))
    });
    drop(connect(api.addr).await);
    assert_eq!(status_of(api.addr, "/metrics").await, 404);
    assert_eq!(status_of(api.addr, "/healthz").await, 200);
    assert_eq!(status_of(metrics_addr, "/metrics").await, 200);
    api.shutdown.cancel();
    api.task.await.expect("serve thread").expect("a clean exit");
    assert!(
        TcpStream::connect(metrics_addr).await.is_err(),
        "the metrics listener closes with the service"
    );
}
