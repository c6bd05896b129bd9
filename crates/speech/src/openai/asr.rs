//! Speech recognition with `POST /v1/audio/transcriptions` (multipart: `file` as a WAV of the
//! VAD-segmented utterance, `model`, `language`, `prompt`, `response_format=json`).
//!
//! The answer is read as raw JSON and only `text` is used: OpenAI adds `usage` and `logprobs`,
//! self-hosted servers (faster-whisper, whisper.cpp, vLLM) often send just `{"text": ...}`,
//! which async-openai's typed response would reject.

use std::io::Cursor;

use async_openai::types::audio::{AudioInput, AudioResponseFormat, CreateTranscriptionRequest};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{StageClient, map_openai_error, with_deadlines};
use crate::config::OpenAiAsrConfig;
use crate::openai::OpenAiEndpoint;
use crate::{Asr, AsrEvent, AsrRequest, ProviderError, Stage};

/// Transcription against an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiAsr {
    stage: StageClient,
    language: Option<String>,
}

impl OpenAiAsr {
    /// A client for `endpoint` with `config`'s model, language hint and timeouts.
    pub fn new(endpoint: &OpenAiEndpoint, config: &OpenAiAsrConfig) -> Result<Self, String> {
        Ok(Self {
            stage: StageClient::new(endpoint, &config.model, config.timeouts)?,
            language: Some(config.language.clone()).filter(|l| !l.is_empty()),
        })
    }
}

/// The utterance as a mono 16-bit WAV file at its own rate (16 kHz from the session).
fn wav_bytes(request: &AsrRequest) -> Result<Vec<u8>, ProviderError> {
    let mut out = Cursor::new(Vec::with_capacity(44 + request.audio.pcm.len() * 2));
    voxbridge_audio::wav::write_wav_to(&mut out, &request.audio.pcm, request.audio.sample_rate)
        .map_err(|e| ProviderError::Protocol {
            stage: Stage::Asr,
            message: format!("cannot encode the utterance: {e}"),
        })?;
    Ok(out.into_inner())
}

/// `text` of a JSON transcription answer.
fn transcript(body: &[u8]) -> Result<String, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Text {
        text: String,
    }
    serde_json::from_slice::<Text>(body)
        .map(|t| t.text.trim().to_owned())
        .map_err(|e| ProviderError::Protocol {
            stage: Stage::Asr,
            message: format!("transcription answer has no \"text\": {e}"),
        })
}

impl Asr for OpenAiAsr {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn transcribe(
        &self,
        request: AsrRequest,
    ) -> BoxStream<'static, Result<AsrEvent, ProviderError>> {
        let client = self.stage.client.clone();
        let model = self.stage.model.clone();
        let language = request.language.clone().or_else(|| self.language.clone());
        let timeouts = self.stage.timeouts;
        let result = futures::stream::once(async move {
            let wav = wav_bytes(&request)?;
            let wire = CreateTranscriptionRequest {
                file: AudioInput::from_vec_u8("utterance.wav".to_owned(), wav),
                model,
                language,
                prompt: request.prompt.filter(|p| !p.is_empty()),
                response_format: Some(AudioResponseFormat::Json),
                ..Default::default()
            };
            let body = client
                .audio()
                .transcription()
                .create_raw(wire)
                .await
                .map_err(|e| map_openai_error(Stage::Asr, &timeouts, e))?;
            Ok(AsrEvent::Final {
                text: transcript(&body)?,
                confidence: None,
            })
        });
        // The whole request is bounded by first_byte_ms: its answer is one JSON object.
        with_deadlines(result, Stage::Asr, timeouts.first_byte, timeouts.idle).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_accepts_minimal_and_full_answers() {
        assert_eq!(
            transcript(br#"{"text":" Hello. "}"#).expect("minimal"),
            "Hello."
        );
        assert_eq!(
            transcript(br#"{"text":"Hi","usage":{"type":"duration","seconds":1}}"#).expect("full"),
            "Hi"
        );
        assert!(matches!(
            transcript(b"Hello"),
            Err(ProviderError::Protocol {
                stage: Stage::Asr,
                ..
            })
        ));
    }
}
