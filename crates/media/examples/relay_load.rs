//! Opens many ConversationRelay sessions on 127.0.0.1 against an in-process server running the
//! scripted screening agent, keeps them all open, and measures `prompt` -> first `text` token
//! as Twilio would see it (client clock, signed upgrades, documented messages).
//!
//! `cargo run --release -p voxbridge-media --example relay_load -- [sessions] [seconds]`
//! (defaults: 1000 sessions, each answering the six questions, spread over 10 s).
//!
//! Client and server share the machine, so the figures include the client's own scheduling.

#![allow(clippy::print_stdout)] // a command-line report

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{Barrier, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_media::{LogOnly, MediaConfig, MediaState, RelayService, serve_with_state};
use voxbridge_screening::catalog::SHIPPED_SCRIPTS;
use voxbridge_screening::{Screenings, ScriptLibrary};
use voxbridge_twilio::RequestValidator;

const PUBLIC_URL: &str = "wss://voice.example.com";
const TOKEN: &str = "load-test-token-0123456789abcdef";
const ANSWERS: [&str; 6] = [
    "yes I am",
    "yes",
    "about five years",
    "nights",
    "in two weeks",
    "absolutely",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("shipped scripts");
    let screenings = Screenings::new(library, "default").expect("default script");
    let config = MediaConfig {
        public_url: PUBLIC_URL.into(),
        auth_token: TOKEN.into(),
        ..MediaConfig::default()
    };
    let state = MediaState::with_services(
        config,
        Agents::builtin(),
        Arc::new(LogOnly),
        Some(RelayService::logged(screenings)),
    )
    .expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_with_state(state.clone(), listener, shutdown.clone()));

    let signature = RequestValidator::new(TOKEN).sign_websocket(&format!("{PUBLIC_URL}/relay"));
    let connecting = Arc::new(Semaphore::new(64));
    let all_open = Arc::new(Barrier::new(sessions + 1));
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel::<Duration>();
    let gap = Duration::from_millis(seconds * 1000 / ANSWERS.len() as u64);
    let mut clients = Vec::with_capacity(sessions);
    for n in 0..sessions {
        let signature = signature.clone();
        let connecting = Arc::clone(&connecting);
        let all_open = Arc::clone(&all_open);
        let latency_tx = latency_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut request = format!("ws://{addr}/relay")
                .into_client_request()
                .expect("url");
            request
                .headers_mut()
                .insert("X-Twilio-Signature", signature.parse().expect("header"));
            let permit = connecting.acquire().await.expect("semaphore");
            let (mut ws, _) = tokio_tungstenite::connect_async(request)
                .await
                .expect("connect");
            drop(permit);
            let setup = format!(
                r#"{{"type":"setup","sessionId":"VX{n:032}","accountSid":"AC{n:032}","callSid":"CA{n:032}","from":"+18005550100","to":"+18005550101","direction":"outbound-api","customParameters":{{"firstName":"Ana"}}}}"#
            );
            ws.send(Message::Text(setup.into())).await.expect("setup");
            ws.next().await.expect("greeting").expect("greeting ok");
            all_open.wait().await;
            // Spread the sessions' prompts over the gap between turns.
            let offset = gap.mul_f64(n as f64 / sessions as f64);
            tokio::time::sleep(offset).await;
            for answer in ANSWERS {
                let prompt = format!(
                    r#"{{"type":"prompt","voicePrompt":"{answer}","lang":"en-US","last":true}}"#
                );
                let start = Instant::now();
                ws.send(Message::Text(prompt.into())).await.expect("prompt");
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => break,
                        Some(Ok(_)) => {}
                        other => panic!("session {n} ended early: {other:?}"),
                    }
                }
                latency_tx.send(start.elapsed()).expect("collector");
                tokio::time::sleep(gap).await;
            }
            let _ = ws.close(None).await;
        }));
    }
    drop(latency_tx);
    all_open.wait().await;
    println!(
        "{sessions} relay sessions open (registry: {}); running {} turns each over ~{seconds} s",
        state.registry().count(),
        ANSWERS.len()
    );
    for client in clients {
        client.await.expect("client task");
    }
    let mut latencies = Vec::new();
    while let Some(latency) = latency_rx.recv().await {
        latencies.push(latency);
    }
    latencies.sort();
    println!(
        "prompt -> first text over {} turns: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
