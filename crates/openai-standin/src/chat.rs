//! `POST /v1/chat/completions`: scripted replies, streamed as SSE or answered as one JSON.
//!
//! Stream shape (as OpenAI sends it): a first chunk with `{"role":"assistant","content":""}`,
//! one chunk per text token, for each tool call a chunk with its `index`, `id`, `type` and
//! function `name` (empty `arguments`) followed by argument pieces for the same `index`, a
//! last chunk with an empty delta and the `finish_reason`, then `data: [DONE]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{
    Endpoint, HANG, Reply, Shared, StreamGuard, api_error, authorization, fault_response,
    paced_body, tokens,
};

/// Characters per streamed tool-argument piece.
const ARGUMENT_PIECE: usize = 7;

pub(crate) async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            shared.record(
                Endpoint::ChatCompletions,
                authorization(&headers),
                Value::Null,
            );
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("We could not parse the JSON body of your request. ({e})"),
                "invalid_request_error",
                None,
            );
        }
    };
    let (id, fault) = shared.record(
        Endpoint::ChatCompletions,
        authorization(&headers),
        request.clone(),
    );
    if let Some(response) = fault.and_then(fault_response) {
        return response;
    }
    let Some(messages) = request["messages"].as_array().filter(|m| !m.is_empty()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "invalid_request_error",
            Some("empty_array"),
        );
    };
    let Some(model) = request["model"].as_str().map(str::to_owned) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(message_text)
        .unwrap_or_default();
    let reply = shared.reply_for(&last_user);
    let latency = shared.config().latency;
    let stream = request["stream"].as_bool().unwrap_or(false);

    if !stream {
        let wait = if fault.is_some() {
            HANG
        } else {
            latency.first_token
        };
        tokio::time::sleep(wait).await;
        return axum::Json(completion_json(id, &model, &reply)).into_response();
    }

    let chunks = stream_chunks(id, &model, &reply)
        .into_iter()
        .map(Bytes::from)
        .collect();
    let guard = StreamGuard::new(shared, id, Endpoint::ChatCompletions);
    let body = paced_body(chunks, latency.first_token, latency.token_gap, fault, guard);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Text of a message whose content is a string or an array of `{"type":"text"}` parts.
fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn call_id(request: u64, index: usize) -> String {
    format!("call_{request}_{index}")
}

/// The SSE events (each `data: ...\n\n`) of a streamed reply, `[DONE]` last.
fn stream_chunks(id: u64, model: &str, reply: &Reply) -> Vec<String> {
    let chunk = |delta: Value, finish: Option<&str>| {
        let value = json!({
            "id": format!("chatcmpl-standin-{id}"),
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u32,
            "model": model,
            "system_fingerprint": "fp_standin",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        format!("data: {value}\n\n")
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )];
    for token in tokens(&reply.text) {
        out.push(chunk(json!({"content": token}), None));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{
                "index": index, "id": call_id(id, index), "type": "function",
                "function": {"name": call.name, "arguments": ""}
            }]}),
            None,
        ));
        let chars: Vec<char> = call.arguments.chars().collect();
        for piece in chars.chunks(ARGUMENT_PIECE) {
            let piece: String = piece.iter().collect();
            out.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    out.push(chunk(json!({}), Some(finish_reason(reply))));
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// A non-streamed `chat.completion`.
fn completion_json(id: u64, model: &str, reply: &Reply) -> Value {
    let tool_calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            json!({"id": call_id(id, index), "type": "function",
                   "function": {"name": call.name, "arguments": call.arguments}})
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if reply.text.is_empty() { Value::Null } else { Value::String(reply.text.clone()) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let completion_tokens = tokens(&reply.text).len();
    json!({
        "id": format!("chatcmpl-standin-{id}"),
        "object": "chat.completion",
        "created": 1_700_000_000u32,
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(reply)}],
        "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens,
                  "total_tokens": 10 + completion_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_chunks_are_valid_json_and_end_with_done() {
        let reply = Reply::text("Hi there").with_tool_call("lookup", r#"{"id": 12345}"#);
        let chunks = stream_chunks(3, "m", &reply);
        assert_eq!(chunks.last().map(String::as_str), Some("data: [DONE]\n\n"));
        let parsed: Vec<Value> = chunks[..chunks.len() - 1]
            .iter()
            .map(|c| {
                let data = c
                    .strip_prefix("data: ")
                    .and_then(|c| c.strip_suffix("\n\n"))
                    .expect("sse");
                serde_json::from_str(data).expect("json")
            })
            .collect();
        assert_eq!(parsed[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            parsed[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        let args: String = parsed[4..parsed.len() - 1]
            .iter()
            .filter_map(|p| {
                p["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, r#"{"id": 12345}"#);
        assert_eq!(
            parsed.last().expect("finish")["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }
}
