//! `POST /v1/audio/transcriptions` and `POST /v1/audio/speech`.
//!
//! Speech audio is synthetic but real: a 440 Hz tone with 10 ms fades, at 24 kHz, lasting
//! `max(200 ms, tts_ms_per_char x characters)`, so downstream timing (pacing, barge-in,
//! marks) behaves as with a real voice. `pcm` is sent as raw s16le, `wav` with a RIFF header,
//! `opus` as real Ogg Opus from voxbridge-audio's encoder. Other formats (`mp3`, `aac`,
//! `flac`) are answered with 400: the stand-in has no encoder for them.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::utterance::AudioStats;
use crate::{
    Endpoint, HANG, Shared, StreamGuard, api_error, authorization, fault_response, paced_body,
};

/// Sample rate of the synthetic speech (OpenAI's `pcm` rate).
pub const SPEECH_RATE: u32 = 24_000;

fn bad_request(message: &str, param: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                "param": param, "code": null}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

pub(crate) async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let (mut fields, audio) = match read_form(&mut multipart).await {
        Ok(form) => form,
        Err((fields, response)) => {
            shared.record(
                Endpoint::Transcriptions,
                authorization(&headers),
                Value::Object(fields),
            );
            return response;
        }
    };
    // Parse the WAV so tests can assert what arrived (rate, length, loudness).
    let mut parsed = None;
    if let Some((bytes, mut meta)) = audio {
        if let Ok((samples, rate)) = voxbridge_audio::wav::read_wav_from(Cursor::new(&bytes)) {
            meta["sample_rate"] = json!(rate);
            meta["samples"] = json!(samples.len());
            meta["rms_dbfs"] = json!(AudioStats::measure(&samples, rate, 0.0).rms_dbfs);
            parsed = Some((samples, rate));
        }
        fields.insert("file".into(), meta);
    }
    let (id, fault) = shared.record(
        Endpoint::Transcriptions,
        authorization(&headers),
        Value::Object(fields.clone()),
    );
    if let Some(response) = fault.and_then(fault_response) {
        return response;
    }
    if fault.is_some() {
        tokio::time::sleep(HANG).await;
    }
    if !fields.contains_key("model") {
        return bad_request("you must provide a model parameter", Some("model"));
    }
    let Some((samples, rate)) = parsed else {
        return bad_request(
            if fields.contains_key("file") {
                "Invalid file format. Supported formats: ['wav'] (the stand-in decodes WAV only)"
            } else {
                "Missing required parameter: 'file'."
            },
            Some("file"),
        );
    };
    tokio::time::sleep(shared.config().latency.transcription).await;
    let text = match shared.next_transcript(id, &samples, rate) {
        Ok(text) => text,
        Err(mismatch) => return bad_request(&mismatch, Some("file")),
    };
    let seconds = samples.len() as f64 / f64::from(rate);
    match fields
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("json")
    {
        "json" => axum::Json(json!({
            "text": text,
            "usage": {"type": "duration", "seconds": seconds.ceil() as u64},
        }))
        .into_response(),
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{text}\n"),
        )
            .into_response(),
        "verbose_json" => axum::Json(json!({
            "task": "transcribe",
            "language": fields.get("language").and_then(Value::as_str).unwrap_or("english"),
            "duration": seconds,
            "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text,
                          "tokens": [], "temperature": 0.0, "avg_logprob": -0.2,
                          "compression_ratio": 1.0, "no_speech_prob": 0.01}],
        }))
        .into_response(),
        other => bad_request(
            &format!(
                "response_format '{other}' is not supported by the stand-in (json, text, verbose_json)"
            ),
            Some("response_format"),
        ),
    }
}

/// The multipart text fields and the `file` part (bytes and `{name, content_type, bytes}`).
type Form = (Map<String, Value>, Option<(Vec<u8>, Value)>);

async fn read_form(multipart: &mut Multipart) -> Result<Form, (Map<String, Value>, Response)> {
    let mut fields = Map::new();
    let mut audio = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok((fields, audio)),
            Err(e) => {
                let response = bad_request(&format!("Invalid multipart body: {e}"), None);
                return Err((fields, response));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            match field.bytes().await {
                Ok(bytes) => {
                    let meta = json!({"name": file_name, "content_type": content_type,
                                      "bytes": bytes.len()});
                    audio = Some((bytes.to_vec(), meta));
                }
                Err(e) => {
                    let response = bad_request(&format!("Could not read file: {e}"), Some("file"));
                    return Err((fields, response));
                }
            }
        } else {
            match field.text().await {
                Ok(text) => {
                    fields.insert(name, Value::String(text));
                }
                Err(e) => {
                    let response = bad_request(&format!("Could not read field: {e}"), None);
                    return Err((fields, response));
                }
            }
        }
    }
}

/// The synthetic voice for `text` at [`SPEECH_RATE`] (see the module docs).
pub fn synthetic_speech(text: &str, ms_per_char: u32) -> Vec<i16> {
    synthetic_speech_at(text, ms_per_char, SPEECH_RATE)
}

/// The synthetic voice at any rate (the Realtime stand-in speaks it at 8 kHz for `audio/pcmu`).
pub(crate) fn synthetic_speech_at(text: &str, ms_per_char: u32, rate: u32) -> Vec<i16> {
    let chars = text.chars().count() as u64;
    let ms = (chars * u64::from(ms_per_char)).max(200);
    let n = (ms * u64::from(rate) / 1000) as usize;
    let fade = (rate / 100) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let edge = i.min(n - 1 - i).min(fade) as f32 / fade as f32;
            (f32::sin(2.0 * std::f32::consts::PI * 440.0 * t) * 9_000.0 * edge) as i16
        })
        .collect()
}

fn encode(format: &str, pcm: &[i16]) -> Result<Vec<u8>, String> {
    match format {
        "pcm" => Ok(pcm.iter().flat_map(|s| s.to_le_bytes()).collect()),
        "wav" => {
            let mut out = Cursor::new(Vec::new());
            voxbridge_audio::wav::write_wav_to(&mut out, pcm, SPEECH_RATE)
                .map_err(|e| e.to_string())?;
            Ok(out.into_inner())
        }
        "opus" => {
            let mut w = voxbridge_audio::ogg_opus::OggOpusWriter::new(Vec::new(), SPEECH_RATE)
                .map_err(|e| e.to_string())?;
            w.write_pcm(pcm).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())
        }
        other => Err(format!(
            "response_format '{other}' is not supported by the stand-in (pcm, wav, opus)"
        )),
    }
}

pub(crate) async fn speech(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (id, fault) = shared.record(Endpoint::Speech, authorization(&headers), request.clone());
    if request.is_null() {
        return bad_request("We could not parse the JSON body of your request.", None);
    }
    if let Some(response) = fault.and_then(fault_response) {
        return response;
    }
    let Some(input) = request["input"].as_str().filter(|i| !i.is_empty()) else {
        return bad_request("Missing required parameter: 'input'.", Some("input"));
    };
    if input.chars().count() > 4096 {
        return bad_request(
            "'input' is too long: maximum 4096 characters.",
            Some("input"),
        );
    }
    if request["model"].as_str().is_none() || request["voice"].is_null() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model' or 'voice'.",
            "invalid_request_error",
            None,
        );
    }
    let format = request["response_format"]
        .as_str()
        .unwrap_or("mp3")
        .to_owned();
    let config = shared.config();
    let audio = match encode(&format, &synthetic_speech(input, config.tts_ms_per_char)) {
        Ok(a) => a,
        Err(message) => return bad_request(&message, Some("response_format")),
    };
    let content_type = match format.as_str() {
        "opus" => "audio/ogg",
        "wav" => "audio/wav",
        _ => "audio/pcm",
    };
    let latency = config.latency;
    let pieces: Vec<Bytes> = audio
        .chunks(config.tts_chunk_bytes.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    let guard = StreamGuard::new(shared, id, Endpoint::Speech);
    let body = paced_body(
        pieces,
        latency.speech_first_byte,
        latency.speech_chunk_gap,
        fault,
        guard,
    );
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_length_follows_the_text() {
        assert_eq!(synthetic_speech("", 60).len(), 200 * 24);
        assert_eq!(synthetic_speech(&"a".repeat(50), 60).len(), 3_000 * 24);
        let s = synthetic_speech("hello", 60);
        assert_eq!(s[0], 0);
        assert!(s.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) > 8_000);
    }
}
