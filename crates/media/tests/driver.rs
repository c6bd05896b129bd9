//! The call driver without a socket: `drive_call` over in-memory `Sink`/`Stream` halves, on
//! paused tokio time, for peers that stop reading or vanish.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use futures::Sink;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use tokio::time::Instant;
use voxbridge_brain::Agents;
use voxbridge_media::{MediaConfig, MediaState, drive_call};
use voxbridge_session::{EndReason, SessionConfig};
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

/// A peer that accepts `capacity` frames and then never reads again.
#[derive(Clone)]
struct StuckPeer {
    accepted: Arc<AtomicUsize>,
    capacity: usize,
}

impl Sink<Message> for StuckPeer {
    type Error = Infallible;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.accepted.load(Ordering::SeqCst) < self.capacity {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn start_send(self: Pin<&mut Self>, _item: Message) -> Result<(), Infallible> {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

fn state(send_timeout_ms: u64) -> MediaState {
    MediaState::new(
        MediaConfig {
            insecure_skip_signature: true,
            send_timeout: Duration::from_millis(send_timeout_ms),
            ..MediaConfig::default()
        },
        Agents::builtin(),
    )
    .expect("valid config")
}

#[allow(clippy::unnecessary_wraps)] // the stream's item type
fn text(s: &str) -> Result<Message, Infallible> {
    Ok(Message::Text(s.to_owned().into()))
}

/// Sends `connected`, `start` and `seconds` of the speech fixture, all at once.
fn feed_call(tx: &UnboundedSender<Result<Message, Infallible>>, seconds: usize) -> CallSid {
    let call_sid = CallSid::new(format!("CA{:032x}", 0xD1)).expect("valid SID");
    let mut twilio =
        TwilioEncoder::new(StreamSid::new(format!("MZ{:032x}", 0xD1)).expect("valid SID"));
    let account = AccountSid::new(format!("AC{:032x}", 1)).expect("valid SID");
    tx.unbounded_send(text(twilio.connected()))
        .expect("driver listening");
    let params = BTreeMap::from([("agent".to_owned(), "echo".to_owned())]);
    tx.unbounded_send(text(twilio.start(
        account,
        call_sid.clone(),
        vec![Track::Inbound],
        params,
    )))
    .expect("driver listening");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/speech_clean_8k.wav"
    );
    let (pcm, _) = voxbridge_audio::wav::read_wav(path).expect("fixture readable");
    let mut mulaw = Vec::new();
    voxbridge_audio::mulaw::encode(&pcm[..seconds * 8000], &mut mulaw);
    for (i, frame) in mulaw.chunks(160).enumerate() {
        let i = i as u64;
        tx.unbounded_send(text(twilio.media(Track::Inbound, i + 1, i * 20, frame)))
            .expect("driver listening");
    }
    call_sid
}

#[tokio::test(start_paused = true)]
async fn peer_that_stops_reading_is_torn_down_within_the_send_timeout() {
    let state = state(2000);
    let peer = StuckPeer {
        accepted: Arc::default(),
        capacity: 0,
    };
    let (tx, rx) = unbounded();
    let call_sid = feed_call(&tx, 5);
    let began = Instant::now();
    let driver = tokio::spawn(drive_call(state.clone(), peer.clone(), rx));

    // The echo's first frame is written at once (all speech was fed at t = 0) and never
    // completes; the call must end as a slow peer within the 2 s send timeout.
    let summary = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    let took = began.elapsed();
    assert_eq!(summary.end_reason, Some(EndReason::SlowPeer));
    assert_eq!(summary.call_sid.as_deref(), Some(call_sid.as_str()));
    assert!(summary.utterances >= 1, "the echo had something to send");
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2100),
        "torn down after {took:?}"
    );
    assert!(state.registry().is_empty());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn vanished_peer_ends_on_idle_timeout_and_unregisters() {
    let state = state(1000);
    let peer = StuckPeer {
        accepted: Arc::default(),
        capacity: 0,
    };
    let (tx, rx) = unbounded();
    // No speech: nothing is ever written, and after `start` the peer goes silent.
    let call_sid = feed_call(&tx, 0);
    let driver = tokio::spawn(drive_call(state.clone(), peer, rx));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        state
            .registry()
            .by_call_sid(call_sid.as_str())
            .map(|c| c.agent),
        Some("echo".to_owned())
    );
    let summary = tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    assert_eq!(summary.end_reason, Some(EndReason::IdleTimeout));
    assert!(state.registry().is_empty());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn stream_end_is_a_socket_close() {
    let state = state(1000);
    let peer = StuckPeer {
        accepted: Arc::default(),
        capacity: usize::MAX,
    };
    let (tx, rx) = unbounded();
    feed_call(&tx, 1);
    drop(tx);
    let summary = drive_call(state.clone(), peer.clone(), rx).await;
    assert_eq!(summary.end_reason, Some(EndReason::SocketClosed));
    assert!(summary.frames_in >= 49, "{} frames", summary.frames_in);
    assert!(state.registry().is_empty());
}

/// A brain that produces 10 s of audio as fast as its channel takes it, and records how long
/// (in virtual time) its last send took to go through.
struct Flood {
    sent_all_after: Arc<std::sync::Mutex<Option<Duration>>>,
}

impl voxbridge_brain::BrainFactory for Flood {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn start(
        &self,
        _call: &voxbridge_brain::CallInfo,
    ) -> Result<Box<dyn voxbridge_brain::Brain>, voxbridge_brain::BrainError> {
        Ok(Box::new(Flood {
            sent_all_after: self.sent_all_after.clone(),
        }))
    }
}

impl voxbridge_brain::Brain for Flood {
    fn run(
        self: Box<Self>,
        mut io: voxbridge_brain::BrainIo,
    ) -> voxbridge_brain::BoxFuture<voxbridge_brain::BrainResult> {
        use voxbridge_brain::{BrainEvent, Command, TurnId};
        Box::pin(async move {
            while let Some(event) = io.events.recv().await {
                if matches!(event, BrainEvent::CallStarted(_)) {
                    break;
                }
            }
            let began = Instant::now();
            let turn = TurnId(1);
            for _ in 0..100 {
                let audio = Command::Audio {
                    turn,
                    pcm: vec![4000; 800],
                    sample_rate: 8000,
                };
                if io.commands.send(audio).await.is_err() {
                    return Ok(None);
                }
            }
            let text = "ten seconds of audio".to_owned();
            let _ = io.commands.send(Command::ChunkEnd { turn, text }).await;
            let _ = io.commands.send(Command::TurnEnd { turn }).await;
            *self.sent_all_after.lock().expect("not poisoned") = Some(began.elapsed());
            io.cancel.cancelled().await;
            Ok(None)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_brain_faster_than_real_time_waits_for_playout() {
    let sent_all_after = Arc::new(std::sync::Mutex::new(None));
    let state = MediaState::new(
        MediaConfig {
            insecure_skip_signature: true,
            default_agent: "flood".to_owned(),
            session: SessionConfig {
                idle_timeout: Duration::from_secs(60),
                ..SessionConfig::default()
            },
            ..MediaConfig::default()
        },
        Agents::new().with(Flood {
            sent_all_after: sent_all_after.clone(),
        }),
    )
    .expect("valid config");
    let peer = StuckPeer {
        accepted: Arc::default(),
        capacity: usize::MAX,
    };
    let (tx, rx) = unbounded();
    let mut twilio =
        TwilioEncoder::new(StreamSid::new(format!("MZ{:032x}", 0xF1)).expect("valid SID"));
    tx.unbounded_send(text(twilio.connected()))
        .expect("driver listening");
    let params = BTreeMap::from([("agent".to_owned(), "flood".to_owned())]);
    tx.unbounded_send(text(twilio.start(
        AccountSid::new(format!("AC{:032x}", 1)).expect("valid SID"),
        CallSid::new(format!("CA{:032x}", 0xF1)).expect("valid SID"),
        vec![Track::Inbound],
        params,
    )))
    .expect("driver listening");
    let driver = tokio::spawn(drive_call(state.clone(), peer.clone(), rx));

    let deadline = Instant::now() + Duration::from_secs(30);
    let took = loop {
        if let Some(took) = *sent_all_after.lock().expect("not poisoned") {
            break took;
        }
        assert!(
            Instant::now() < deadline,
            "the brain never finished sending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // 10 s of audio plays in real time; the brain may run ahead by at most the driver's
    // high-water mark (1 s queued), its command channel (8 x 100 ms) and the playout lead
    // (100 ms). Without backpressure its sends would all complete at once.
    assert!(
        took >= Duration::from_secs(8),
        "the brain finished sending after {took:?}: it was not held back by playout"
    );
    // Meanwhile playout went on in real time: the frames sent cover the time the brain waited
    // (minus one frame of slack for the instant the brain's last send went through).
    let sent_ms = peer.accepted.load(Ordering::SeqCst) as u128 * 20;
    assert!(
        sent_ms + 20 >= took.as_millis(),
        "{sent_ms} ms of audio sent while the brain waited {took:?}"
    );
    drop(tx);
    let summary = tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    assert_eq!(summary.end_reason, Some(EndReason::SocketClosed));
}

/// A peer whose socket takes frames only while it has room, and wakes the driver when room is
/// given (as a real socket does when it drains); or one whose every write fails.
#[derive(Clone, Default)]
struct GatedPeer {
    inner: Arc<std::sync::Mutex<Gate>>,
}

#[derive(Default)]
struct Gate {
    room: usize,
    waker: Option<std::task::Waker>,
    taken: Vec<Message>,
    fail: bool,
}

impl GatedPeer {
    fn failing() -> Self {
        let peer = Self::default();
        peer.inner.lock().expect("not poisoned").fail = true;
        peer
    }

    /// Lets `frames` more frames through and wakes the writer.
    fn open(&self, frames: usize) {
        let mut gate = self.inner.lock().expect("not poisoned");
        gate.room = gate.room.saturating_add(frames);
        if let Some(waker) = gate.waker.take() {
            waker.wake();
        }
    }

    /// What the peer received, as `media` / `mark` / `clear` / `close`.
    fn kinds(&self) -> Vec<&'static str> {
        let gate = self.inner.lock().expect("not poisoned");
        gate.taken
            .iter()
            .map(|message| match message {
                Message::Text(text) if text.contains(r#""event":"media""#) => "media",
                Message::Text(text) if text.contains(r#""event":"mark""#) => "mark",
                Message::Text(text) if text.contains(r#""event":"clear""#) => "clear",
                Message::Close(_) => "close",
                _ => "other",
            })
            .collect()
    }
}

impl Sink<Message> for GatedPeer {
    type Error = String;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut gate = self.inner.lock().expect("not poisoned");
        if gate.fail {
            Poll::Ready(Err("connection reset by peer".into()))
        } else if gate.room > 0 {
            Poll::Ready(Ok(()))
        } else {
            gate.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), String> {
        let mut gate = self.inner.lock().expect("not poisoned");
        gate.room -= 1;
        gate.taken.push(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }
}

/// A 500 ms send timeout and an 8-frame send queue.
fn tight_state() -> MediaState {
    MediaState::new(
        MediaConfig {
            insecure_skip_signature: true,
            send_timeout: Duration::from_millis(500),
            send_queue_frames: 8,
            session: SessionConfig {
                idle_timeout: Duration::from_secs(60),
                ..SessionConfig::default()
            },
            ..MediaConfig::default()
        },
        Agents::builtin(),
    )
    .expect("valid config")
}

/// A reader that takes one frame from `peer` every `every`.
fn trickle(peer: &GatedPeer, every: Duration) -> tokio::task::JoinHandle<()> {
    let peer = peer.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            peer.open(1);
        }
    })
}

/// Waits (in virtual time) until the peer has received the echo turn's mark.
async fn until_mark(peer: &GatedPeer, within: Duration) {
    let deadline = Instant::now() + within;
    while !peer.kinds().contains(&"mark") {
        assert!(Instant::now() < deadline, "no mark within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The echo turn went out whole and in order: its audio, its mark, and the close frame last.
fn assert_whole_turn_then_close(peer: &GatedPeer) {
    let kinds = peer.kinds();
    let mark = kinds.iter().position(|k| *k == "mark").expect("mark sent");
    assert!(mark >= 100, "only {mark} frames of echo before the mark");
    assert!(
        kinds[..mark].iter().all(|k| *k == "media"),
        "the mark follows the turn's audio: {:?}",
        &kinds[..mark]
    );
    assert_eq!(kinds.last(), Some(&"close"), "the close frame comes last");
    assert_eq!(kinds.iter().filter(|k| **k == "close").count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_pauses_within_the_send_timeout_keeps_its_call_and_every_frame() {
    let state = state(2000);
    let peer = GatedPeer::default();
    let (tx, rx) = unbounded();
    feed_call(&tx, 5);
    let driver = tokio::spawn(drive_call(state.clone(), peer.clone(), rx));

    // The echo starts at once, but the peer reads nothing for 1.5 s: more than the 64-frame
    // queue's worth of audio comes due meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        peer.kinds().is_empty(),
        "nothing got through the closed gate"
    );
    peer.open(usize::MAX / 2);
    until_mark(&peer, Duration::from_secs(30)).await;
    drop(tx);

    let summary = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    assert_eq!(summary.end_reason, Some(EndReason::SocketClosed));
    assert_whole_turn_then_close(&peer);
    assert!(state.registry().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_slower_than_real_time_is_not_a_slow_peer() {
    // A 500 ms send timeout and an 8-frame queue, and a peer that takes one frame every
    // 30 ms: its queue stays full for the whole turn, but every frame it takes shows it is
    // reading.
    let state = tight_state();
    let peer = GatedPeer::default();
    let reader = trickle(&peer, Duration::from_millis(30));
    let (tx, rx) = unbounded();
    feed_call(&tx, 5);
    let driver = tokio::spawn(drive_call(state.clone(), peer.clone(), rx));
    until_mark(&peer, Duration::from_secs(60)).await;
    drop(tx);

    let summary = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    reader.abort();
    assert_eq!(summary.end_reason, Some(EndReason::SocketClosed));
    assert_whole_turn_then_close(&peer);
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_ends_the_call_as_a_socket_close() {
    let state = state(2000);
    let peer = GatedPeer::failing();
    let (tx, rx) = unbounded();
    feed_call(&tx, 5);
    let began = Instant::now();
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        drive_call(state.clone(), peer.clone(), rx),
    )
    .await
    .expect("driver ends");
    assert_eq!(summary.end_reason, Some(EndReason::SocketClosed));
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "ended after {:?}",
        began.elapsed()
    );
    assert!(peer.kinds().is_empty());
    assert!(state.registry().is_empty());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_forced_close_is_not_held_up_by_a_trickling_reader() {
    // The peer takes one frame every 400 ms with a 500 ms send timeout: it is reading, so it
    // is not a slow peer, but its 8-frame queue stays full. At the end of a drain the call
    // must still end within one send timeout (closing it), not when the peer has read it all.
    let state = tight_state();
    let peer = GatedPeer::default();
    let reader = trickle(&peer, Duration::from_millis(400));
    let (tx, rx) = unbounded();
    feed_call(&tx, 5);
    let driver = tokio::spawn(drive_call(state.clone(), peer.clone(), rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let taken = peer.kinds().len();
    assert!(
        (5..=9).contains(&taken),
        "the peer read {taken} frames in 3 s"
    );

    let forced = Instant::now();
    state.close_all();
    let summary = tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .expect("driver ends")
        .expect("driver does not panic");
    let took = forced.elapsed();
    reader.abort();
    assert_eq!(summary.end_reason, Some(EndReason::Shutdown));
    assert!(
        took <= Duration::from_millis(600),
        "the call ended {took:?} after the forced close"
    );
    drop(tx);
}
