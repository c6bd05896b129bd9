//! One ConversationRelay turn through the relay driver, over an in-memory socket: a final
//! `prompt` in -> the first `text` token out, with the scripted screening agent. Sessions are
//! set up outside the timed part; each runs the six questions of the default script, then a
//! new one starts.
//!
//! `cargo bench -p voxbridge-media --bench relay_turn`
//!
//! `cargo test --benches` runs this binary without `--bench`: then it times [`TEST_SESSIONS`]
//! sessions' turns and asserts the relay's target, [`P99_TARGET`] (README, Performance:
//! `prompt` -> first `text` p99 <= 1 ms, promised at 1,000 concurrent sessions), instead of
//! criterion's one unchecked pass.

#![allow(clippy::print_stdout)] // a benchmark report

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use criterion::{Criterion, criterion_group};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use voxbridge_brain::Agents;
use voxbridge_media::{LogOnly, MediaConfig, MediaState, RelayService, drive_relay};
use voxbridge_screening::catalog::SHIPPED_SCRIPTS;
use voxbridge_screening::{Screenings, ScriptLibrary};

const SETUP: &str = r#"{"type":"setup","sessionId":"VX00000000000000000000000000000000","accountSid":"AC00000000000000000000000000000000","callSid":"CA00000000000000000000000000000000","from":"+18005550100","to":"+18005550101","direction":"outbound-api","customParameters":{"firstName":"Ana","candidateId":"c1"}}"#;
/// Answers that move the default script forward, one question each.
const ANSWERS: [&str; 6] = [
    "yes I am",
    "yes",
    "about five years",
    "nights",
    "in two weeks",
    "absolutely",
];

/// The promised `prompt` -> first `text` p99.
const P99_TARGET: Duration = Duration::from_millis(1);
/// Sessions timed in test mode (six turns each).
const TEST_SESSIONS: usize = 50;

struct Session {
    to_bridge: mpsc::UnboundedSender<Result<Message, Infallible>>,
    from_bridge: mpsc::UnboundedReceiver<Message>,
}

fn state() -> MediaState {
    let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("shipped scripts");
    let screenings = Screenings::new(library, "default").expect("default script");
    let config = MediaConfig {
        insecure_skip_signature: true,
        ..MediaConfig::default()
    };
    MediaState::with_services(
        config,
        Agents::builtin(),
        Arc::new(LogOnly),
        Some(RelayService::logged(screenings)),
    )
    .expect("valid config")
}

async fn open(state: &MediaState) -> Session {
    let (to_bridge, stream) = mpsc::unbounded();
    let (sink, mut from_bridge) = mpsc::unbounded();
    let service = state.relay().cloned().expect("relay configured");
    tokio::spawn(drive_relay(state.clone(), service, sink, stream));
    to_bridge
        .unbounded_send(Ok(Message::Text(SETUP.into())))
        .expect("driver alive");
    from_bridge.next().await.expect("greeting");
    Session {
        to_bridge,
        from_bridge,
    }
}

fn prompt(text: &str) -> Message {
    Message::Text(
        format!(r#"{{"type":"prompt","voicePrompt":"{text}","lang":"en-US","last":true}}"#).into(),
    )
}

/// Sends the `turn`th answer and waits for the first token; returns how long that took.
async fn time_turn(session: &mut Session, turn: usize) -> Duration {
    let message = prompt(ANSWERS[turn]);
    let start = Instant::now();
    session
        .to_bridge
        .unbounded_send(Ok(message))
        .expect("driver alive");
    let first = session.from_bridge.next().await.expect("a text token");
    let elapsed = start.elapsed();
    assert!(matches!(first, Message::Text(_)));
    elapsed
}

/// Test mode: every turn of [`TEST_SESSIONS`] sessions, p99 against [`P99_TARGET`].
fn assert_target() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state = state();
    let mut turns = runtime.block_on(async {
        let mut turns = Vec::new();
        for _ in 0..TEST_SESSIONS {
            let mut session = open(&state).await;
            for turn in 0..ANSWERS.len() {
                turns.push(time_turn(&mut session, turn).await);
            }
            session.to_bridge.close().await.ok();
        }
        turns
    });
    turns.sort();
    let p99 = turns[(turns.len() * 99).div_ceil(100) - 1];
    let p50 = turns[turns.len() / 2];
    println!(
        "relay prompt -> first text: {} turns, p50 {p50:?}, p99 {p99:?}, max {:?}",
        turns.len(),
        turns[turns.len() - 1]
    );
    assert!(
        p99 <= P99_TARGET,
        "relay prompt -> first text p99 {p99:?} over the {P99_TARGET:?} target"
    );
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state = state();
    c.bench_function("relay prompt -> first text (scripted agent)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                let mut session = open(&state).await;
                let mut turn = 0;
                for _ in 0..iters {
                    if turn == ANSWERS.len() {
                        session.to_bridge.close().await.ok();
                        session = open(&state).await;
                        turn = 0;
                    }
                    total += time_turn(&mut session, turn).await;
                    turn += 1;
                }
                total
            })
        });
    });
}

criterion_group!(benches, bench);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    } else {
        // `cargo test --benches`: criterion would run each bench once and check nothing.
        assert_target();
    }
}
