//! Streaming chat completions (`POST /v1/chat/completions`, `stream: true`, SSE).
//!
//! Text deltas become [`LlmEvent::Token`]s as they arrive. Tool calls arrive in pieces: the
//! first delta of a call carries its `index`, `id` and function `name`, later deltas for the
//! same `index` append to `arguments`. [`ToolCallAssembler`] (sans-IO) joins them and emits
//! complete [`LlmEvent::ToolCall`]s, in index order, when the choice reports its
//! `finish_reason`; then [`LlmEvent::Done`].

use std::collections::BTreeMap;

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, CreateChatCompletionStreamResponse, FinishReason as WireFinish,
    FunctionCall, FunctionObject,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{StageClient, map_openai_error, with_deadlines};
use crate::config::OpenAiLlmConfig;
use crate::openai::OpenAiEndpoint;
use crate::{
    ChatMessage, ChatRequest, FinishReason, Llm, LlmEvent, ProviderError, Role, Stage, ToolCall,
};

/// Streaming chat completion against an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    stage: StageClient,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl OpenAiLlm {
    /// A client for `endpoint` with `config`'s model, defaults and timeouts.
    pub fn new(endpoint: &OpenAiEndpoint, config: &OpenAiLlmConfig) -> Result<Self, String> {
        Ok(Self {
            stage: StageClient::new(endpoint, &config.model, config.timeouts)?,
            temperature: (config.temperature >= 0.0).then_some(config.temperature),
            max_tokens: (config.max_tokens > 0).then_some(config.max_tokens),
        })
    }

    /// The wire request for `request`.
    fn wire_request(&self, request: ChatRequest) -> CreateChatCompletionRequest {
        let tools = (!request.tools.is_empty()).then(|| {
            request
                .tools
                .into_iter()
                .map(|t| {
                    ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObject {
                            name: t.name,
                            description: Some(t.description),
                            parameters: Some(t.parameters),
                            strict: None,
                        },
                    })
                })
                .collect()
        });
        CreateChatCompletionRequest {
            model: self.stage.model.clone(),
            messages: request.messages.into_iter().map(wire_message).collect(),
            tools,
            temperature: request.temperature.or(self.temperature),
            max_completion_tokens: request.max_tokens.or(self.max_tokens),
            stream: Some(true),
            ..Default::default()
        }
    }
}

#[allow(deprecated)] // `function_call` is a deprecated field of the wire type.
fn wire_message(message: ChatMessage) -> ChatCompletionRequestMessage {
    match message.role {
        Role::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(message.content),
            name: None,
        }),
        Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(message.content),
            name: None,
        }),
        Role::Assistant => {
            let tool_calls = (!message.tool_calls.is_empty()).then(|| {
                message
                    .tool_calls
                    .into_iter()
                    .map(|c| {
                        ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                            id: c.id,
                            function: FunctionCall {
                                name: c.name,
                                arguments: c.arguments,
                            },
                        })
                    })
                    .collect()
            });
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: (!message.content.is_empty()).then_some(
                    ChatCompletionRequestAssistantMessageContent::Text(message.content),
                ),
                tool_calls,
                ..Default::default()
            })
        }
        Role::Tool => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: ChatCompletionRequestToolMessageContent::Text(message.content),
            tool_call_id: message.tool_call_id.unwrap_or_default(),
        }),
    }
}

impl Llm for OpenAiLlm {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<LlmEvent, ProviderError>> {
        let wire = self.wire_request(request);
        let client = self.stage.client.clone();
        let timeouts = self.stage.timeouts;
        tracing::debug!(model = %self.stage.model, "llm request");
        // Opening the request and every chunk share the first-byte/idle limits: the first
        // chunk must come within `first_byte_ms` of sending.
        let chunks = futures::stream::once(async move {
            client
                .chat()
                .create_stream(wire)
                .await
                .map_err(|e| map_openai_error(Stage::Llm, &timeouts, e))
        })
        .map(move |opened| match opened {
            Ok(stream) => stream
                .map(move |chunk| chunk.map_err(|e| map_openai_error(Stage::Llm, &timeouts, e)))
                .boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
        let chunks = with_deadlines(chunks, Stage::Llm, timeouts.first_byte, timeouts.idle);

        let mut assembler = ToolCallAssembler::default();
        let events = chunks
            .map(move |chunk| match chunk {
                Ok(chunk) => futures::stream::iter(
                    assembler
                        .handle_chunk(&chunk)
                        .into_iter()
                        .map(Ok)
                        .collect::<Vec<_>>(),
                ),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .flatten();
        with_end_check(events).boxed()
    }
}

/// Ends the stream after [`LlmEvent::Done`] or the first error, and turns an end without
/// `Done` (the server closed the connection mid-answer without an error) into `Protocol`.
fn with_end_check(
    events: impl futures::Stream<Item = Result<LlmEvent, ProviderError>> + Send + 'static,
) -> impl futures::Stream<Item = Result<LlmEvent, ProviderError>> + Send + 'static {
    events
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .scan(false, |over, item| {
            if *over {
                return futures::future::ready(None);
            }
            let out = if let Some(event) = item {
                *over = matches!(event, Ok(LlmEvent::Done(_)) | Err(_));
                event
            } else {
                *over = true;
                Err(ProviderError::Protocol {
                    stage: Stage::Llm,
                    message: "the stream ended before a finish_reason".to_owned(),
                })
            };
            futures::future::ready(Some(out))
        })
}

/// Joins streamed chat-completion chunks into [`LlmEvent`]s (sans-IO): tokens at once, tool
/// calls once complete, `Done` at the first `finish_reason`. Only choice 0 is used.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: BTreeMap<u32, ToolCall>,
    done: bool,
}

impl ToolCallAssembler {
    /// The events one chunk completes. Nothing after `Done` (e.g. a usage-only chunk).
    pub fn handle_chunk(&mut self, chunk: &CreateChatCompletionStreamResponse) -> Vec<LlmEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = &choice.delta.content
                && !text.is_empty()
            {
                out.push(LlmEvent::Token(text.clone()));
            }
            for delta in choice.delta.tool_calls.iter().flatten() {
                let call = self.calls.entry(delta.index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = &delta.id
                    && !id.is_empty()
                {
                    call.id.clone_from(id);
                }
                if let Some(function) = &delta.function {
                    if let Some(name) = &function.name {
                        // Some servers repeat the name on every delta; OpenAI sends it once.
                        if call.name.is_empty() {
                            call.name.clone_from(name);
                        }
                    }
                    if let Some(args) = &function.arguments {
                        call.arguments.push_str(args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                for (_, call) in std::mem::take(&mut self.calls) {
                    out.push(LlmEvent::ToolCall(call));
                }
                out.push(LlmEvent::Done(match reason {
                    WireFinish::Stop => FinishReason::Stop,
                    WireFinish::Length => FinishReason::Length,
                    WireFinish::ToolCalls | WireFinish::FunctionCall => FinishReason::ToolCalls,
                    WireFinish::ContentFilter => FinishReason::Other,
                }));
                self.done = true;
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: serde_json::Value) -> CreateChatCompletionStreamResponse {
        serde_json::from_value(json).expect("valid chunk")
    }

    fn base(delta: serde_json::Value, finish: Option<&str>) -> serde_json::Value {
        let mut chunk = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": null, "finish_reason": finish}]
        });
        chunk["choices"][0]["delta"] = delta;
        chunk
    }

    #[test]
    fn tokens_stream_and_tool_calls_assemble_in_index_order() {
        let mut a = ToolCallAssembler::default();
        let mut events = Vec::new();
        for c in [
            base(
                serde_json::json!({"role": "assistant", "content": ""}),
                None,
            ),
            base(serde_json::json!({"content": "Let me"}), None),
            base(serde_json::json!({"content": " check."}), None),
            base(
                serde_json::json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "b", "arguments": ""}}]}),
                None,
            ),
            base(
                serde_json::json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{\"x\""}}]}),
                None,
            ),
            base(
                serde_json::json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                None,
            ),
            base(
                serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
                None,
            ),
            base(serde_json::json!({}), Some("tool_calls")),
            // A usage chunk after the finish is ignored.
            serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}),
        ] {
            events.extend(a.handle_chunk(&chunk(c)));
        }
        assert_eq!(
            events,
            [
                LlmEvent::Token("Let me".into()),
                LlmEvent::Token(" check.".into()),
                LlmEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "a".into(),
                    arguments: "{\"x\": 1}".into()
                }),
                LlmEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "b".into(),
                    arguments: "{}".into()
                }),
                LlmEvent::Done(FinishReason::ToolCalls),
            ]
        );
        assert!(
            a.handle_chunk(&chunk(base(serde_json::json!({"content": "late"}), None)))
                .is_empty()
        );
    }

    #[test]
    fn assistant_tool_calls_and_results_go_on_the_wire() {
        let msg = wire_message(ChatMessage {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            tool_call_id: None,
        });
        let json = serde_json::to_value(&msg).expect("serialize");
        assert_eq!(json["role"], "assistant");
        assert!(json.get("content").is_none());
        assert_eq!(json["tool_calls"][0]["type"], "function");
        assert_eq!(json["tool_calls"][0]["function"]["name"], "f");
        let tool = wire_message(ChatMessage {
            role: Role::Tool,
            content: "{\"ok\":true}".into(),
            tool_calls: vec![],
            tool_call_id: Some("c1".into()),
        });
        let json = serde_json::to_value(&tool).expect("serialize");
        assert_eq!(json["role"], "tool");
        assert_eq!(json["tool_call_id"], "c1");
    }
}
