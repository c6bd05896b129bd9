//! OpenAI-compatible providers (OpenAI, vLLM, llama.cpp server, Ollama, faster-whisper
//! servers) over async-openai: [`OpenAiAsr`] (`/v1/audio/transcriptions`), [`OpenAiLlm`]
//! (streaming `/v1/chat/completions`) and [`OpenAiTts`] (`/v1/audio/speech`).
//!
//! Shared here: the HTTP client each stage gets (its own connect timeout), the mapping of HTTP
//! failures to [`ProviderError`] (429 -> `RateLimited` with `Retry-After`, 5xx -> `Server`, other
//! 4xx -> `Rejected`, each with the provider's error message), and the per-stream time limits
//! (time to first item, idle gap between items) that end a stream with `Timeout`.
//!
//! Retries: async-openai's default executor retries 429/5xx/connect errors up to three times
//! with backoff, sleeping up to `Retry-After`. That would hide rate limits from the pipeline
//! and blow its turn budget, so every client here is built with
//! [`Client::with_http_service`](async_openai::Client::with_http_service) around a plain
//! [`ReqwestService`] plus [`StatusLayer`]: exactly one attempt, and the status, headers and
//! body of a failed response are kept for the error.

mod asr;
mod llm;
mod tts;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};

pub use asr::OpenAiAsr;
pub use llm::{OpenAiLlm, ToolCallAssembler};
pub use tts::{OpenAiTts, TTS_SAMPLE_RATE};

use super::config::{Secret, StageTimeouts};
use super::{ProviderError, Stage};

/// Where one stage's OpenAI-compatible server is: resolved by the config builder.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiEndpoint {
    /// Base URL including `/v1`, without a trailing `/`.
    pub base_url: String,
    /// The key (may be empty for self-hosted servers).
    pub api_key: Secret,
}

impl std::fmt::Debug for OpenAiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEndpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl OpenAiEndpoint {
    /// An endpoint (e.g. a stand-in's `base_url()`), with an optional key.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: Secret::new(api_key),
        }
    }
}

/// The reqwest client for one stage: connect timeout, no overall timeout (streams are bounded
/// by first-byte and idle limits instead), a bounded idle pool.
pub(crate) fn http_client(timeouts: &StageTimeouts) -> Result<reqwest::Client, String> {
    voxbridge_config::tls::install_ring_provider();
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// An async-openai client for `endpoint` that makes exactly one attempt per request.
pub(crate) fn openai_client(
    endpoint: &OpenAiEndpoint,
    http: &reqwest::Client,
) -> Client<OpenAIConfig> {
    let config = OpenAIConfig::new()
        .with_api_base(endpoint.base_url.clone())
        .with_api_key(endpoint.api_key.expose().to_owned())
        // The defaults read OPENAI_ORG_ID/OPENAI_PROJECT_ID from the environment; a
        // self-hosted server must not receive them.
        .with_org_id("")
        .with_project_id("");
    Client::build(http.clone(), config).with_http_service(StatusLayer {
        inner: ReqwestService::new(http.clone()),
    })
}

/// An async-openai client for one stage, with its model and time limits.
#[derive(Clone)]
pub(crate) struct StageClient {
    pub(crate) client: Client<OpenAIConfig>,
    pub(crate) model: String,
    pub(crate) timeouts: StageTimeouts,
}

impl std::fmt::Debug for StageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use async_openai::config::Config as _;
        f.debug_struct("StageClient")
            .field("base_url", &self.client.config().api_base())
            .field("model", &self.model)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl StageClient {
    pub(crate) fn new(
        endpoint: &OpenAiEndpoint,
        model: &str,
        timeouts: StageTimeouts,
    ) -> Result<Self, String> {
        let http = http_client(&timeouts)?;
        Ok(Self {
            client: openai_client(endpoint, &http),
            model: model.to_owned(),
            timeouts,
        })
    }
}

/// A failed HTTP response, kept whole (async-openai's own error drops the headers, so
/// `Retry-After` would be lost).
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub(crate) struct HttpStatusError {
    status: StatusCode,
    retry_after: Option<Duration>,
    message: String,
}

/// Tower service that turns a non-2xx response into [`HttpStatusError`] (and does nothing
/// else: no retries).
#[derive(Clone, Debug)]
pub(crate) struct StatusLayer {
    inner: ReqwestService,
}

impl tower::Service<HttpRequestFactory> for StatusLayer {
    type Response = Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, OpenAIError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if response.status().is_success() {
                return Ok(response);
            }
            Err(OpenAIError::Boxed(Box::new(
                HttpStatusError::read(response).await,
            )))
        })
    }
}

/// Longest provider error message kept (bodies of misconfigured proxies can be whole pages).
const MAX_MESSAGE: usize = 500;

impl HttpStatusError {
    /// Reads a failed response: status, `Retry-After`, and the message of an OpenAI error body
    /// (`{"error":{"message":..}}`), else the body text.
    pub(crate) async fn read(response: Response) -> Self {
        let status = response.status();
        let retry_after = retry_after_of(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        Self {
            status,
            retry_after,
            message: error_message(&body),
        }
    }

    fn into_provider_error(self, stage: Stage) -> ProviderError {
        status_error(stage, self.status, self.retry_after, self.message)
    }
}

/// The message of an OpenAI error body, or the (truncated) body text.
pub(crate) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: String,
    }
    let mut message = match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => w.error.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `retry-after-ms` (OpenAI sends it) or `Retry-After` in (possibly fractional) seconds. The
/// HTTP-date form is not used by OpenAI-compatible servers and is ignored.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
}

/// Maps an HTTP status to the error kind the pipeline acts on.
pub(crate) fn status_error(
    stage: Stage,
    status: StatusCode,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        ProviderError::RateLimited { stage, retry_after }
    } else if status.is_server_error() {
        ProviderError::Server {
            stage,
            status: status.as_u16(),
            message,
        }
    } else {
        ProviderError::Rejected {
            stage,
            status: status.as_u16(),
            message,
        }
    }
}

/// Maps an async-openai error (with [`StatusLayer`] installed) to a [`ProviderError`].
pub(crate) fn map_openai_error(
    stage: Stage,
    timeouts: &StageTimeouts,
    error: OpenAIError,
) -> ProviderError {
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatusError>() {
            Ok(http) => http.into_provider_error(stage),
            Err(other) => match other.downcast::<reqwest::Error>() {
                Ok(e) => map_reqwest_error(stage, timeouts, &e),
                Err(other) => ProviderError::Transport {
                    stage,
                    message: other.to_string(),
                },
            },
        },
        OpenAIError::ApiError(api) => {
            status_error(stage, api.status_code, None, api.api_error.message)
        }
        OpenAIError::Reqwest(e) => map_reqwest_error(stage, timeouts, &e),
        OpenAIError::JSONDeserialize(e, _) => ProviderError::Protocol {
            stage,
            message: format!("unexpected JSON from the server: {e}"),
        },
        OpenAIError::StreamError(e) => ProviderError::Transport {
            stage,
            message: format!("stream failed: {e}"),
        },
        other => ProviderError::Protocol {
            stage,
            message: other.to_string(),
        },
    }
}

/// Connect timeouts become `Timeout`; everything else on the wire is `Transport`.
pub(crate) fn map_reqwest_error(
    stage: Stage,
    timeouts: &StageTimeouts,
    error: &reqwest::Error,
) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout {
            stage,
            after: timeouts.connect,
        }
    } else {
        // The Display of reqwest errors carries the URL but never headers: no key leaks.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        ProviderError::Transport { stage, message }
    }
}

/// Bounds a provider stream: the first item must arrive within `first_byte`, each later one
/// within `idle` of the previous. On expiry the stream yields one `Timeout` error and ends,
/// dropping (cancelling) the inner stream. Items pass through unchanged otherwise.
pub(crate) fn with_deadlines<S, T>(
    stream: S,
    stage: Stage,
    first_byte: Duration,
    idle: Duration,
) -> impl Stream<Item = Result<T, ProviderError>> + Send + 'static
where
    S: Stream<Item = Result<T, ProviderError>> + Send + 'static,
    T: Send + 'static,
{
    futures::stream::unfold(
        (Some(Box::pin(stream)), first_byte),
        move |(inner, limit)| async move {
            let mut inner = inner?;
            match tokio::time::timeout(limit, inner.next()).await {
                Ok(Some(item)) => Some((item, (Some(inner), idle))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ProviderError::Timeout {
                        stage,
                        after: limit,
                    }),
                    (None, idle),
                )),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_map_to_error_kinds() {
        let e = status_error(
            Stage::Llm,
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            "slow".into(),
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                stage: Stage::Llm,
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            status_error(Stage::Tts, StatusCode::BAD_GATEWAY, None, "x".into()),
            ProviderError::Server { status: 502, .. }
        ));
        assert!(matches!(
            status_error(Stage::Asr, StatusCode::UNAUTHORIZED, None, "x".into()),
            ProviderError::Rejected { status: 401, .. }
        ));
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_ignores_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_of(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after_of(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("1250"));
        assert_eq!(retry_after_of(&h), Some(Duration::from_millis(1250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_of(&h), None);
        h.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after_of(&h), None);
    }

    #[test]
    fn error_message_reads_openai_bodies_and_truncates_pages() {
        let body = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(error_message(body), "Incorrect API key provided");
        assert_eq!(error_message(b"  upstream timeout \n"), "upstream timeout");
        let page = "é".repeat(400);
        let cut = error_message(page.as_bytes());
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8() && cut.ends_with('…'));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_bound_first_item_and_gaps() {
        let slow_first = futures::stream::once(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ProviderError>(1)
        });
        let items: Vec<_> = with_deadlines(
            slow_first,
            Stage::Tts,
            Duration::from_secs(1),
            Duration::from_secs(10),
        )
        .collect()
        .await;
        assert_eq!(
            items,
            [Err(ProviderError::Timeout {
                stage: Stage::Tts,
                after: Duration::from_secs(1)
            })]
        );

        let gap = futures::stream::iter([0u64, 100, 3_000]).then(|ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, ProviderError>(ms)
        });
        let items: Vec<_> = with_deadlines(
            gap,
            Stage::Llm,
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .collect()
        .await;
        assert_eq!(
            items,
            [
                Ok(0),
                Ok(100),
                Err(ProviderError::Timeout {
                    stage: Stage::Llm,
                    after: Duration::from_secs(2)
                })
            ]
        );
    }
}
