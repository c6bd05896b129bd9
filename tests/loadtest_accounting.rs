//! The load generator's frame accounting against the bridge's own: echo calls that hang up
//! while the echo is playing, through `voxbridge_sim::loadtest::run`, against a real bridge on
//! 127.0.0.1. Every frame the generator sent must be one the bridge processed, and every frame
//! the bridge sent must be one the generator received (what `scripts/soak.sh` checks on
//! `voxbridge serve`'s stored call summaries); the per-second timeline carries the server's RSS.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{AUTH_TOKEN, start_bridge, utterance_mulaw};
use voxbridge_sim::loadtest::{LoadConfig, Mode, run};
use voxbridge_sim::ws::Route;

const CALLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_is_accounted_for_on_both_sides() {
    let bridge = start_bridge(|_| {}).await;
    let config = LoadConfig {
        mode: Mode::MediaEcho,
        url: format!("wss://{}/media", bridge.addr),
        route: Route::default(),
        auth_token: Some(AUTH_TOKEN.into()),
        agent: "echo".to_owned(),
        calls: CALLS,
        ramp_up: Duration::from_millis(500),
        // The ~3.1 s utterance starts 0.2-1.2 s in and its echo 0.6 s after it ends: every
        // call hangs up while its echo is still playing.
        duration: Duration::from_secs(6),
        utterance: Arc::from(utterance_mulaw(0)),
        answers: Vec::new(),
        think: Duration::from_millis(300),
        relay_parameters: BTreeMap::new(),
        server_pid: Some(std::process::id()),
        progress: false,
    };
    let (report, recorder) = run(config).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.counters["calls_completed"], CALLS as u64);
    assert_eq!(report.counters["calls_failed"], 0);

    // The sink runs once each session has finished.
    let records = bridge.records.wait_for(CALLS).await;
    assert_eq!(records.len(), CALLS, "one record per call");
    let frames_in: u64 = records.iter().map(|r| r.summary.frames_in).sum();
    let frames_out: u64 = records.iter().map(|r| r.summary.frames_out).sum();
    let sent = recorder.frames_sent.load(Ordering::Relaxed);
    let received = recorder.media_received.load(Ordering::Relaxed);
    // 6 s of 20 ms frames per call; a few seconds of echo each.
    assert!(sent >= CALLS as u64 * 290, "sent {sent}");
    assert!(frames_out >= CALLS as u64 * 50, "bridge sent {frames_out}");
    assert_eq!(
        sent, frames_in,
        "caller frames sent vs processed by the bridge"
    );
    assert_eq!(received, frames_out, "bridge frames sent vs received");
    assert_eq!(report.counters["media_received"], received);
    assert!(report.counters["media_after_hangup"] <= received);

    // The server's RSS, second by second.
    assert!(
        report.timeline.len() >= 5,
        "{} seconds",
        report.timeline.len()
    );
    assert!(
        report
            .timeline
            .iter()
            .all(|s| s.server_rss_kib.is_some_and(|kib| kib > 0)),
        "{:?}",
        report.timeline
    );
    bridge.shutdown.cancel();
}
