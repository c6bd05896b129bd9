//! The embedded recogniser's worker pool with a deliberately slow recogniser (a fake that
//! sleeps as a decode would take): the queue bound, the turn deadline (queue wait counts, a
//! request that cannot finish in time is not decoded), cancellation, and what reaches the
//! recogniser (16 kHz audio, the prompt). Real threads and the real clock; the fake's decode is
//! short so the file runs in about a second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use voxbridge_speech::local::{LocalAsr, PoolSize, Recognizer, RecognizerFactory};
use voxbridge_speech::{Asr, AsrEvent, AsrRequest, AudioChunk, ProviderError, Stage};

const DECODE: Duration = Duration::from_millis(300);

/// What the fake saw of one decode.
#[derive(Debug, Clone)]
struct Seen {
    samples: usize,
    prompt: Option<String>,
    language: Option<String>,
}

#[derive(Default)]
struct Log {
    started: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// Takes [`DECODE`] per utterance and answers "yes".
struct Slow(Arc<Log>);

impl Recognizer for Slow {
    fn recognize(
        &mut self,
        audio: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
    ) -> Result<String, String> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(DECODE);
        self.0.seen.lock().expect("log").push(Seen {
            samples: audio.len(),
            prompt: prompt.map(str::to_owned),
            language: language.map(str::to_owned),
        });
        Ok(" yes ".to_owned())
    }
}

fn pool(queue: usize) -> (LocalAsr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let for_factory = Arc::clone(&log);
    let factory: RecognizerFactory =
        Arc::new(move || Ok(Box::new(Slow(Arc::clone(&for_factory))) as Box<dyn Recognizer>));
    let asr = LocalAsr::start(
        &factory,
        PoolSize { workers: 1, queue },
        Some("en".into()),
        Some("Screening call.".into()),
    )
    .expect("pool");
    (asr, log)
}

fn request(deadline: Option<Duration>) -> AsrRequest {
    AsrRequest {
        audio: AudioChunk {
            pcm: vec![1000; 8000],
            sample_rate: 16_000,
        },
        language: None,
        prompt: Some("Are you authorized to work?".into()),
        deadline: deadline.map(|d| Instant::now() + d),
    }
}

async fn result(asr: &LocalAsr, request: AsrRequest) -> Result<String, ProviderError> {
    match asr.transcribe(request).next().await.expect("one event")? {
        AsrEvent::Final { text, .. } => Ok(text),
        AsrEvent::Partial(p) => panic!("unexpected partial {p:?}"),
    }
}

/// Polls `condition` until it holds, failing after 2 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(2);
    while !condition() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn decodes_off_the_runtime_with_the_prompt_at_16_khz() {
    let (asr, log) = pool(2);
    let mut narrowband = request(Some(Duration::from_secs(5)));
    narrowband.audio = AudioChunk {
        pcm: vec![1000; 4000],
        sample_rate: 8000,
    };
    // A current-thread runtime: if the decode ran on it, this timer could not fire first.
    let decode = result(&asr, narrowband);
    let ticked = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Instant::now()
    };
    let started = Instant::now();
    let (text, ticked_at) = tokio::join!(decode, ticked);
    assert_eq!(text.expect("decoded"), "yes");
    assert!(
        ticked_at - started < DECODE,
        "the runtime was blocked by the decode"
    );
    let seen = log.seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 1);
    // 0.5 s at 8 kHz arrives as 0.5 s at 16 kHz (the resampler's tail within 10 ms).
    assert!(
        (7_840..=8_160).contains(&seen[0].samples),
        "{} samples",
        seen[0].samples
    );
    assert_eq!(
        seen[0].prompt.as_deref(),
        Some("Screening call. Are you authorized to work?")
    );
    assert_eq!(seen[0].language.as_deref(), Some("en"));
}

#[tokio::test]
async fn queue_wait_counts_against_the_deadline_and_late_requests_are_not_decoded() {
    let (asr, log) = pool(4);
    let first = tokio::spawn({
        let asr = asr.clone();
        async move { result(&asr, request(Some(Duration::from_secs(5)))).await }
    });
    until("the first decode to start", || {
        log.started.load(Ordering::SeqCst) == 1
    })
    .await;

    // Queued behind a 300 ms decode with 100 ms of budget left: the caller hears of it at its
    // deadline, not when the worker gets round to it.
    let asked = Instant::now();
    let late = result(&asr, request(Some(Duration::from_millis(100)))).await;
    let answered = asked.elapsed();
    assert!(
        matches!(
            late,
            Err(ProviderError::Timeout {
                stage: Stage::Asr,
                ..
            })
        ),
        "{late:?}"
    );
    assert!(
        answered >= Duration::from_millis(100) && answered < Duration::from_millis(200),
        "answered after {answered:?}"
    );
    assert_eq!(first.await.expect("join").expect("first"), "yes");

    // The worker skipped the expired request: one decode in all, and it is free again.
    assert_eq!(result(&asr, request(None)).await.expect("third"), "yes");
    assert_eq!(log.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_that_cannot_finish_in_time_is_refused_before_decoding() {
    let (asr, log) = pool(4);
    // One decode teaches the pool its speed (300 ms).
    assert_eq!(result(&asr, request(None)).await.expect("warm"), "yes");
    // 150 ms left, the queue empty: starting would only finish after the deadline.
    let asked = Instant::now();
    let refused = result(&asr, request(Some(Duration::from_millis(150)))).await;
    assert!(
        matches!(
            refused,
            Err(ProviderError::Timeout {
                stage: Stage::Asr,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "refused after {:?}: it was decoded or waited for",
        asked.elapsed()
    );
    assert_eq!(log.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_dropped_requests_are_skipped() {
    let (asr, log) = pool(1);
    let busy = tokio::spawn({
        let asr = asr.clone();
        async move { result(&asr, request(None)).await }
    });
    until("the worker to be busy", || {
        log.started.load(Ordering::SeqCst) == 1
    })
    .await;
    // One waits in the queue (its caller then goes away: barge-in) ...
    let mut queued = asr.transcribe(request(None));
    let poll = futures::poll!(queued.next());
    assert!(poll.is_pending());
    // ... and the next finds the queue full.
    let asked = Instant::now();
    let full = result(&asr, request(Some(Duration::from_secs(5)))).await;
    assert!(
        matches!(
            full,
            Err(ProviderError::RateLimited {
                stage: Stage::Asr,
                ..
            })
        ),
        "{full:?}"
    );
    assert!(asked.elapsed() < Duration::from_millis(50));
    assert!(full.expect_err("refused").is_retryable());
    drop(queued);
    assert_eq!(busy.await.expect("join").expect("busy"), "yes");
    assert_eq!(result(&asr, request(None)).await.expect("after"), "yes");
    // The dropped request was never decoded.
    assert_eq!(log.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_model_that_fails_to_load_answers_unavailable_with_the_reason() {
    let factory: RecognizerFactory =
        Arc::new(|| Err("no Whisper model in /nowhere (model.bin is missing)".to_owned()));
    let asr = LocalAsr::start(
        &factory,
        PoolSize {
            workers: 1,
            queue: 1,
        },
        None,
        None,
    )
    .expect("pool");
    let err = result(&asr, request(Some(Duration::from_secs(2))))
        .await
        .expect_err("no model");
    assert!(
        matches!(&err, ProviderError::Unavailable { message, .. } if message.contains("/nowhere")),
        "{err:?}"
    );
}
