//! `GET /v1/realtime?model=...`: the OpenAI Realtime API over WebSocket (GA event names, as
//! in async-openai 0.43's `types::realtime`).
//!
//! What the stand-in model does:
//! - On connect: `session.created` (default formats `audio/pcm` 24 kHz, server VAD on).
//! - `session.update`: merges `instructions`, `audio.input.format`, `audio.output.format`,
//!   `audio.output.voice`, `audio.input.turn_detection`, `tools`; answers `session.updated`.
//! - `input_audio_buffer.append`: decodes the audio (`audio/pcmu` mu-law at 8 kHz or
//!   `audio/pcm` 24 kHz) and runs an energy VAD over 20 ms frames: the first loud frame sends
//!   `input_audio_buffer.speech_started` (and cancels a response in progress when
//!   `interrupt_response` is on), [`RealtimeScript::silence_ms`] of quiet sends
//!   `input_audio_buffer.speech_stopped`, `input_audio_buffer.committed`, the caller's
//!   transcript (`conversation.item.input_audio_transcription.completed`) and, with
//!   `create_response`, starts a response.
//! - A response: `response.created`, the scripted function calls, if any
//!   (`response.function_call_arguments.delta`/`.done`; [`RealtimeScript::responses`] scripts
//!   each response in turn, as a chat [`crate::Reply`]), then an assistant message (unless its
//!   text is empty) whose audio is the same synthetic tone as TTS (length proportional to the reply text) in the output
//!   format, sent as `response.output_audio.delta` every [`RealtimeScript::delta_ms`] of audio
//!   (paced by [`RealtimeScript::delta_gap`]), `response.output_audio_transcript.delta`/`.done`,
//!   and `response.done`.
//! - `response.create` starts a response (an `error` with code
//!   `conversation_already_has_active_response` while one is active, as OpenAI's does);
//!   `response.cancel` stops one (`response.done` with
//!   status `cancelled`); `conversation.item.truncate` answers `conversation.item.truncated`
//!   (or an `error` when `audio_end_ms` is past the item's audio); `conversation.item.create`
//!   answers `conversation.item.added` and `conversation.item.done`.
//! - Anything else: an `error` event (`invalid_request_error`), the session stays open.
//! - [`RealtimeScript::drop_after_responses`]: after that many `response.done` events the
//!   stand-in drops the connection without a close frame (a provider or network failure).
//!
//! The input audio of every append is kept ([`crate::StandinHandle::realtime_input_audio`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::audio::synthetic_speech_at;
use crate::{Endpoint, HANG, Reply, ScriptedToolCall, Shared, authorization, fault_response};

/// What the stand-in Realtime model says and how it hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeScript {
    /// The transcript of every response (its audio is a tone of matching length).
    pub reply_text: String,
    /// What the caller "said" (the input transcription of each committed utterance).
    pub caller_transcript: String,
    /// A function call the first response makes before speaking, if any.
    pub tool_call: Option<ScriptedToolCall>,
    /// Scripted responses, in order: response `n` (counting every `response.create` and every
    /// turn the server VAD answers) makes `responses[n - 1]`'s tool calls as function calls,
    /// then speaks its text (none when empty: a response of function calls only, as a model
    /// makes when it waits for their results). Past the end, `reply_text` (and `tool_call` on
    /// the first).
    pub responses: Vec<Reply>,
    /// The caller's transcript of each committed utterance, in order; past the end,
    /// `caller_transcript`.
    pub caller_transcripts: Vec<String>,
    /// Milliseconds of reply audio per character (default 60).
    pub ms_per_char: u32,
    /// Mean absolute amplitude (PCM16) above which a 20 ms frame is speech (default 600).
    pub speech_threshold: u16,
    /// Quiet that ends the caller's turn (default 500 ms).
    pub silence_ms: u32,
    /// Audio per `response.output_audio.delta` (default 100 ms).
    pub delta_ms: u32,
    /// Pause between deltas (default 0: as fast as the socket takes them).
    pub delta_gap: Duration,
    /// Drop the connection (no close frame) right after this many `response.done` events
    /// (completed or cancelled) on a session; `None` (default) never.
    pub drop_after_responses: Option<u32>,
}

impl Default for RealtimeScript {
    fn default() -> Self {
        Self {
            reply_text: "Hello, this is the stand-in realtime model.".to_owned(),
            caller_transcript: "hello".to_owned(),
            tool_call: None,
            responses: Vec::new(),
            caller_transcripts: Vec::new(),
            ms_per_char: 60,
            speech_threshold: 600,
            silence_ms: 500,
            delta_ms: 100,
            delta_gap: Duration::ZERO,
            drop_after_responses: None,
        }
    }
}

pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let model = query.get("model").cloned().unwrap_or_default();
    let (id, fault) = shared.record(
        Endpoint::Realtime,
        authorization(&headers),
        json!({"model": model}),
    );
    if let Some(response) = fault.and_then(fault_response) {
        return response;
    }
    if fault.is_some() {
        tokio::time::sleep(HANG).await;
    }
    let script = shared.realtime_script();
    ws.on_upgrade(move |socket| async move {
        let mut session = Session::new(shared.clone(), script, model);
        let clean = session.run(socket).await;
        // A close frame from the client counts as completed, a dropped connection as cancelled.
        shared.finished(id, Endpoint::Realtime, clean);
    })
}

/// An audio format of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pcm24k,
    Pcmu,
}

impl Format {
    fn parse(v: &Value) -> Option<Self> {
        match v["type"].as_str()? {
            "audio/pcm" => Some(Self::Pcm24k),
            "audio/pcmu" => Some(Self::Pcmu),
            _ => None,
        }
    }

    fn json(self) -> Value {
        match self {
            Self::Pcm24k => json!({"type": "audio/pcm", "rate": 24000}),
            Self::Pcmu => json!({"type": "audio/pcmu"}),
        }
    }

    fn rate(self) -> u32 {
        match self {
            Self::Pcm24k => 24_000,
            Self::Pcmu => 8_000,
        }
    }

    fn sample_bytes(self) -> usize {
        match self {
            Self::Pcm24k => 2,
            Self::Pcmu => 1,
        }
    }

    fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        match self {
            Self::Pcmu => voxbridge_audio::mulaw::decode(bytes, out),
            Self::Pcm24k => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
        }
    }

    fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::Pcmu => {
                let mut out = Vec::with_capacity(pcm.len());
                voxbridge_audio::mulaw::encode(pcm, &mut out);
                out
            }
            Self::Pcm24k => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }
}

/// A response being streamed.
#[derive(Debug)]
struct Active {
    response_id: String,
    item_id: String,
    pending: VecDeque<Value>,
    next_at: Instant,
    transcript: String,
}

struct Session {
    shared: Arc<Shared>,
    script: RealtimeScript,
    model: String,
    seq: u64,
    input: Format,
    output: Format,
    voice: String,
    instructions: String,
    create_response: bool,
    interrupt_response: bool,
    tools: Value,
    // VAD state.
    frame: Vec<i16>,
    audio_ms: u64,
    speaking: bool,
    quiet_ms: u64,
    input_item: Option<String>,
    // Conversation state.
    active: Option<Active>,
    /// Assistant items and their audio length in ms (for truncate validation).
    items: BTreeMap<String, u64>,
    responses: u32,
    /// Utterances committed.
    utterances: usize,
}

impl Session {
    fn new(shared: Arc<Shared>, script: RealtimeScript, model: String) -> Self {
        Self {
            shared,
            script,
            model,
            seq: 0,
            input: Format::Pcm24k,
            output: Format::Pcm24k,
            voice: "alloy".to_owned(),
            instructions: String::new(),
            create_response: true,
            interrupt_response: true,
            tools: json!([]),
            frame: Vec::new(),
            audio_ms: 0,
            speaking: false,
            quiet_ms: 0,
            input_item: None,
            active: None,
            items: BTreeMap::new(),
            responses: 0,
            utterances: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}_standin{:06}", self.seq)
    }

    fn event(&mut self, kind: &str, mut body: Value) -> Value {
        body["type"] = json!(kind);
        body["event_id"] = json!(self.id("event"));
        body
    }

    fn session_json(&mut self) -> Value {
        json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_standin",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "tools": self.tools,
            "audio": {
                "input": {
                    "format": self.input.json(),
                    "transcription": null,
                    "noise_reduction": null,
                    "turn_detection": {
                        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                        "silence_duration_ms": self.script.silence_ms,
                        "create_response": self.create_response,
                        "interrupt_response": self.interrupt_response,
                    },
                },
                "output": {"format": self.output.json(), "voice": self.voice, "speed": 1.0},
            },
        })
    }

    /// Serves the session; `true` when the client closed it with a close frame.
    async fn run(&mut self, mut socket: WebSocket) -> bool {
        let created = {
            let session = self.session_json();
            self.event("session.created", json!({"session": session}))
        };
        if send(&mut socket, &created).await.is_err() {
            return false;
        }
        let mut responses_done = 0;
        loop {
            let next_at = self.active.as_ref().map(|a| a.next_at);
            let out = tokio::select! {
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.handle_client(text.as_str()),
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Err(_)) | None => return false,
                    Some(Ok(_)) => Vec::new(),
                },
                () = sleep_until(next_at) => self.next_response_event(),
            };
            for event in out {
                if send(&mut socket, &event).await.is_err() {
                    return false;
                }
                if event["type"] == "response.done" {
                    responses_done += 1;
                    if self.script.drop_after_responses == Some(responses_done) {
                        // Dropping the socket closes the TCP connection without a close frame.
                        return false;
                    }
                }
            }
        }
    }

    fn handle_client(&mut self, text: &str) -> Vec<Value> {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return vec![self.error(
                "invalid_json",
                "The server could not parse the event as JSON.",
                None,
                None,
            )];
        };
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let event_id = event_id.as_deref();
        let mut logged = event.clone();
        if kind == "input_audio_buffer.append" {
            let len = event["audio"]
                .as_str()
                .and_then(|a| B64.decode(a).ok())
                .map(|a| a.len());
            logged["audio"] = json!(null);
            logged["audio_bytes"] = json!(len);
        }
        self.shared.record_realtime_event(logged);
        match kind.as_str() {
            "session.update" => self.session_update(&event["session"]),
            "input_audio_buffer.append" => {
                match event["audio"].as_str().and_then(|a| B64.decode(a).ok()) {
                    Some(bytes) => {
                        self.shared.record_realtime_audio(&bytes);
                        self.append(&bytes)
                    }
                    None => vec![self.error(
                        "invalid_value",
                        "Invalid 'audio': not base64.",
                        Some("audio"),
                        event_id,
                    )],
                }
            }
            "input_audio_buffer.commit" | "input_audio_buffer.clear" => Vec::new(),
            "response.create" if self.active.is_some() => {
                let active = self
                    .active
                    .as_ref()
                    .map(|a| a.response_id.clone())
                    .unwrap_or_default();
                vec![self.error(
                    "conversation_already_has_active_response",
                    &format!("Conversation already has an active response in progress: {active}. Wait until the response is finished before creating a new one."),
                    None,
                    event_id,
                )]
            }
            "response.create" => self.start_response(event["response"]["instructions"].as_str()),
            "response.cancel" => self.cancel_response(),
            "conversation.item.truncate" => self.truncate(&event, event_id),
            "conversation.item.create" => {
                let mut item = event["item"].clone();
                if item["id"].is_null() {
                    item["id"] = json!(self.id("item"));
                }
                item["object"] = json!("realtime.item");
                item["status"] = json!("completed");
                vec![
                    self.event(
                        "conversation.item.added",
                        json!({"previous_item_id": null, "item": item.clone()}),
                    ),
                    self.event(
                        "conversation.item.done",
                        json!({"previous_item_id": null, "item": item}),
                    ),
                ]
            }
            other => {
                let message = format!(
                    "Invalid value: '{other}'. Supported values are: 'session.update', 'input_audio_buffer.append', ..."
                );
                vec![self.error("invalid_value", &message, Some("type"), event_id)]
            }
        }
    }

    fn error(
        &mut self,
        code: &str,
        message: &str,
        param: Option<&str>,
        event_id: Option<&str>,
    ) -> Value {
        self.shared.record_realtime_error(code);
        self.event(
            "error",
            json!({"error": {"type": "invalid_request_error", "code": code, "message": message,
                             "param": param, "event_id": event_id}}),
        )
    }

    fn session_update(&mut self, session: &Value) -> Vec<Value> {
        if let Some(i) = session["instructions"].as_str() {
            i.clone_into(&mut self.instructions);
        }
        if let Some(f) = Format::parse(&session["audio"]["input"]["format"]) {
            self.input = f;
        }
        if let Some(f) = Format::parse(&session["audio"]["output"]["format"]) {
            self.output = f;
        }
        if let Some(v) = session["audio"]["output"]["voice"].as_str() {
            v.clone_into(&mut self.voice);
        }
        let td = &session["audio"]["input"]["turn_detection"];
        if let Some(c) = td["create_response"].as_bool() {
            self.create_response = c;
        }
        if let Some(c) = td["interrupt_response"].as_bool() {
            self.interrupt_response = c;
        }
        if session["tools"].is_array() {
            self.tools = session["tools"].clone();
        }
        let session = self.session_json();
        vec![self.event("session.updated", json!({"session": session}))]
    }

    /// Energy VAD over 20 ms frames of the input audio.
    fn append(&mut self, bytes: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut pcm = Vec::new();
        self.input.decode(bytes, &mut pcm);
        let frame_len = (self.input.rate() / 50) as usize;
        self.frame.extend_from_slice(&pcm);
        while self.frame.len() >= frame_len {
            let frame: Vec<i16> = self.frame.drain(..frame_len).collect();
            let mean = frame
                .iter()
                .map(|s| u64::from(s.unsigned_abs()))
                .sum::<u64>()
                / frame_len as u64;
            let loud = mean > u64::from(self.script.speech_threshold);
            if loud && !self.speaking {
                self.speaking = true;
                self.quiet_ms = 0;
                let item_id = self.id("item");
                self.input_item = Some(item_id.clone());
                out.push(self.event(
                    "input_audio_buffer.speech_started",
                    json!({"audio_start_ms": self.audio_ms, "item_id": item_id}),
                ));
                if self.interrupt_response && self.active.is_some() {
                    out.extend(self.cancel_response());
                }
            } else if self.speaking {
                self.quiet_ms = if loud { 0 } else { self.quiet_ms + 20 };
                if self.quiet_ms >= u64::from(self.script.silence_ms) {
                    out.extend(self.end_of_turn());
                }
            }
            self.audio_ms += 20;
        }
        out
    }

    fn end_of_turn(&mut self) -> Vec<Value> {
        self.speaking = false;
        let item_id = self.input_item.take().unwrap_or_default();
        let mut out = vec![
            self.event(
                "input_audio_buffer.speech_stopped",
                json!({"audio_end_ms": self.audio_ms + 20, "item_id": item_id}),
            ),
            self.event(
                "input_audio_buffer.committed",
                json!({"previous_item_id": null, "item_id": item_id}),
            ),
        ];
        self.utterances += 1;
        let transcript = self
            .script
            .caller_transcripts
            .get(self.utterances - 1)
            .unwrap_or(&self.script.caller_transcript)
            .clone();
        out.push(self.event(
            "conversation.item.input_audio_transcription.completed",
            json!({"item_id": item_id, "content_index": 0, "transcript": transcript,
                   "usage": {"type": "duration", "seconds": 1}}),
        ));
        if self.create_response {
            out.extend(self.start_response(None));
        }
        out
    }

    fn start_response(&mut self, instructions: Option<&str>) -> Vec<Value> {
        let mut out = self.cancel_response();
        self.responses += 1;
        let response_id = self.id("resp");
        let item_id = self.id("item");
        out.push(self.event(
            "response.created",
            json!({"response": {"id": response_id, "object": "realtime.response",
                                "status": "in_progress", "output": [],
                                "instructions": instructions}}),
        ));
        let mut pending = VecDeque::new();
        let (text, calls) = match usize::try_from(self.responses)
            .ok()
            .and_then(|n| self.script.responses.get(n - 1))
        {
            Some(response) => (response.text.clone(), response.tool_calls.clone()),
            None => (
                self.script.reply_text.clone(),
                self.script
                    .tool_call
                    .clone()
                    .filter(|_| self.responses == 1)
                    .into_iter()
                    .collect(),
            ),
        };
        let output_index = self.function_calls(&mut pending, &response_id, calls);
        if text.is_empty() {
            self.active = Some(Active {
                response_id,
                item_id: String::new(),
                pending,
                next_at: Instant::now(),
                transcript: text,
            });
            return out;
        }
        let audio = self.output.encode(&synthetic_speech_at(
            &text,
            self.script.ms_per_char,
            self.output.rate(),
        ));
        let bytes_per_delta = self.output.rate() as usize * self.script.delta_ms as usize / 1000
            * self.output.sample_bytes();
        let common = json!({"response_id": response_id, "item_id": item_id,
                            "output_index": output_index, "content_index": 0});
        let with = |kind: &str, extra: Value| {
            let mut v = common.clone();
            v["type"] = json!(kind);
            if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
                obj.extend(extra);
            }
            v
        };
        pending.push_back(
            json!({"type": "response.output_item.added", "response_id": response_id,
            "output_index": output_index, "item": {"id": item_id, "object": "realtime.item",
            "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
        );
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        let deltas: Vec<&[u8]> = audio.chunks(bytes_per_delta.max(1)).collect();
        for (i, chunk) in deltas.iter().enumerate() {
            pending.push_back(with(
                "response.output_audio.delta",
                json!({"delta": B64.encode(chunk)}),
            ));
            // Spread the transcript deltas over the audio.
            let from = i * words.len() / deltas.len();
            let to = (i + 1) * words.len() / deltas.len();
            if to > from {
                pending.push_back(with(
                    "response.output_audio_transcript.delta",
                    json!({"delta": words[from..to].concat()}),
                ));
            }
        }
        pending.push_back(with("response.output_audio.done", json!({})));
        pending.push_back(with(
            "response.output_audio_transcript.done",
            json!({"transcript": text}),
        ));
        pending.push_back(
            json!({"type": "response.output_item.done", "response_id": response_id,
            "output_index": output_index, "item": {"id": item_id, "object": "realtime.item",
            "type": "message", "role": "assistant", "status": "completed"}}),
        );
        let audio_ms = (audio.len() / self.output.sample_bytes()) as u64 * 1000
            / u64::from(self.output.rate());
        self.items.insert(item_id.clone(), audio_ms);
        self.active = Some(Active {
            response_id,
            item_id,
            pending,
            next_at: Instant::now(),
            transcript: text,
        });
        out
    }

    /// The events of a response's function calls (output items from 0); returns the next
    /// output index.
    fn function_calls(
        &mut self,
        pending: &mut VecDeque<Value>,
        response_id: &str,
        calls: Vec<ScriptedToolCall>,
    ) -> usize {
        let mut output_index = 0;
        for call in calls {
            let call_item = self.id("item");
            let call_id = self.id("call");
            pending.push_back(json!({"type": "response.output_item.added", "response_id": response_id,
                "output_index": output_index, "item": {"id": call_item, "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "call_id": call_id, "name": call.name, "arguments": ""}}));
            pending.push_back(json!({"type": "response.function_call_arguments.delta", "response_id": response_id,
                "item_id": call_item, "output_index": output_index, "call_id": call_id, "delta": call.arguments}));
            pending.push_back(
                json!({"type": "response.function_call_arguments.done", "response_id": response_id,
                "item_id": call_item, "output_index": output_index, "call_id": call_id, "name": call.name,
                "arguments": call.arguments}),
            );
            output_index += 1;
        }
        output_index
    }

    fn next_response_event(&mut self) -> Vec<Value> {
        let gap = self.script.delta_gap;
        let popped = match self.active.as_mut() {
            None => return Vec::new(),
            Some(active) => {
                let event = active.pending.pop_front();
                if event
                    .as_ref()
                    .is_some_and(|e| e["type"] == "response.output_audio.delta")
                {
                    active.next_at = Instant::now() + gap;
                }
                event
            }
        };
        if let Some(mut event) = popped {
            event["event_id"] = json!(self.id("event"));
            return vec![event];
        }
        let Some(done) = self.active.take() else {
            return Vec::new();
        };
        let output = if done.item_id.is_empty() {
            json!([])
        } else {
            json!([{"id": done.item_id, "type": "message", "role": "assistant",
                    "content": [{"type": "output_audio", "transcript": done.transcript}]}])
        };
        vec![self.event(
            "response.done",
            json!({"response": {"id": done.response_id, "object": "realtime.response",
                "status": "completed", "output": output}}),
        )]
    }

    fn cancel_response(&mut self) -> Vec<Value> {
        match self.active.take() {
            Some(a) => vec![self.event(
                "response.done",
                json!({"response": {"id": a.response_id, "object": "realtime.response",
                                    "status": "cancelled", "status_details": {"type": "cancelled", "reason": "turn_detected"},
                                    "output": []}}),
            )],
            None => Vec::new(),
        }
    }

    fn truncate(&mut self, event: &Value, event_id: Option<&str>) -> Vec<Value> {
        let item_id = event["item_id"].as_str().unwrap_or_default().to_owned();
        let end = event["audio_end_ms"].as_u64().unwrap_or(u64::MAX);
        match self.items.get(&item_id) {
            None => vec![self.error("item_not_found", &format!("Item with item_id not found: {item_id}"), Some("item_id"), event_id)],
            Some(&len) if end > len => vec![self.error(
                "invalid_value",
                &format!("Audio content of {len}ms is shorter than {end}ms"),
                Some("audio_end_ms"),
                event_id,
            )],
            Some(_) => vec![self.event(
                "conversation.item.truncated",
                json!({"item_id": item_id, "content_index": event["content_index"], "audio_end_ms": end}),
            )],
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut WebSocket, event: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(event.to_string().into())).await
}
