//! ConversationRelay sessions over real sockets on 127.0.0.1: Twilio's side sends the
//! documented messages (reference/twilio-protocols.md section 2), the scripted screening agent
//! answers.

mod common;
mod relay_common;

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use relay_common::{Relay, ScreeningOf, connect_relay, setup_json, start, start_with};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_media::{MediaConfig, RelayEnd};
use voxbridge_screening::{AnswerStatus, AnswerValue, Outcome, Speaker};
use voxbridge_session::SessionConfig;
use voxbridge_session::relay::Handoff;

const SECOND: Duration = Duration::from_secs(1);

/// A binary frame the size of a Media Streams payload: ConversationRelay only sends text.
async fn send_binary(twilio: &mut Relay) {
    twilio
        .ws
        .send(Message::binary(vec![0xFF_u8; 160]))
        .await
        .expect("send a binary frame");
}

#[tokio::test]
async fn happy_path_is_qualified_and_recorded() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    let greeting = twilio.setup("CA10000000000000000000000000000001").await;
    assert!(greeting.contains("Hi Ana"), "{greeting}");
    assert!(greeting.contains("legally authorized"), "{greeting}");
    assert!(twilio.say("yep, I am").await.contains("at least 18"));
    assert!(twilio.say("yes").await.contains("forklift"));
    assert!(twilio.say("about five years").await.contains("shift"));
    assert!(twilio.say("nights").await.contains("start"));
    assert!(twilio.say("in two weeks").await.contains("transportation"));
    let closing = twilio.say("absolutely").await;
    assert!(closing.contains("meet the requirements"), "{closing}");
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "screening-complete");
    twilio.close().await;

    let record = server.sessions.wait_one().await;
    // The record's end is the handoff the dialog ended with.
    let end = record.screening().unwrap().end.clone().unwrap();
    assert_eq!(
        record.end,
        RelayEnd::Agent(Handoff::new(end.reason_code, end.reason))
    );
    assert_eq!(record.call_sid, "CA10000000000000000000000000000001");
    assert_eq!(record.session_id, "VX00000000000000000000000000000000");
    assert_eq!(record.from, "+18005550100");
    assert_eq!(record.direction.as_deref(), Some("outbound-api"));
    let result = record.screening().expect("a dialog ran");
    assert_eq!(result.outcome, Some(Outcome::Qualified));
    assert_eq!(result.candidate_id.as_deref(), Some("cand-42"));
    assert_eq!(result.answers.len(), 6);
    let forklift = result.answer("forklift_years").expect("answered");
    assert_eq!(forklift.raw, "about five years");
    assert!(
        matches!(forklift.value, Some(AnswerValue::Number { value, .. }) if (value - 5.0).abs() < f64::EPSILON)
    );
    assert!(forklift.confidence > 0.5);
    assert_eq!(record.caller_turns, 6);
    assert_eq!(record.bot_turns, 7);
    // Transcript: greeting, then caller/bot alternating, times from the session start.
    assert_eq!(result.transcript.len(), 13);
    assert_eq!(result.transcript[1].speaker, Speaker::Caller);
    assert!(
        result
            .transcript
            .windows(2)
            .all(|w| w[0].at_ms <= w[1].at_ms)
    );
    assert_eq!(
        server.state.registry().count(),
        0,
        "unregistered at the end"
    );
    // Six prompts, six replies: each timed from the prompt to the reply's first text token
    // (the greeting answers no prompt).
    let metrics = raw_get(server.addr, "/metrics").await;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let count = value("voxbridge_relay_prompt_first_text_seconds_count");
    assert!((count - 6.0).abs() < f64::EPSILON, "{count}");
    assert!(value("voxbridge_relay_prompt_first_text_seconds_sum") < 6.0);
    server.stop().await;
}

#[tokio::test]
async fn text_tokens_have_the_documented_shape() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio
        .send(&setup_json("CA10000000000000000000000000000002", "default"))
        .await;
    let message = twilio.next_json().await;
    assert_eq!(message["type"], "text");
    assert!(message["token"].as_str().unwrap().starts_with("Hi Ana"));
    assert_eq!(message["last"], true);
    assert_eq!(message["interruptible"], true);
    assert_eq!(message["preemptible"], true);
    // While the session is live it is registered (and counted by /healthz).
    assert_eq!(server.state.registry().count(), 1);
    let entry = server
        .state
        .registry()
        .by_call_sid("CA10000000000000000000000000000002")
        .expect("registered");
    assert_eq!(entry.stream_sid, "VX00000000000000000000000000000000");
    assert_eq!(entry.agent, "screening");
    let health: serde_json::Value = reqwest_like_get(server.addr, "/healthz").await;
    assert_eq!(health["calls"], 1);
    twilio.close().await;
    server.sessions.wait_one().await;
    server.stop().await;
}

/// A plain HTTP GET over a raw TCP socket (no HTTP client dependency), its body as JSON.
async fn reqwest_like_get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    serde_json::from_str(&raw_get(addr, path).await).expect("JSON body")
}

/// A plain HTTP GET over a raw TCP socket: the body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
        .split_once("\r\n\r\n")
        .expect("a body")
        .1
        .to_owned()
}

#[tokio::test]
async fn knock_out_ends_with_knock_out_reason() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000003").await;
    let line = twilio.say("no, I'm not authorized").await;
    assert!(line.contains("requires work authorization"), "{line}");
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "knock-out");
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    let result = record.screening().unwrap();
    assert_eq!(result.outcome, Some(Outcome::NotQualified));
    assert_eq!(result.answers[0].status, AnswerStatus::Rejected);
    server.stop().await;
}

#[tokio::test]
async fn unclear_answer_is_reasked_then_parsed() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000004").await;
    twilio.say("yes").await;
    twilio.say("yes").await;
    let reask = twilio.say("banana").await;
    assert!(reask.contains("didn't quite catch"), "{reask}");
    assert!(reask.contains("forklift"), "{reask}");
    assert!(twilio.say("three years").await.contains("shift"));
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    let forklift = result.answer("forklift_years").unwrap();
    assert_eq!(forklift.reasks, 1);
    assert!(
        matches!(forklift.value, Some(AnswerValue::Number { value, .. }) if (value - 3.0).abs() < f64::EPSILON)
    );
    assert_eq!(
        result.outcome,
        Some(Outcome::Incomplete),
        "hung up mid-interview"
    );
    server.stop().await;
}

#[tokio::test]
async fn interruption_truncates_the_bot_turn_and_reasks() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000005").await;
    twilio
        .send(r#"{ "type": "interrupt", "utteranceUntilInterrupt": "Hi Ana, this is Vox", "durationUntilInterruptMs": 460 }"#)
        .await;
    // The caller did not hear the question: the answer is not taken, the question is re-asked.
    let reask = twilio.say("yes").await;
    assert!(reask.contains("let me finish the question"), "{reask}");
    assert!(reask.contains("legally authorized"), "{reask}");
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    let greeting = &result.transcript[0];
    assert!(greeting.interrupted);
    assert_eq!(greeting.text, "Hi Ana, this is Vox");
    assert!(result.answers.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn dtmf_answers_are_recorded() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000006").await;
    twilio.send(r#"{ "type": "dtmf", "digit": "1" }"#).await;
    assert!(twilio.turn().await.contains("at least 18"));
    twilio.send(r#"{ "type": "dtmf", "digit": "1" }"#).await;
    assert!(twilio.turn().await.contains("forklift"));
    twilio.send(r#"{ "type": "dtmf", "digit": "1" }"#).await;
    twilio.send(r#"{ "type": "dtmf", "digit": "2" }"#).await;
    twilio.send(r##"{ "type": "dtmf", "digit": "#" }"##).await;
    assert!(twilio.turn().await.contains("shift"));
    twilio.send(r#"{ "type": "dtmf", "digit": "2" }"#).await;
    assert!(twilio.turn().await.contains("start"));
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    let forklift = result.answer("forklift_years").unwrap();
    assert_eq!(forklift.raw, "dtmf:12#");
    assert!(
        matches!(forklift.value, Some(AnswerValue::Number { value, .. }) if (value - 12.0).abs() < f64::EPSILON)
    );
    assert_eq!(
        result.answer("shift_preference").unwrap().value,
        Some(AnswerValue::Choice {
            option: "night".into()
        })
    );
    server.stop().await;
}

#[tokio::test]
async fn handoff_request_ends_with_live_agent_handoff() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000007").await;
    twilio.say("yes").await;
    let line = twilio.say("actually can I talk to a real person").await;
    assert!(line.contains("connect you"), "{line}");
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "live-agent-handoff");
    assert!(handoff["reason"].as_str().unwrap().contains("person"));
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert!(
        matches!(&record.end, RelayEnd::Agent(reason) if reason.reason_code == "live-agent-handoff")
    );
    assert_eq!(record.screening().unwrap().outcome, Some(Outcome::Handoff));
    server.stop().await;
}

#[tokio::test]
async fn callback_request_ends_with_callback_reason() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000008").await;
    twilio
        .say("sorry, I'm driving, can you call me later")
        .await;
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "callback-requested");
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    assert_eq!(result.outcome, Some(Outcome::CallbackRequested));
    server.stop().await;
}

#[tokio::test]
async fn caller_hanging_up_mid_interview_keeps_what_was_gathered() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000009").await;
    twilio.say("yes").await;
    twilio.say("yes").await;
    // The socket just drops: no close handshake.
    drop(twilio);
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::CallerHungUp);
    let result = record.screening().unwrap();
    assert_eq!(result.outcome, Some(Outcome::Incomplete));
    assert_eq!(result.answers.len(), 2);
    assert!(result.ended_at_ms.is_some());
    server.stop().await;
}

#[tokio::test]
async fn isolated_malformed_messages_are_survived_and_a_run_closes_1007() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000010").await;
    for _ in 0..9 {
        twilio.send(r#"{"type":"bogus"}"#).await;
    }
    // Nine in a row, then a good message: the session goes on and the run resets.
    assert!(twilio.say("yes").await.contains("at least 18"));
    for bad in [
        "not json",
        r#"{"voicePrompt":"no type"}"#,
        r#"{"type":"prompt"}"#,
        r#"{"type":"text","token":"wrong direction"}"#,
        r#"{ "type": "setup", "sessionId": "VX00000000000000000000000000000000" }"#,
    ] {
        twilio.send(bad).await;
        twilio.send(bad).await;
    }
    let close = twilio.expect_close().await;
    assert_eq!(close, Some(1007));
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::Malformed);
    assert_eq!(record.bad_messages, 19);
    assert_eq!(record.screening().unwrap().answers.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_signature_is_refused_with_403() {
    let server = start().await;
    assert_eq!(
        connect_relay(server.addr, Some("bm90IHRoZSBzaWduYXR1cmU="))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(connect_relay(server.addr, None).await.err(), Some(403));
    // Signed for /media, used on /relay.
    let media = relay_common::sign("/media");
    assert_eq!(
        connect_relay(server.addr, Some(&media)).await.err(),
        Some(403)
    );
    assert!(server.sessions.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn partial_prompts_do_not_start_a_turn() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000011").await;
    twilio
        .send(r#"{ "type": "prompt", "voicePrompt": "No", "lang": "en-US", "last": false }"#)
        .await;
    twilio
        .send(r#"{ "type": "prompt", "voicePrompt": "No wait, yes", "lang": "en-US", "last": false }"#)
        .await;
    twilio.expect_quiet(Duration::from_millis(300)).await;
    // The final prompt carries the whole text: "no" in the partials must not knock out.
    twilio
        .send(r#"{ "type": "prompt", "voicePrompt": "yes I am", "lang": "en-US", "last": true }"#)
        .await;
    assert!(twilio.turn().await.contains("at least 18"));
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    assert_eq!(result.answers.len(), 1);
    assert_eq!(result.answers[0].raw, "yes I am");
    server.stop().await;
}

#[tokio::test]
async fn silence_reprompts_then_ends_no_answer() {
    let server = relay_common::start_with_silence(300).await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000012").await;
    // max_silences = 2: two "are you still there" re-asks, then the end.
    assert!(twilio.turn().await.contains("still there"));
    assert!(twilio.turn().await.contains("still there"));
    twilio.turn().await;
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "no-answer");
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    assert_eq!(result.outcome, Some(Outcome::NoAnswer));
    server.stop().await;
}

#[tokio::test]
async fn unknown_screening_ends_the_session_with_a_reason() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio
        .send(&setup_json(
            "CA10000000000000000000000000000013",
            "no-such-script",
        ))
        .await;
    let handoff = twilio.expect_end().await;
    assert_eq!(handoff["reasonCode"], "agent-unavailable");
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert!(matches!(record.end, RelayEnd::Refused(ref why) if why.contains("no-such-script")));
    assert!(record.outcome.is_none());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drains_live_sessions() {
    let mut server = start().await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000014").await;
    server.shutdown.cancel();
    // Draining: a new upgrade is refused, the live session continues.
    assert_eq!(
        connect_relay(server.addr, Some(&relay_common::sign("/relay")))
            .await
            .err(),
        Some(503)
    );
    assert!(twilio.say("yes").await.contains("at least 18"));
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::CallerHungUp);
    (&mut server.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn binary_frames_and_messages_before_setup_are_bad_messages_the_session_survives() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    // Before `setup`: a prompt and a binary frame are malformed and skipped.
    twilio
        .send(r#"{ "type": "prompt", "voicePrompt": "hello?", "lang": "en-US", "last": true }"#)
        .await;
    send_binary(&mut twilio).await;
    let greeting = twilio.setup("CA10000000000000000000000000000015").await;
    assert!(greeting.contains("legally authorized"), "{greeting}");
    // After `setup`: a binary frame is skipped, the interview goes on.
    send_binary(&mut twilio).await;
    assert!(twilio.say("yes").await.contains("at least 18"));
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::CallerHungUp);
    assert_eq!(record.bad_messages, 3);
    // The prompt before `setup` was no caller turn.
    assert_eq!(record.caller_turns, 1);
    assert_eq!(record.screening().unwrap().answers.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_run_of_binary_frames_closes_1007_at_the_tenth() {
    let server = start().await;
    let mut twilio = Relay::open(&server).await;
    // Nine in a row before `setup` leave the session alive: `setup` is still answered.
    for _ in 0..9 {
        send_binary(&mut twilio).await;
    }
    twilio.setup("CA10000000000000000000000000000016").await;
    for _ in 0..10 {
        send_binary(&mut twilio).await;
    }
    assert_eq!(twilio.expect_close().await, Some(1007));
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::Malformed);
    assert_eq!(record.end.label(), "malformed-messages");
    assert_eq!(record.bad_messages, 19);
    assert_eq!(record.call_sid, "CA10000000000000000000000000000016");
    assert_eq!(
        relay_common::metric(
            &server.state,
            "voxbridge_calls_ended_total{transport=\"relay\",reason=\"malformed-messages\"} "
        ),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn max_call_duration_sends_end_max_duration_and_records_it() {
    let max = Duration::from_millis(1500);
    let server = start_with(
        Arc::new(relay_common::screenings()),
        MediaConfig {
            session: SessionConfig {
                max_call_duration: max,
                ..SessionConfig::default()
            },
            ..relay_common::config()
        },
    )
    .await;
    let opened = Instant::now();
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA10000000000000000000000000000017").await;
    assert!(twilio.say("yes").await.contains("at least 18"));
    // The caller then says nothing; the silence timeout (8 s) is far off.
    let handoff = twilio.expect_end().await;
    let at = opened.elapsed();
    assert!(at >= max, "end after {at:?}, before {max:?}");
    assert!(at < max + SECOND / 2, "end after {at:?}, {max:?} promised");
    assert_eq!(handoff["reasonCode"], "max-duration");
    assert_eq!(handoff["reason"], "Maximum call duration reached");
    // Twilio closes after `end`.
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert_eq!(record.end, RelayEnd::MaxDuration);
    assert_eq!(record.end.label(), "max-duration");
    assert!(record.duration >= max, "{:?}", record.duration);
    let result = record.screening().expect("a dialog ran");
    assert_eq!(result.outcome, Some(Outcome::Incomplete));
    assert_eq!(result.answers.len(), 1);
    assert_eq!(
        relay_common::metric(
            &server.state,
            "voxbridge_calls_ended_total{transport=\"relay\",reason=\"max-duration\"} "
        ),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn after_the_drain_deadline_live_sessions_close_1001_and_are_recorded() {
    let drain = Duration::from_millis(600);
    let mut server = start_with(
        Arc::new(relay_common::screenings()),
        MediaConfig {
            drain_timeout: drain,
            ..relay_common::config()
        },
    )
    .await;
    let mut live = Relay::open(&server).await;
    live.setup("CA10000000000000000000000000000018").await;
    // A second socket that has not sent `setup` yet.
    let mut early = Relay::open(&server).await;
    common::eventually(SECOND, "both sockets counted", || {
        server.state.connections() == 2
    })
    .await;
    let began = Instant::now();
    server.shutdown.cancel();
    // During the drain the live session goes on.
    assert!(live.say("yes").await.contains("at least 18"));
    assert_eq!(live.expect_close().await, Some(1001));
    assert_eq!(early.expect_close().await, Some(1001));
    let closed = began.elapsed();
    assert!(closed >= drain, "closed after {closed:?}, drain {drain:?}");
    assert!(
        closed < drain + SECOND,
        "closed after {closed:?}, drain {drain:?}"
    );
    (&mut server.task)
        .await
        .expect("server task")
        .expect("serve returns Ok after the drain");
    // Both records went to the sink before `serve` returned.
    let records = server.sessions.0.lock().expect("not poisoned").clone();
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record.end, RelayEnd::Shutdown);
        assert_eq!(record.end.label(), "shutdown");
    }
    let gathered = records
        .iter()
        .find(|r| r.call_sid == "CA10000000000000000000000000000018")
        .expect("the live session's record");
    let result = gathered.screening().expect("a dialog ran");
    assert_eq!(result.outcome, Some(Outcome::Incomplete));
    assert_eq!(result.answers.len(), 1);
    assert_eq!(gathered.bot_turns, 2);
    assert!(
        records
            .iter()
            .any(|r| r.call_sid.is_empty() && r.agent.is_none()),
        "the session without setup: {records:?}"
    );
    assert_eq!(
        relay_common::metric(
            &server.state,
            "voxbridge_calls_ended_total{transport=\"relay\",reason=\"shutdown\"} "
        ),
        2
    );
    assert_eq!(server.state.connections(), 0);
}
