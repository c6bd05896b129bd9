//! In-process stand-in providers with fixed, configurable latencies and fault injection: the
//! voice pipeline's tests, the overhead benchmark and load tests use them. They speak the
//! provider traits, not a wire protocol (the OpenAI stand-in server covers the wire).
//!
//! - [`FakeAsr`]: answers each utterance after `latency` with the next scripted transcript.
//! - [`FakeLlm`]: streams a scripted reply word by word: first token after `first_token`,
//!   then one every `token_gap`.
//! - [`FakeTts`]: streams a tone whose length is proportional to the text
//!   (`audio_per_char`), in `chunk`-long pieces: first after `first_byte`, then one every
//!   `chunk_gap`.
//!
//! Each counts requests, pieces produced, and streams dropped before they finished
//! ([`FakeStats`]), so a test can prove that a cancel stopped the work. Faults are queued per
//! provider ([`Fault`]) and consumed by the next requests. Streams are lazy: nothing is
//! produced unless the consumer polls, exactly like a dropped HTTP body.
//!
//! Latencies are waited out on a [`Clock`]: tokio's timer by default (tests pause it and run in
//! virtual time), or [`Clock::Wall`] for measurements, where a reply is released at its exact
//! deadline like a response arriving from the network (tokio's timer rounds each sleep up to
//! the next millisecond tick, which a benchmark would otherwise count as pipeline overhead).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::{self, BoxStream};

use super::{
    Asr, AsrEvent, AsrRequest, AudioChunk, ChatRequest, FinishReason, Llm, LlmEvent, ProviderError,
    Role, Tts, TtsRequest,
};

/// What the next request to a fake provider does instead of succeeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Waits the provider's first latency, then fails with this error.
    Fail(ProviderError),
    /// Never answers (the caller's timeout must fire).
    Hang,
}

/// Counters of one fake provider.
#[derive(Debug, Default)]
pub struct FakeStats {
    /// Requests started.
    pub requests: AtomicU64,
    /// Pieces produced (transcripts, tokens or audio chunks).
    pub pieces: AtomicU64,
    /// Streams dropped before they finished (cancelled).
    pub cancelled: AtomicU64,
    /// Streams open right now.
    pub open: AtomicU64,
}

impl FakeStats {
    fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::SeqCst)
    }

    /// Requests started.
    pub fn requests(&self) -> u64 {
        Self::get(&self.requests)
    }

    /// Pieces produced.
    pub fn pieces(&self) -> u64 {
        Self::get(&self.pieces)
    }

    /// Streams dropped before they finished.
    pub fn cancelled(&self) -> u64 {
        Self::get(&self.cancelled)
    }

    /// Streams open now.
    pub fn open(&self) -> u64 {
        Self::get(&self.open)
    }
}

/// Tracks one stream: open while alive, counted as cancelled if dropped unfinished.
#[derive(Debug)]
struct Live {
    stats: Arc<FakeStats>,
    finished: bool,
}

impl Live {
    fn new(stats: &Arc<FakeStats>) -> Self {
        stats.requests.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        Self {
            stats: Arc::clone(stats),
            finished: false,
        }
    }

    /// Marks the stream finished (a method, so closures capture the whole guard).
    fn finish(&mut self) {
        self.finished = true;
    }

    fn piece(&self) {
        self.stats.pieces.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Shared fault queue and stats.
#[derive(Debug, Default)]
struct Control {
    faults: Mutex<VecDeque<Fault>>,
    stats: Arc<FakeStats>,
}

impl Control {
    fn next_fault(&self) -> Option<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn push(&self, fault: Fault, times: usize) {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        faults.extend(std::iter::repeat_n(fault, times));
    }
}

/// How the fakes wait out their latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// tokio's timer: follows paused (virtual) time in tests. Each wait ends on the timer's
    /// next 1 ms tick, so it lasts up to about 1 ms longer than asked.
    #[default]
    Tokio,
    /// Wall-clock deadlines kept by one shared thread, which releases each wait within tens of
    /// microseconds of its deadline: the reply then reaches the runtime the way a network
    /// response would, so only the runtime's own scheduling delay follows. For benchmarks;
    /// ignores paused time.
    Wall,
}

impl Clock {
    /// Waits `d` on this clock.
    pub async fn sleep(self, d: Duration) {
        match self {
            Self::Tokio => tokio::time::sleep(d).await,
            Self::Wall => wall_sleep(d).await,
        }
    }
}

/// A wait registered with the wall-clock thread.
struct Deadline {
    at: Instant,
    seq: u64,
    wake: tokio::sync::oneshot::Sender<()>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The wall-clock thread's queue; started on first use, lives for the process.
fn wall_clock() -> &'static mpsc::Sender<Deadline> {
    static CLOCK: OnceLock<mpsc::Sender<Deadline>> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Deadline>();
        std::thread::Builder::new()
            .name("fake-wall-clock".into())
            .spawn(move || {
                let mut due: BinaryHeap<Reverse<Deadline>> = BinaryHeap::new();
                loop {
                    let now = Instant::now();
                    while due.peek().is_some_and(|Reverse(d)| d.at <= now) {
                        if let Some(Reverse(d)) = due.pop() {
                            let _ = d.wake.send(());
                        }
                    }
                    let next = match due.peek() {
                        Some(Reverse(d)) => rx.recv_timeout(d.at - now),
                        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(d) => due.push(Reverse(d)),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawn the fake wall-clock thread");
        tx
    })
}

async fn wall_sleep(d: Duration) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (wake, woken) = tokio::sync::oneshot::channel();
    let deadline = Deadline {
        at: Instant::now() + d,
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
        wake,
    };
    // `Sender` is `Sync`: every call shares the one queue without a lock.
    if wall_clock().send(deadline).is_ok() {
        let _ = woken.await;
    }
}

/// Waits `latency` then yields the fault's error, or hangs forever.
async fn fault_outcome(clock: Clock, fault: Fault, latency: Duration) -> ProviderError {
    match fault {
        Fault::Fail(e) => {
            clock.sleep(latency).await;
            e
        }
        Fault::Hang => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------

/// A scripted recogniser.
#[derive(Debug)]
pub struct FakeAsr {
    latency: Duration,
    /// How the latency is waited out.
    pub clock: Clock,
    transcripts: Mutex<VecDeque<String>>,
    default: String,
    control: Control,
    requests: Mutex<Vec<AsrRequest>>,
}

impl FakeAsr {
    /// Answers after `latency` with the queued transcripts in order, then with `default`.
    pub fn new(latency: Duration, default: impl Into<String>) -> Self {
        Self {
            latency,
            clock: Clock::Tokio,
            transcripts: Mutex::new(VecDeque::new()),
            default: default.into(),
            control: Control::default(),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Queues transcripts for the next requests.
    pub fn script<I: IntoIterator<Item = S>, S: Into<String>>(&self, transcripts: I) {
        self.transcripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(transcripts.into_iter().map(Into::into));
    }

    /// The next `times` requests do `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.control.push(fault, times);
    }

    /// Counters.
    pub fn stats(&self) -> &FakeStats {
        &self.control.stats
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<AsrRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Asr for FakeAsr {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn transcribe(
        &self,
        request: AsrRequest,
    ) -> BoxStream<'static, Result<AsrEvent, ProviderError>> {
        let mut live = Live::new(&self.control.stats);
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let fault = self.control.next_fault();
        let (latency, clock) = (self.latency, self.clock);
        let text = if fault.is_none() {
            self.transcripts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
                .unwrap_or_else(|| self.default.clone())
        } else {
            String::new()
        };
        stream::once(async move {
            if let Some(fault) = fault {
                live.finish();
                return Err(fault_outcome(clock, fault, latency).await);
            }
            clock.sleep(latency).await;
            live.piece();
            live.finish();
            Ok(AsrEvent::Final {
                text,
                confidence: Some(0.9),
            })
        })
        .boxed()
    }
}

// ---------------------------------------------------------------------------------------------

/// A scripted language model.
#[derive(Debug)]
pub struct FakeLlm {
    first_token: Duration,
    token_gap: Duration,
    /// How the latencies are waited out.
    pub clock: Clock,
    replies: Mutex<VecDeque<String>>,
    default: String,
    control: Control,
    requests: Mutex<Vec<ChatRequest>>,
}

impl FakeLlm {
    /// Streams the queued replies in order (then `default`) word by word: the first token
    /// after `first_token`, the next ones `token_gap` apart.
    pub fn new(first_token: Duration, token_gap: Duration, default: impl Into<String>) -> Self {
        Self {
            first_token,
            token_gap,
            clock: Clock::Tokio,
            replies: Mutex::new(VecDeque::new()),
            default: default.into(),
            control: Control::default(),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Queues replies for the next requests.
    pub fn script<I: IntoIterator<Item = S>, S: Into<String>>(&self, replies: I) {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(replies.into_iter().map(Into::into));
    }

    /// The next `times` requests do `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.control.push(fault, times);
    }

    /// Counters (pieces are tokens).
    pub fn stats(&self) -> &FakeStats {
        &self.control.stats
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The tokens of `reply`: words with their leading space.
    pub fn tokens(reply: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        for (i, word) in reply.split(' ').enumerate() {
            tokens.push(if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            });
        }
        tokens.retain(|t| !t.is_empty());
        tokens
    }
}

impl Llm for FakeLlm {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<LlmEvent, ProviderError>> {
        debug_assert!(
            request
                .messages
                .first()
                .is_none_or(|m| m.role == Role::System)
        );
        let live = Live::new(&self.control.stats);
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let fault = self.control.next_fault();
        let (first, gap, clock) = (self.first_token, self.token_gap, self.clock);
        if let Some(fault) = fault {
            let mut live = live;
            return stream::once(async move {
                live.finish();
                Err(fault_outcome(clock, fault, first).await)
            })
            .boxed();
        }
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_else(|| self.default.clone());
        let tokens: VecDeque<String> = Self::tokens(&reply).into();
        stream::unfold(
            (live, tokens, true, false),
            move |(mut live, mut tokens, first_piece, done)| async move {
                if done {
                    return None;
                }
                clock.sleep(if first_piece { first } else { gap }).await;
                if let Some(token) = tokens.pop_front() {
                    live.piece();
                    Some((Ok(LlmEvent::Token(token)), (live, tokens, false, false)))
                } else {
                    live.finish();
                    Some((
                        Ok(LlmEvent::Done(FinishReason::Stop)),
                        (live, tokens, false, true),
                    ))
                }
            },
        )
        .boxed()
    }
}

// ---------------------------------------------------------------------------------------------

/// What a cached tone was rendered for: the frequency's bits and the sample rate.
type ToneKey = (u64, u32);

/// A synthesiser that speaks a tone.
#[derive(Debug)]
pub struct FakeTts {
    first_byte: Duration,
    chunk_gap: Duration,
    /// Audio per character of text.
    pub audio_per_char: Duration,
    /// Length of each chunk.
    pub chunk: Duration,
    /// Output rate.
    pub sample_rate: u32,
    /// Tone frequency (Hz).
    pub frequency: f64,
    /// How the latencies are waited out.
    pub clock: Clock,
    /// One second of the tone at `tone.0` Hz and `tone.1` samples/s, rendered on first use,
    /// so a chunk costs a copy rather than a `sin` per sample on the caller's runtime (a real
    /// provider's audio costs the runtime only its bytes).
    tone: OnceLock<(ToneKey, Arc<[i16]>)>,
    control: Control,
    texts: Mutex<Vec<String>>,
}

impl FakeTts {
    /// First chunk after `first_byte`, the next ones `chunk_gap` apart; 24 kHz, 100 ms chunks,
    /// 60 ms of audio per character, a 440 Hz tone.
    pub fn new(first_byte: Duration, chunk_gap: Duration) -> Self {
        Self {
            first_byte,
            chunk_gap,
            audio_per_char: Duration::from_millis(60),
            chunk: Duration::from_millis(100),
            sample_rate: 24_000,
            frequency: 440.0,
            clock: Clock::Tokio,
            tone: OnceLock::new(),
            control: Control::default(),
            texts: Mutex::new(Vec::new()),
        }
    }

    /// The next `times` requests do `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.control.push(fault, times);
    }

    /// Counters (pieces are audio chunks).
    pub fn stats(&self) -> &FakeStats {
        &self.control.stats
    }

    /// Every text asked for, oldest first.
    pub fn texts(&self) -> Vec<String> {
        self.texts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One second of the tone (`sample_rate` samples); the tone starts again in phase after it
    /// when the frequency is a whole number of hertz.
    fn tone(&self) -> Arc<[i16]> {
        let key = (self.frequency.to_bits(), self.sample_rate);
        let render = || {
            let step = std::f64::consts::TAU * self.frequency / f64::from(self.sample_rate);
            let second: Arc<[i16]> = (0..self.sample_rate.max(1) as usize)
                .map(|i| (8000.0 * (step * i as f64).sin()) as i16)
                .collect();
            (key, second)
        };
        let (cached_key, second) = self.tone.get_or_init(render);
        if *cached_key == key {
            Arc::clone(second)
        } else {
            // Fields changed after first use: render without caching.
            render().1
        }
    }

    /// Samples of audio for `text`.
    pub fn samples_for(&self, text: &str) -> usize {
        let chars = text.chars().count().max(1) as u128;
        let nanos = self.audio_per_char.as_nanos() * chars;
        (nanos * u128::from(self.sample_rate) / 1_000_000_000) as usize
    }
}

impl Tts for FakeTts {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn synthesize(
        &self,
        request: TtsRequest,
    ) -> BoxStream<'static, Result<AudioChunk, ProviderError>> {
        let live = Live::new(&self.control.stats);
        let total = self.samples_for(&request.text);
        self.texts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.text);
        let (first, gap, clock) = (self.first_byte, self.chunk_gap, self.clock);
        if let Some(fault) = self.control.next_fault() {
            let mut live = live;
            return stream::once(async move {
                live.finish();
                Err(fault_outcome(clock, fault, first).await)
            })
            .boxed();
        }
        let rate = self.sample_rate;
        let per_chunk =
            ((u128::from(rate) * self.chunk.as_nanos() / 1_000_000_000) as usize).max(1);
        let tone = self.tone();
        stream::unfold((live, 0usize), move |(mut live, done)| {
            let tone = Arc::clone(&tone);
            async move {
                if done >= total {
                    live.finish();
                    return None;
                }
                clock.sleep(if done == 0 { first } else { gap }).await;
                let n = per_chunk.min(total - done);
                let pcm = (done..done + n).map(|i| tone[i % tone.len()]).collect();
                live.piece();
                if done + n >= total {
                    live.finish();
                }
                Some((
                    Ok(AudioChunk {
                        pcm,
                        sample_rate: rate,
                    }),
                    (live, done + n),
                ))
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;

    #[tokio::test(start_paused = true)]
    async fn fake_tts_streams_a_tone_proportional_to_the_text() {
        let tts = FakeTts::new(Duration::from_millis(80), Duration::from_millis(10));
        let start = tokio::time::Instant::now();
        let mut s = tts.synthesize(TtsRequest {
            text: "Hello.".into(),
            voice: None,
            language: None,
        });
        let first = s.next().await.expect("a chunk").expect("audio");
        assert_eq!(start.elapsed(), Duration::from_millis(80));
        assert_eq!(first.pcm.len(), 2400);
        let mut samples = first.pcm.len();
        while let Some(chunk) = s.next().await {
            samples += chunk.expect("audio").pcm.len();
        }
        assert_eq!(samples, 6 * 60 * 24, "6 characters x 60 ms at 24 kHz");
        assert_eq!(tts.stats().cancelled(), 0);
        assert_eq!(tts.stats().open(), 0);
    }

    #[tokio::test]
    async fn wall_clock_waits_end_after_their_deadlines_in_deadline_order() {
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waits: Vec<_> = [30u64, 10, 20, 10]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| {
                let order = Arc::clone(&order);
                tokio::spawn(async move {
                    Clock::Wall.sleep(Duration::from_millis(ms)).await;
                    assert!(start.elapsed() >= Duration::from_millis(ms), "woke early");
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        for w in waits {
            w.await.expect("wait");
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 4);
        assert_eq!(order[3], 0, "the 30 ms wait ends last: {order:?}");
        assert_eq!(order[2], 2, "the 20 ms wait ends third: {order:?}");
    }

    #[test]
    fn the_cached_tone_continues_in_phase_across_seconds() {
        let tts = FakeTts::new(Duration::ZERO, Duration::ZERO);
        let tone = tts.tone();
        assert_eq!(tone.len(), 24_000);
        let step = std::f64::consts::TAU * 440.0 / 24_000.0;
        for i in [0usize, 1, 12_345, 23_999, 24_000, 30_001] {
            let expected = (8000.0 * (step * i as f64).sin()) as i16;
            assert!(
                (i32::from(tone[i % tone.len()]) - i32::from(expected)).abs() <= 1,
                "sample {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_stream_counts_as_cancelled_and_faults_are_consumed() {
        let llm = FakeLlm::new(Duration::from_millis(50), Duration::from_millis(5), "a b c");
        let mut s = llm.stream(ChatRequest::default());
        assert_eq!(s.next().await, Some(Ok(LlmEvent::Token("a".into()))));
        assert_eq!(llm.stats().open(), 1);
        drop(s);
        assert_eq!(llm.stats().cancelled(), 1);
        assert_eq!(llm.stats().open(), 0);
        assert_eq!(llm.stats().pieces(), 1);

        let err = ProviderError::Server {
            stage: Stage::Llm,
            status: 500,
            message: "x".into(),
        };
        llm.fail_next(Fault::Fail(err.clone()), 1);
        let events: Vec<_> = llm.stream(ChatRequest::default()).collect().await;
        assert_eq!(events, vec![Err(err)]);
        let events: Vec<_> = llm.stream(ChatRequest::default()).collect().await;
        assert_eq!(events.len(), 4, "three tokens and Done: {events:?}");
    }
}
