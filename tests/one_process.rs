//! One process, one port: `voxbridge serve` serves the companion API (`/twilio/*`, `/api/*`)
//! beside `/media` and `/relay` (`api.in_serve`, the default), derives the TwiML's WebSocket
//! URLs from the one public URL, answers busy at `media.max_calls`, and can put `/metrics` on
//! a listener of its own, and drains a live call on SIGTERM. The real binary, real sockets, a
//! real SQLite file.

mod api_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use api_process::{free_port, http, http_response, scratch_dir, signed_webhook, start_voxbridge};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

const TOKEN: &str = "one-process-auth-token";
/// The one public URL: Twilio signs webhooks and upgrades against it.
const PUBLIC_URL: &str = "https://one.example.com";

fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// A webhook signed as Twilio signs it for `PUBLIC_URL{path}`, sent to `addr`.
fn webhook(addr: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    signed_webhook(addr, TOKEN, PUBLIC_URL, path, params)
}

fn inbound(addr: &str, n: u32) -> (u16, String) {
    webhook(
        addr,
        "/twilio/voice/inbound",
        &[
            ("CallSid", &call_sid(n)),
            ("From", &format!("+1415555{n:04}")),
            ("To", "+14155550100"),
            ("CallStatus", "ringing"),
        ],
    )
}

fn answer(addr: &str, n: u32) -> (u16, String) {
    webhook(
        addr,
        "/twilio/voice/answer",
        &[("CallSid", &call_sid(n)), ("CallStatus", "in-progress")],
    )
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

fn wait_for(what: &str, dir: &Path, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}\n{}",
            log_of(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child, dir: &Path) {
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit {status}\n{}", log_of(dir));
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM\n{}",
            log_of(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Media Streams call signed over the public URL: upgrade, `connected`, `start`.
async fn open_media_call(
    addr: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{addr}/media").into_client_request().unwrap();
    let signature = RequestValidator::new(TOKEN).sign_websocket("wss://one.example.com/media");
    request
        .headers_mut()
        .insert("X-Twilio-Signature", signature.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("signed upgrade on the one port");
    let mut encoder = TwilioEncoder::new(StreamSid::new(format!("MZ{:032x}", 1)).unwrap());
    let start = encoder
        .start(
            AccountSid::new(format!("AC{:032x}", 2)).unwrap(),
            CallSid::new(call_sid(3)).unwrap(),
            vec![Track::Inbound],
            std::collections::BTreeMap::new(),
        )
        .to_owned();
    for text in [encoder.connected().to_owned(), start] {
        ws.send(Message::text(text)).await.unwrap();
    }
    ws
}

#[test]
fn serve_answers_twilio_webhooks_on_the_bridge_port_and_says_busy_at_max_calls() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let (dir, addr, mut child) = serve_with(
        "one-process",
        &format!(
            "max_calls = 1\nmetrics_listen = \"{metrics_addr}\"\n\n\
             [api]\npublic_url = \"{PUBLIC_URL}\"\n\n[api.twilio]\nauth_token = \"{TOKEN}\"\n"
        ),
    );

    // The API's webhooks on the bridge's port; the TwiML points at the same public URL.
    let (status, twiml) = inbound(&addr, 1);
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("<ConversationRelay url=\"wss://one.example.com/relay\""),
        "relay URL derived from the public URL: {twiml}"
    );
    assert!(
        twiml.contains("action=\"https://one.example.com/twilio/relay/action\""),
        "{twiml}"
    );
    let (status, twiml) = answer(&addr, 2);
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<ConversationRelay"), "{twiml}");
    // A forged webhook is refused on this port too.
    let forged = http(
        &addr,
        "POST",
        "/twilio/voice/inbound",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-Twilio-Signature", "AAAA".to_owned()),
        ],
        "CallSid=CA00000000000000000000000000000009&From=%2B14155550109",
    );
    assert_eq!(forged, Some(403));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One live Media Streams call, signed over the public URL, fills max_calls = 1.
    let mut ws = runtime.block_on(open_media_call(&addr));
    wait_for("the call to count", &dir, || {
        http_response(&addr, "GET", "/healthz", &[], "")
            .is_some_and(|(_, body)| body.contains("\"connections\":1"))
    });

    // At the limit: an incoming call hears a busy signal, a screening call the busy message.
    let (status, twiml) = inbound(&addr, 4);
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Reject reason=\"busy\"/>"), "{twiml}");
    let (status, twiml) = answer(&addr, 5);
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("all of our lines are busy") && twiml.contains("<Hangup/>"),
        "{twiml}"
    );
    assert!(!twiml.contains("<Connect"), "{twiml}");

    // /metrics is on its own listener only, and holds the API's counters too.
    assert_eq!(http(&addr, "GET", "/metrics", &[], ""), Some(404));
    let (status, metrics) = http_response(&metrics_addr, "GET", "/metrics", &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("voxbridge_api_calls_answered_busy_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "voxbridge_api_request_duration_seconds_count{route=\"/twilio/voice/inbound\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("voxbridge_api_tcp_"),
        "the API has no listener of its own here"
    );

    // The call ends: the line is free again, and the caller who heard busy may call back.
    runtime.block_on(async {
        ws.close(None).await.unwrap();
    });
    drop(ws);
    wait_for("the call to end", &dir, || {
        http_response(&addr, "GET", "/healthz", &[], "")
            .is_some_and(|(_, body)| body.contains("\"connections\":0"))
    });
    let (status, twiml) = inbound(&addr, 4);
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<ConversationRelay"), "{twiml}");

    let log = log_of(&dir);
    assert!(
        log.contains("companion API served on the same port"),
        "{log}"
    );
    assert!(
        !log.contains("Twilio cannot reach"),
        "a public URL was set: {log}"
    );
    terminate(&mut child, &dir);
}

/// `voxbridge serve` on a free port with a fresh SQLite file and `more` configuration (the
/// `[media]` listen address is set here: `more` may add keys to `[media]` after it).
fn serve_with(what: &str, more: &str) -> (PathBuf, String, Child) {
    let dir = scratch_dir(what);
    // A fixed port: the URLs `serve` derives from its listen address are checked here.
    let addr = format!("127.0.0.1:{}", free_port());
    let more = more.strip_prefix("[media]\n").unwrap_or(more);
    let more = if more.starts_with('[') {
        format!("\n{more}")
    } else {
        more.to_owned()
    };
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[store]\ndatabase_url = \"sqlite://{}\"\n\n[media]\nlisten = \"{addr}\"\n{more}",
            dir.join("voxbridge.db").display()
        ),
    )
    .unwrap();
    let (child, addr) = start_voxbridge("serve", &dir, "stderr.log");
    (dir, addr, child)
}

#[test]
fn serve_names_the_urls_twilio_cannot_reach() {
    let (dir, addr, mut child) = serve_with(
        "one-process-local",
        &format!("[api.twilio]\nauth_token = \"{TOKEN}\"\n"),
    );
    let port = addr.rsplit_once(':').unwrap().1;
    let log = log_of(&dir);
    for expected in [
        format!("media.public_url = wss://localhost:{port}: Twilio cannot reach"),
        format!("api.public_url = http://localhost:{port}: Twilio cannot reach"),
        format!("api.connect.relay_url = wss://localhost:{port}/relay: Twilio cannot reach"),
    ] {
        assert!(log.contains(&expected), "{expected:?} not in\n{log}");
    }
    terminate(&mut child, &dir);
}

#[test]
fn serve_without_a_token_runs_the_bridge_alone_and_says_why() {
    let (dir, addr, mut child) = serve_with(
        "one-process-no-token",
        "[media]\ninsecure_skip_signature = true\n",
    );
    assert_eq!(
        http(&addr, "POST", "/twilio/voice/inbound", &[], "CallSid=x"),
        Some(404)
    );
    assert_eq!(http(&addr, "GET", "/metrics", &[], ""), Some(200));
    let log = log_of(&dir);
    assert!(
        log.contains("the companion API (/api/*, /twilio/*) is not served"),
        "{log}"
    );
    terminate(&mut child, &dir);
}

/// README, "Shutdown (SIGTERM)": new upgrades get 503, live sessions continue for
/// `drain_timeout_ms`, then close with 1001; results are flushed to the store before the
/// process exits (0).
#[test]
fn sigterm_drains_a_live_call_then_stores_it_and_exits_0() {
    const DRAIN: Duration = Duration::from_millis(1500);
    let (dir, addr, mut child) = serve_with(
        "one-process-drain",
        &format!(
            "drain_timeout_ms = {}\n\n[api]\npublic_url = \"{PUBLIC_URL}\"\n\n\
             [api.twilio]\nauth_token = \"{TOKEN}\"\n",
            DRAIN.as_millis()
        ),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ws = runtime.block_on(open_media_call(&addr));
    wait_for("the call to count", &dir, || {
        http_response(&addr, "GET", "/healthz", &[], "")
            .is_some_and(|(_, body)| body.contains("\"calls\":1"))
    });

    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let term = Instant::now();
    // Draining: not ready for new calls, the live one still up.
    wait_for("readyz to say draining", &dir, || {
        http_response(&addr, "GET", "/readyz", &[], "")
            .is_some_and(|(status, body)| status == 503 && body.contains("draining"))
    });
    // The live call is closed with 1001 at the drain deadline, not before.
    let close = runtime.block_on(async {
        let wait = DRAIN + Duration::from_secs(5);
        tokio::time::timeout(wait, async {
            while let Some(message) = ws.next().await {
                if let Ok(Message::Close(frame)) = message {
                    return frame;
                }
            }
            None
        })
        .await
        .expect("a close frame within the drain deadline")
    });
    let closed_after = term.elapsed();
    assert_eq!(
        close.map(|f| u16::from(f.code)),
        Some(1001),
        "{}",
        log_of(&dir)
    );
    assert!(
        closed_after >= DRAIN.saturating_sub(Duration::from_millis(100))
            && closed_after <= DRAIN + Duration::from_secs(1),
        "closed {closed_after:?} after SIGTERM, drain_timeout_ms {DRAIN:?}"
    );
    drop(ws);
    // Then the process exits 0, promptly, with the call's record stored.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit {status}\n{}", log_of(&dir));
            break;
        }
        assert!(
            term.elapsed() < DRAIN + Duration::from_secs(3),
            "still running {:?} after SIGTERM\n{}",
            term.elapsed(),
            log_of(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let call = runtime.block_on(async {
        let store = voxbridge_store::Store::connect(&voxbridge_store::StoreConfig {
            database_url: format!("sqlite://{}", dir.join("voxbridge.db").display()).into(),
            ..voxbridge_store::StoreConfig::default()
        })
        .await
        .expect("reopen the SQLite file");
        let call = store.call(&call_sid(3)).await.unwrap();
        store.close().await;
        call
    });
    let summary = call
        .and_then(|c| c.summary)
        .unwrap_or_else(|| panic!("the drained call has no stored summary\n{}", log_of(&dir)));
    assert!(summary.get("transport").is_some(), "{summary}");
}
