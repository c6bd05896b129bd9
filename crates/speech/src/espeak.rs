//! Local speech synthesis with the `espeak-ng` binary: no account, no network, a robotic but
//! intelligible voice. Used for system prompts, voicemail messages, the spoken fallback when
//! the configured TTS fails, and whenever `speech.tts = "espeak"`.
//!
//! Each request runs `espeak-ng --stdout --stdin -v VOICE -s WPM -p PITCH -a AMPLITUDE` as a
//! child process (`tokio::process`), writes the text to its stdin (never the command line, so
//! text cannot become an option) and reads the WAV it writes to stdout (22050 Hz mono s16le
//! with placeholder sizes) through [`WavStreamReader`], emitting samples as they arrive. The
//! child is started with `kill_on_drop`, so dropping the stream (barge-in, hang-up) kills it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

use super::config::{EspeakConfig, StageTimeouts};
use super::openai::with_deadlines;
use super::wav_stream::WavStreamReader;
use super::{AudioChunk, ProviderError, Stage, Tts, TtsRequest};

/// Bytes read from espeak's stdout per chunk (about 90 ms of 22050 Hz audio).
const READ_CHUNK: usize = 4096;

/// Longest text spoken in one request (espeak is fast, but a runaway prompt should not keep a
/// process busy for minutes).
const MAX_TEXT: usize = 4096;

/// espeak-ng synthesiser (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct EspeakTts {
    binary: PathBuf,
    config: EspeakConfig,
}

impl EspeakTts {
    /// Checks that the binary exists (in `PATH` unless the name has a `/`).
    pub fn new(config: EspeakConfig) -> Result<Self, String> {
        let binary = find_binary(&config.binary)
            .ok_or_else(|| format!("{:?} not found (looked in PATH)", config.binary))?;
        Ok(Self { binary, config })
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> StageTimeouts {
        self.config.timeouts
    }

    fn command(&self, voice: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--stdout")
            .arg("--stdin")
            .arg("-v")
            .arg(voice)
            .arg("-s")
            .arg(self.config.rate_wpm.to_string())
            .arg("-p")
            .arg(self.config.pitch.to_string())
            .arg("-a")
            .arg(self.config.amplitude.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// The voice for a request: its own, else its language (`en-US` -> `en-us`), else config.
    fn voice_for(&self, request: &TtsRequest) -> String {
        request
            .voice
            .clone()
            .or_else(|| request.language.as_ref().map(|l| l.to_ascii_lowercase()))
            .filter(|v| valid_voice(v))
            .unwrap_or_else(|| self.config.voice.clone())
    }
}

/// Voice names are short identifiers (`en-us`, `de`, `en+f3`); anything else is ignored.
fn valid_voice(voice: &str) -> bool {
    !voice.is_empty()
        && voice.len() <= 64
        && !voice.starts_with('-')
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
}

fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn unavailable(message: String) -> ProviderError {
    ProviderError::Unavailable {
        stage: Stage::Tts,
        message,
    }
}

/// The running child and its reader state.
struct Synthesis {
    child: Child,
    stdout: ChildStdout,
    reader: WavStreamReader,
    buf: Vec<u8>,
    over: bool,
}

impl Synthesis {
    /// The next chunk of audio, `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<AudioChunk, ProviderError>> {
        if self.over {
            return None;
        }
        loop {
            let n = match self.stdout.read(&mut self.buf).await {
                Ok(n) => n,
                Err(e) => {
                    return Some(self.fail(unavailable(format!("reading espeak-ng output: {e}"))));
                }
            };
            if n == 0 {
                self.over = true;
                return self.finish().await.err().map(Err);
            }
            let mut pcm = Vec::with_capacity(n / 2);
            if let Err(e) = self.reader.push(&self.buf[..n], &mut pcm) {
                return Some(self.fail(ProviderError::Protocol {
                    stage: Stage::Tts,
                    message: format!("espeak-ng output: {e}"),
                }));
            }
            if let (false, Some(format)) = (pcm.is_empty(), self.reader.format()) {
                return Some(Ok(AudioChunk {
                    pcm,
                    sample_rate: format.sample_rate,
                }));
            }
        }
    }

    fn fail(&mut self, e: ProviderError) -> Result<AudioChunk, ProviderError> {
        self.over = true;
        Err(e)
    }

    /// Waits for the child after its stdout closed; a failure carries its stderr.
    async fn finish(&mut self) -> Result<(), ProviderError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| unavailable(format!("waiting for espeak-ng: {e}")))?;
        if status.success() {
            if self.reader.format().is_none() {
                return Err(ProviderError::Protocol {
                    stage: Stage::Tts,
                    message: "espeak-ng wrote no WAV header".to_owned(),
                });
            }
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr).await;
        }
        Err(unavailable(format!(
            "espeak-ng exited with {status}: {}",
            stderr.trim()
        )))
    }
}

impl Tts for EspeakTts {
    fn name(&self) -> &'static str {
        "espeak"
    }

    fn synthesize(
        &self,
        request: TtsRequest,
    ) -> BoxStream<'static, Result<AudioChunk, ProviderError>> {
        let voice = self.voice_for(&request);
        let mut cmd = self.command(&voice);
        let mut text = request.text;
        if text.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let timeouts = self.config.timeouts;
        let started = futures::stream::once(async move {
            let mut child = cmd
                .spawn()
                .map_err(|e| unavailable(format!("cannot run espeak-ng: {e}")))?;
            tracing::debug!(pid = child.id(), %voice, chars = text.len(), "espeak-ng started");
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| unavailable("espeak-ng has no stdin".to_owned()))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| unavailable("espeak-ng has no stdout".to_owned()))?;
            // The text is small (<= 4 KiB, below the pipe buffer), so writing it all before
            // reading cannot deadlock; dropping stdin sends EOF.
            match stdin.write_all(text.as_bytes()).await {
                // espeak-ng exited early (bad voice ...): its exit status and stderr, read at
                // the end of its stdout, say why.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(unavailable(format!("writing to espeak-ng: {e}"))),
                Ok(()) => {}
            }
            drop(stdin);
            Ok(Synthesis {
                child,
                stdout,
                reader: WavStreamReader::new(),
                buf: vec![0; READ_CHUNK],
                over: false,
            })
        });
        let chunks = started
            .map(|started| match started {
                Ok(synthesis) => futures::stream::unfold(synthesis, |mut s| async move {
                    s.next_chunk().await.map(|chunk| (chunk, s))
                })
                .boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        with_deadlines(chunks, Stage::Tts, timeouts.first_byte, timeouts.idle).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_cannot_become_options() {
        assert!(valid_voice("en-us"));
        assert!(valid_voice("en+f3"));
        assert!(!valid_voice("--stdout"));
        assert!(!valid_voice("en us"));
        assert!(!valid_voice(""));
        let tts = EspeakTts {
            binary: PathBuf::from("espeak-ng"),
            config: EspeakConfig::default(),
        };
        let req = |voice: Option<&str>, language: Option<&str>| TtsRequest {
            text: "x".into(),
            voice: voice.map(str::to_owned),
            language: language.map(str::to_owned),
        };
        assert_eq!(tts.voice_for(&req(None, Some("en-GB"))), "en-gb");
        assert_eq!(tts.voice_for(&req(Some("de"), Some("en-GB"))), "de");
        assert_eq!(tts.voice_for(&req(Some("-x"), None)), "en-us");
    }

    #[test]
    fn missing_binary_is_reported() {
        let err = EspeakTts::new(EspeakConfig {
            binary: "/nonexistent/espeak-ng".into(),
            ..EspeakConfig::default()
        })
        .expect_err("no such file");
        assert!(err.contains("/nonexistent/espeak-ng"), "{err}");
    }
}
