//! End-to-end tests of the Media Streams bridge over real sockets on 127.0.0.1, with messages
//! shaped exactly as Twilio sends them (string counters, unknown fields present).

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    AUTH_TOKEN, FromBridge, PUBLIC_URL, Records, Twilio, config, connect, connect_signed,
    decode_outbound, eventually, sign, speech_8k_mulaw, start_server, start_server_with_sink,
};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use voxbridge_brain::Agents;
use voxbridge_media::{MediaConfig, MediaState};

const SECOND: Duration = Duration::from_secs(1);

/// mu-law silence (code 0xFF is +0).
const SILENCE: [u8; 160] = [0xFF; 160];

#[tokio::test]
async fn full_echo_call_round_trip() {
    let server = start_server(config()).await;
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio
        .begin(&[("agent", "echo"), ("FirstName", "Jane")])
        .await;

    // The first utterance of the fixture is 0.8 s .. 3.93 s (speech_clean_8k.labels); send
    // 5 s of it at Twilio's 20 ms pace so the VAD's 600 ms hangover ends it.
    let speech = speech_8k_mulaw();
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for frame in speech[..5 * 8000].chunks(160) {
        pace.tick().await;
        twilio.media(frame).await;
    }
    let registered = server
        .state
        .registry()
        .by_call_sid(twilio.call_sid.as_str())
        .expect("call is registered while live");
    assert_eq!(registered.stream_sid, twilio.stream_sid());
    assert_eq!(registered.agent, "echo");
    assert_eq!(server.state.registry().count(), 1);

    // Keep streaming silence like a live call while the echo plays; echo marks like Twilio.
    let mut echoed = Vec::new();
    let mut marks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while marks.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no mark within 8 s");
        tokio::select! {
            _ = pace.tick() => twilio.media(&SILENCE).await,
            message = twilio.ws.next() => match message.expect("socket open").expect("frame") {
                Message::Text(text) => match decode_outbound(text.as_str()) {
                    FromBridge::Media(payload) => echoed.extend(payload),
                    FromBridge::Mark(name) => {
                        twilio.mark(&name).await;
                        marks.push(name);
                    }
                    FromBridge::Clear => panic!("no barge-in expected"),
                },
                other => panic!("unexpected frame {other:?}"),
            },
        }
    }
    // About 3.1 s of speech, 8000 mu-law bytes a second.
    assert!(
        (20_000..=34_000).contains(&echoed.len()),
        "echoed {} bytes",
        echoed.len()
    );
    let loud = echoed.iter().filter(|&&b| b & 0x7F < 0x60).count();
    assert!(
        loud > echoed.len() / 10,
        "echo is not silence ({loud} loud bytes)"
    );

    twilio.stop().await;
    assert_eq!(twilio.expect_close(2 * SECOND).await, 1000);
    eventually(2 * SECOND, "registry empty", || {
        server.state.registry().is_empty()
    })
    .await;
    eventually(2 * SECOND, "connection gone", || {
        server.state.connections() == 0
    })
    .await;
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean stop");
}

#[tokio::test]
async fn signature_is_checked_before_upgrading() {
    let server = start_server(config()).await;
    let url = format!("{PUBLIC_URL}/media");

    // Valid, and the trailing-slash variant Twilio's security page mentions.
    assert!(
        connect(server.addr, "/media", Some(&sign(&url, AUTH_TOKEN)))
            .await
            .is_ok()
    );
    let slash = sign(&format!("{url}/"), AUTH_TOKEN);
    assert!(connect(server.addr, "/media", Some(&slash)).await.is_ok());
    // https form of the same URL is the same signature base (wss rewrite).
    let https = sign("https://voice.example.com/media", AUTH_TOKEN);
    assert!(connect(server.addr, "/media", Some(&https)).await.is_ok());

    assert_eq!(connect(server.addr, "/media", None).await.err(), Some(403));
    assert_eq!(
        connect(server.addr, "/media", Some("")).await.err(),
        Some(403)
    );
    let wrong_token = sign(&url, "another-token-another-token-1234");
    assert_eq!(
        connect(server.addr, "/media", Some(&wrong_token))
            .await
            .err(),
        Some(403)
    );
    let wrong_host = sign("wss://evil.example.com/media", AUTH_TOKEN);
    assert_eq!(
        connect(server.addr, "/media", Some(&wrong_host))
            .await
            .err(),
        Some(403)
    );
    // Nothing was registered by the refused upgrades.
    eventually(2 * SECOND, "no connections", || {
        server.state.connections() == 0
    })
    .await;
}

/// Upgrades signed by twilio-python (`crates/twilio/tests/data/gen_twilio_python_vectors.py`),
/// not by the project's own signer: the bridge must rebuild the URL Twilio signed from
/// `public_url` and the request's path and query (port, query and path prefix included).
#[tokio::test]
async fn upgrades_signed_by_twilio_python_are_accepted() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../twilio/tests/data/twilio_python_vectors.json"
    ))
    .expect("fixture parses");
    assert_eq!(fixture["auth_token"], AUTH_TOKEN);
    let upgrades = fixture["bridge"].as_array().expect("bridge upgrades");
    assert!(upgrades.len() >= 4);
    for upgrade in upgrades {
        let field = |name: &str| upgrade[name].as_str().expect("string field").to_owned();
        let (name, path, signature) = (field("name"), field("path_and_query"), field("signature"));
        let server = start_server(MediaConfig {
            public_url: field("public_url"),
            ..config()
        })
        .await;
        assert!(
            connect(server.addr, &path, Some(&signature)).await.is_ok(),
            "{name}: {path} signed over {}",
            field("signed_url")
        );
        let other = if path.contains('?') {
            path.replace('?', "?extra=1&")
        } else {
            format!("{path}?extra=1")
        };
        assert_eq!(
            connect(server.addr, &other, Some(&signature)).await.err(),
            Some(403),
            "{name}: {other} is not what was signed"
        );
        server.shutdown.cancel();
        server.task.await.expect("server task").expect("clean stop");
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn insecure_skip_signature_accepts_unsigned_and_warns() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let skip = MediaConfig {
        insecure_skip_signature: true,
        auth_token: voxbridge_config::Secret::default(),
        public_url: String::new(),
        ..MediaConfig::default()
    };
    let state = tracing::subscriber::with_default(subscriber, || {
        MediaState::new(skip.clone(), Agents::builtin()).expect("valid dev config")
    });
    drop(state);
    let text = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("utf-8");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("insecure_skip_signature"), "{text}");

    let server = start_server(skip).await;
    let mut twilio = Twilio::new(
        connect(server.addr, "/media", None)
            .await
            .expect("unsigned upgrade accepted in dev mode"),
    );
    twilio.begin(&[]).await;
    twilio.stop().await;
    assert_eq!(twilio.expect_close(2 * SECOND).await, 1000);
}

#[tokio::test]
async fn isolated_bad_messages_do_not_end_the_call() {
    let records = Records::default();
    let server = start_server_with_sink(config(), Arc::new(records.clone())).await;

    // Media before start, then a normal start.
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio
        .send_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
        .await;
    twilio.media(&SILENCE).await;
    twilio.send_start(&[]).await;

    let stream_sid = twilio.stream_sid();
    let call_sid = twilio.call_sid.as_str().to_owned();
    let account_sid = twilio.account_sid.as_str().to_owned();
    let bad: Vec<Message> = vec![
        Message::text("{not json"),
        Message::text(format!(
            r#"{{"event":"transcription","sequenceNumber":"9","streamSid":"{stream_sid}"}}"#
        )),
        Message::text(format!(
            r#"{{"event":"media","sequenceNumber":"10","media":{{"track":"inbound","chunk":"9","timestamp":"180","payload":"!!not base64!!"}},"streamSid":"{stream_sid}"}}"#
        )),
        Message::text(format!(
            r#"{{"event":"media","pad":"{}"}}"#,
            "x".repeat(65_600)
        )),
        Message::binary(vec![1_u8, 2, 3]),
        Message::text(format!(
            r#"{{"event":"start","sequenceNumber":"11","start":{{"accountSid":"{account_sid}","streamSid":"{stream_sid}","callSid":"{call_sid}","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"customParameters":{{}}}},"streamSid":"{stream_sid}"}}"#
        )),
    ];
    for message in bad {
        twilio.ws.send(message).await.expect("send bad message");
        // A good frame between bad ones: each bad one is isolated.
        twilio.media(&SILENCE).await;
    }
    // A ping is answered by the WebSocket layer and is not a bad message.
    twilio
        .ws
        .send(Message::Ping(vec![7].into()))
        .await
        .expect("ping");
    assert!(twilio.still_open(Duration::from_millis(300)).await);
    assert_eq!(server.state.registry().count(), 1);

    twilio.stop().await;
    assert_eq!(
        twilio.expect_close(2 * SECOND).await,
        1000,
        "stop ends normally"
    );
    eventually(2 * SECOND, "registry empty", || {
        server.state.registry().is_empty()
    })
    .await;
    eventually(2 * SECOND, "call record written", || {
        !records.0.lock().expect("not poisoned").is_empty()
    })
    .await;
    let recorded = records.0.lock().expect("not poisoned").clone();
    assert_eq!(recorded.len(), 1, "one call, one record");
    let summary = &recorded[0].summary;
    // media before start, bad JSON, unknown event, bad base64, oversize, binary, second
    // start: each counted, none fatal; the ping is not a bad message.
    assert_eq!(summary.bad_messages, 7, "{summary:?}");
    assert_eq!(
        summary.end_reason,
        Some(voxbridge_session::EndReason::Stopped)
    );
}

#[tokio::test]
async fn a_run_of_bad_messages_closes_only_that_call() {
    let server = start_server(config()).await;
    let mut healthy = Twilio::new(connect_signed(server.addr).await);
    healthy.begin(&[]).await;

    let mut garbled = Twilio::new(connect_signed(server.addr).await);
    garbled.begin(&[]).await;
    let mut unknown = Twilio::new(connect_signed(server.addr).await);
    unknown.begin(&[]).await;
    eventually(2 * SECOND, "three calls live", || {
        server.state.registry().count() == 3
    })
    .await;

    let unknown_event = format!(
        r#"{{"event":"bogus","sequenceNumber":"3","streamSid":"{}"}}"#,
        unknown.stream_sid()
    );
    for _ in 0..10 {
        garbled.send_text("{\"event\": ").await;
        unknown.send_text(&unknown_event).await;
        healthy.media(&SILENCE).await;
    }
    assert_eq!(
        garbled.expect_close(2 * SECOND).await,
        1007,
        "invalid payload"
    );
    assert_eq!(
        unknown.expect_close(2 * SECOND).await,
        1008,
        "policy violation"
    );
    eventually(2 * SECOND, "bad calls unregistered", || {
        server.state.registry().count() == 1
    })
    .await;

    // The healthy call saw none of it.
    assert!(healthy.still_open(Duration::from_millis(200)).await);
    assert!(
        server
            .state
            .registry()
            .by_call_sid(healthy.call_sid.as_str())
            .is_some()
    );
    for _ in 0..5 {
        healthy.media(&SILENCE).await;
    }
    healthy.stop().await;
    assert_eq!(healthy.expect_close(2 * SECOND).await, 1000);
    eventually(2 * SECOND, "registry empty", || {
        server.state.registry().is_empty()
    })
    .await;
}

#[tokio::test]
async fn oversize_beyond_the_hard_limit_fails_only_that_socket() {
    let server = start_server(config()).await;
    let mut healthy = Twilio::new(connect_signed(server.addr).await);
    healthy.begin(&[]).await;
    let mut huge = Twilio::new(connect_signed(server.addr).await);
    huge.begin(&[]).await;
    // 1 MiB: refused by the WebSocket layer without being buffered whole.
    let _ = huge.ws.send(Message::text("x".repeat(1 << 20))).await;
    eventually(3 * SECOND, "huge call gone", || {
        server.state.registry().count() == 1
    })
    .await;
    healthy.stop().await;
    assert_eq!(healthy.expect_close(2 * SECOND).await, 1000);
}

#[tokio::test]
async fn unknown_agent_is_refused_with_1008() {
    let server = start_server(config()).await;
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio.begin(&[("agent", "no-such-agent")]).await;
    assert_eq!(twilio.expect_close(2 * SECOND).await, 1008);
    eventually(2 * SECOND, "registry empty", || {
        server.state.registry().is_empty()
    })
    .await;
    eventually(2 * SECOND, "connection gone", || {
        server.state.connections() == 0
    })
    .await;
}

#[tokio::test]
async fn healthz_reports_live_calls() {
    let server = start_server(config()).await;
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio.begin(&[]).await;
    eventually(2 * SECOND, "call live", || {
        server.state.registry().count() == 1
    })
    .await;
    let body = http_get(server.addr, "/healthz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""calls":1"#), "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    twilio.stop().await;
    assert_eq!(twilio.expect_close(2 * SECOND).await, 1000);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http_get_accept(addr, path, "*/*").await
}

async fn http_get_accept(addr: std::net::SocketAddr, path: &str, accept: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// The sample value of the series `series` (name and labels exactly) in a `/metrics` body.
fn metric(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing:\n{body}"))
        .parse()
        .expect("an integer")
}

#[tokio::test]
async fn metrics_count_live_calls_refused_upgrades_and_endings() {
    let server = start_server(config()).await;
    let active = "voxbridge_calls_active{transport=\"media\"}";
    let stopped = "voxbridge_calls_ended_total{transport=\"media\",reason=\"stopped\"}";
    let forbidden = "voxbridge_upgrades_rejected_total{transport=\"media\",reason=\"forbidden\"}";
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio.begin(&[]).await;
    eventually(2 * SECOND, "call live", || {
        server.state.registry().count() == 1
    })
    .await;
    assert_eq!(connect(server.addr, "/media", None).await.err(), Some(403));

    let response = http_get(server.addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    assert_eq!(metric(body, active), 1);
    assert_eq!(
        metric(body, "voxbridge_calls_active{transport=\"relay\"}"),
        0
    );
    assert_eq!(metric(body, forbidden), 1);
    assert_eq!(metric(body, stopped), 0);
    assert_eq!(metric(body, "voxbridge_connections_open"), 1);
    assert_eq!(metric(body, "voxbridge_draining"), 0);
    // Process metrics and the build, under their conventional names.
    assert!(metric(body, "process_resident_memory_bytes") > 1_000_000);
    assert!(metric(body, "process_open_fds") >= 3);
    assert_eq!(
        metric(
            body,
            &format!(
                "voxbridge_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1
    );
    for family in [
        "voxbridge_calls_active gauge",
        "voxbridge_calls_started_total counter",
        "voxbridge_calls_ended_total counter",
        "voxbridge_upgrades_rejected_total counter",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family}\n")),
            "{family}: {body}"
        );
    }
    // Only echo is registered: no voice pipeline families.
    assert!(!body.contains("voxbridge_voice_"), "{body}");
    // A scraper that asks for OpenMetrics (as Prometheus does) gets the same values in it.
    let response = http_get_accept(
        server.addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    assert!(
        response
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{response}"
    );
    let (_, open_metrics) = response.split_once("\r\n\r\n").expect("a body");
    assert_eq!(metric(open_metrics, active), 1);
    assert_eq!(metric(open_metrics, forbidden), 1);
    assert!(
        open_metrics.contains("# TYPE voxbridge_calls_started counter\n"),
        "{open_metrics}"
    );
    assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");

    twilio.stop().await;
    assert_eq!(twilio.expect_close(2 * SECOND).await, 1000);
    eventually(2 * SECOND, "call ended", || {
        server.state.registry().is_empty()
    })
    .await;
    let mut body = String::new();
    for _ in 0..20 {
        body = http_get(server.addr, "/metrics").await;
        if metric(&body, stopped) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&body, stopped), 1, "{body}");
    assert_eq!(metric(&body, active), 0);
    assert_eq!(
        metric(&body, "voxbridge_calls_started_total{transport=\"media\"}"),
        1
    );
}

#[tokio::test]
async fn shutdown_refuses_upgrades_then_closes_live_calls_with_1001() {
    let server = start_server(MediaConfig {
        drain_timeout: Duration::from_millis(1500),
        ..config()
    })
    .await;
    let ready = http_get(server.addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let mut twilio = Twilio::new(connect_signed(server.addr).await);
    twilio.begin(&[]).await;
    eventually(2 * SECOND, "call live", || {
        server.state.registry().count() == 1
    })
    .await;

    server.shutdown.cancel();
    eventually(SECOND, "draining", || server.state.is_draining()).await;
    let signature = sign(&format!("{PUBLIC_URL}/media"), AUTH_TOKEN);
    assert_eq!(
        connect(server.addr, "/media", Some(&signature)).await.err(),
        Some(503)
    );
    let health = http_get(server.addr, "/healthz").await;
    assert!(health.contains(r#""status":"draining""#), "{health}");
    let ready = http_get(server.addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");

    // The live call keeps going during the drain, then is closed with "going away".
    twilio.media(&SILENCE).await;
    assert!(twilio.still_open(Duration::from_millis(200)).await);
    assert_eq!(twilio.expect_close(4 * SECOND).await, 1001);
    server
        .task
        .await
        .expect("server task")
        .expect("serve returns Ok after the drain");
    assert!(server.state.registry().is_empty());
    assert_eq!(server.state.connections(), 0);
}

#[tokio::test]
async fn readyz_answers_503_while_the_readiness_check_fails() {
    let server = start_server(config()).await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    server.state.set_readiness_check(move || {
        let up = flag.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(())
            } else {
                Err("store unreachable".to_owned())
            }
        })
    });
    let ready = http_get(server.addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains(r#""error":"store unreachable""#), "{ready}");
    let health = http_get(server.addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "alive all the same: {health}"
    );
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let ready = http_get(server.addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    server.shutdown.cancel();
    server.task.await.expect("server task").expect("clean exit");
}
