//! Shared by the end-to-end tests: the Media Streams bridge on 127.0.0.1:0 with the built-in
//! agents, and the committed speech fixtures.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_media::{CallRecord, CallSink, MediaConfig, MediaState, serve_with_state};

pub const AUTH_TOKEN: &str = "e2e-auth-token-0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// Keeps every finished call's record.
#[derive(Clone, Default)]
pub struct Records(pub Arc<Mutex<Vec<CallRecord>>>);

impl Records {
    /// The records once `count` calls have ended, polled until a 10 s deadline: a call's
    /// record is written when the bridge has torn the call down, which may be after the
    /// caller saw the hang-up.
    pub async fn wait_for(&self, count: usize) -> Vec<CallRecord> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let records = self.0.lock().expect("not poisoned").clone();
            if records.len() >= count {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} call record(s) after 10 s, expected {count}",
                records.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl CallSink for Records {
    fn call_ended(&self, record: &CallRecord) {
        self.0.lock().expect("not poisoned").push(record.clone());
    }
}

pub struct Bridge {
    pub addr: SocketAddr,
    pub records: Records,
    pub shutdown: CancellationToken,
}

/// The bridge, signing checked against `wss://{addr}`.
pub async fn start_bridge(configure: impl FnOnce(&mut MediaConfig)) -> Bridge {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let mut config = MediaConfig {
        public_url: format!("wss://{addr}"),
        auth_token: AUTH_TOKEN.into(),
        ..MediaConfig::default()
    };
    configure(&mut config);
    let records = Records::default();
    let state = MediaState::with_call_sink(config, Agents::builtin(), Arc::new(records.clone()))
        .expect("valid config");
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_with_state(state, listener, shutdown.clone()));
    Bridge {
        addr,
        records,
        shutdown,
    }
}

/// A committed fixture's path.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Utterance `index` of `speech_clean_8k.wav` (per its labels) as mu-law 8 kHz.
pub fn utterance_mulaw(index: usize) -> Vec<u8> {
    let (pcm, rate) = voxbridge_audio::wav::read_wav(fixture("speech_clean_8k.wav")).unwrap();
    assert_eq!(rate, 8000);
    let labels = std::fs::read_to_string(fixture("speech_clean_8k.labels")).unwrap();
    let line = labels.lines().nth(index).expect("label line");
    let mut bounds = line.split_whitespace().map(|v| v.parse::<usize>().unwrap());
    let (start, end) = (bounds.next().unwrap(), bounds.next().unwrap());
    let mut mulaw = Vec::new();
    voxbridge_audio::mulaw::encode(&pcm[start..end], &mut mulaw);
    mulaw
}

/// mu-law to PCM16.
pub fn decode(mulaw: &[u8]) -> Vec<f64> {
    mulaw
        .iter()
        .map(|&b| f64::from(voxbridge_audio::mulaw::decode_sample(b)))
        .collect()
}

/// Whether the default Whisper model (what `scripts/setup.sh` installs) is there; else the
/// skip is recorded through the testkit (a failure under `CI=true`).
pub fn whisper_model_installed(test: &str) -> bool {
    let dir = voxbridge_speech::local::default_model_dir(&|name| std::env::var(name).ok());
    match voxbridge_speech::local::check_model_dir(&dir) {
        Ok(()) => true,
        Err(why) => {
            voxbridge_testkit::skip(test, &why);
            false
        }
    }
}
