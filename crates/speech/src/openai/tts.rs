//! Speech synthesis with `POST /v1/audio/speech`, streamed: audio chunks are decoded and
//! emitted as the response body arrives, so the caller hears the first syllable while the rest
//! is still being synthesised.
//!
//! Why not `async_openai::Speech::create`: it reads the whole body before returning
//! (`post_raw` collects the bytes), and `create_stream` only does the SSE variant
//! (`stream_format: "sse"`, base64 audio in JSON events), which `tts-1` and self-hosted
//! servers do not offer. So this one endpoint sends async-openai's own
//! [`CreateSpeechRequest`] over reqwest (the same reqwest 0.13 async-openai uses) and reads the
//! raw chunked body: `pcm` (24 kHz s16le mono) or `opus` (Ogg Opus, decoded with
//! [`OggOpusReader`]). HTTP failures map exactly as for the async-openai endpoints.

use async_openai::types::audio::{CreateSpeechRequest, SpeechModel, SpeechResponseFormat, Voice};
use futures::StreamExt;
use futures::stream::BoxStream;
use voxbridge_audio::ogg_opus::OggOpusReader;

use super::{HttpStatusError, http_client, map_reqwest_error, with_deadlines};
use crate::config::{OpenAiTtsConfig, StageTimeouts, TtsFormat};
use crate::openai::OpenAiEndpoint;
use crate::{AudioChunk, ProviderError, Stage, Tts, TtsRequest};

/// The rate of OpenAI's `pcm` format and of the decoded `opus` stream.
pub const TTS_SAMPLE_RATE: u32 = 24_000;

/// Streaming synthesis against an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiTts {
    http: reqwest::Client,
    url: String,
    endpoint: OpenAiEndpoint,
    model: String,
    voice: String,
    format: TtsFormat,
    instructions: Option<String>,
    timeouts: StageTimeouts,
}

impl std::fmt::Debug for OpenAiTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTts")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("format", &self.format)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl OpenAiTts {
    /// A client for `endpoint` with `config`'s model, voice, format and timeouts.
    pub fn new(endpoint: OpenAiEndpoint, config: &OpenAiTtsConfig) -> Result<Self, String> {
        Ok(Self {
            http: http_client(&config.timeouts)?,
            url: format!("{}/audio/speech", endpoint.base_url),
            endpoint,
            model: config.model.clone(),
            voice: config.voice.clone(),
            format: config.format,
            instructions: Some(config.instructions.clone()).filter(|i| !i.is_empty()),
            timeouts: config.timeouts,
        })
    }

    fn wire_request(&self, request: &TtsRequest) -> CreateSpeechRequest {
        CreateSpeechRequest {
            input: request.text.clone(),
            model: SpeechModel::Other(self.model.clone()),
            voice: Voice::Other(request.voice.clone().unwrap_or_else(|| self.voice.clone())),
            instructions: self.instructions.clone(),
            response_format: Some(match self.format {
                TtsFormat::Pcm => SpeechResponseFormat::Pcm,
                TtsFormat::Opus => SpeechResponseFormat::Opus,
            }),
            speed: None,
            stream_format: None,
        }
    }
}

/// Turns body bytes into PCM16 (sans-IO): chunks may split samples or Ogg pages anywhere.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    /// s16le; an odd trailing byte waits for the next chunk.
    Pcm { carry: Option<u8> },
    /// Ogg Opus.
    Opus(Box<OggOpusReader>),
}

impl BodyDecoder {
    pub(crate) fn new(format: TtsFormat) -> Result<Self, ProviderError> {
        Ok(match format {
            TtsFormat::Pcm => Self::Pcm { carry: None },
            TtsFormat::Opus => Self::Opus(Box::new(OggOpusReader::new(TTS_SAMPLE_RATE).map_err(
                |e| ProviderError::Protocol {
                    stage: Stage::Tts,
                    message: e.to_string(),
                },
            )?)),
        })
    }

    /// Decodes the next body bytes into `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), ProviderError> {
        match self {
            Self::Pcm { carry } => {
                let mut rest = bytes;
                if let Some(low) = carry.take() {
                    let Some((&high, tail)) = rest.split_first() else {
                        *carry = Some(low);
                        return Ok(());
                    };
                    out.push(i16::from_le_bytes([low, high]));
                    rest = tail;
                }
                let pairs = rest.chunks_exact(2);
                *carry = pairs.remainder().first().copied();
                out.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
                Ok(())
            }
            Self::Opus(reader) => {
                reader.push(bytes).map_err(|e| ProviderError::Protocol {
                    stage: Stage::Tts,
                    message: format!("bad Ogg Opus from the server: {e}"),
                })?;
                reader.pull(out);
                Ok(())
            }
        }
    }
}

impl Tts for OpenAiTts {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn synthesize(
        &self,
        request: TtsRequest,
    ) -> BoxStream<'static, Result<AudioChunk, ProviderError>> {
        let body = self.wire_request(&request);
        let http = self.http.clone();
        let url = self.url.clone();
        let key = self.endpoint.api_key.clone();
        let timeouts = self.timeouts;
        let format = self.format;
        tracing::debug!(model = %self.model, chars = request.text.len(), "tts request");

        let bytes = futures::stream::once(async move {
            let mut builder = http.post(url).json(&body);
            if !key.is_empty() {
                builder = builder.bearer_auth(key.expose());
            }
            let response = builder
                .send()
                .await
                .map_err(|e| map_reqwest_error(Stage::Tts, &timeouts, &e))?;
            if !response.status().is_success() {
                return Err(HttpStatusError::read(response)
                    .await
                    .into_provider_error(Stage::Tts));
            }
            Ok(response
                .bytes_stream()
                .map(move |chunk| chunk.map_err(|e| map_reqwest_error(Stage::Tts, &timeouts, &e))))
        })
        .map(|opened| match opened {
            Ok(body) => body.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
        // Response headers and then every body chunk share the first-byte/idle limits.
        let bytes = with_deadlines(bytes, Stage::Tts, timeouts.first_byte, timeouts.idle);

        decode_body(bytes, format).boxed()
    }
}

/// Decodes body chunks into audio chunks; the stream ends after the first error, and a body
/// that held no audio at all (a proxy's HTML page with status 200, an empty answer) is a
/// `Protocol` error rather than silence.
fn decode_body(
    bytes: impl futures::Stream<Item = Result<bytes::Bytes, ProviderError>> + Send + 'static,
    format: TtsFormat,
) -> impl futures::Stream<Item = Result<AudioChunk, ProviderError>> + Send + 'static {
    struct State<S> {
        bytes: std::pin::Pin<Box<S>>,
        decoder: Option<BodyDecoder>,
        samples: usize,
        over: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        decoder: None,
        samples: 0,
        over: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        if st.over {
            return None;
        }
        loop {
            let item = match st.bytes.next().await {
                Some(Ok(bytes)) => decode_chunk(&mut st.decoder, format, &bytes),
                Some(Err(e)) => Err(e),
                None if st.samples == 0 => Err(ProviderError::Protocol {
                    stage: Stage::Tts,
                    message: format!("the server answered without {format:?} audio"),
                }),
                None => return None,
            };
            match item {
                Ok(pcm) if pcm.is_empty() => {}
                Ok(pcm) => {
                    st.samples += pcm.len();
                    let chunk = AudioChunk {
                        pcm,
                        sample_rate: TTS_SAMPLE_RATE,
                    };
                    return Some((Ok(chunk), st));
                }
                Err(e) => {
                    st.over = true;
                    return Some((Err(e), st));
                }
            }
        }
    })
}

fn decode_chunk(
    decoder: &mut Option<BodyDecoder>,
    format: TtsFormat,
    bytes: &[u8],
) -> Result<Vec<i16>, ProviderError> {
    let decoder = match decoder {
        Some(d) => d,
        None => decoder.insert(BodyDecoder::new(format)?),
    };
    let mut pcm = Vec::with_capacity(bytes.len() / 2 + 1);
    decoder.push(bytes, &mut pcm)?;
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_decoding_survives_odd_splits() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 18_000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for split in [1usize, 3, 7, 1999] {
            let mut d = BodyDecoder::new(TtsFormat::Pcm).expect("pcm");
            let mut out = Vec::new();
            for piece in bytes.chunks(split) {
                d.push(piece, &mut out).expect("pcm never fails");
            }
            assert_eq!(out, samples, "split {split}");
        }
    }

    #[test]
    fn opus_decoding_reads_a_real_stream_split_anywhere() {
        let tone: Vec<i16> = (0..24_000)
            .map(|i| ((i as f32 * 0.05).sin() * 8_000.0) as i16)
            .collect();
        let mut w =
            voxbridge_audio::ogg_opus::OggOpusWriter::new(Vec::new(), 24_000).expect("writer");
        w.write_pcm(&tone).expect("encode");
        let ogg = w.finish().expect("finish");
        let mut d = BodyDecoder::new(TtsFormat::Opus).expect("opus");
        let mut out = Vec::new();
        for piece in ogg.chunks(333) {
            d.push(piece, &mut out).expect("valid stream");
        }
        assert_eq!(out.len(), tone.len());
    }

    #[tokio::test]
    async fn a_body_without_audio_is_a_protocol_error() {
        let page = futures::stream::iter([Ok(bytes::Bytes::from_static(b"<html>oops</html>"))]);
        let items: Vec<_> = decode_body(page, TtsFormat::Opus).collect().await;
        assert!(
            matches!(
                items.as_slice(),
                [Err(ProviderError::Protocol {
                    stage: Stage::Tts,
                    ..
                })]
            ),
            "{items:?}"
        );
    }
}
