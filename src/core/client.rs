//! The chat client: turns one `sendMessage` call into a request, runs it under the call's
//! deadline, idle timeout and cancellation, streams deltas to a sink, and stores both messages.
//!
//! Every await point goes through [`ChatClient::guarded`], which races it against the
//! cancellation token, the whole-call deadline and (for body reads) the idle timeout. Doing it per
//! await point rather than around the whole call keeps the text received so far, so a timeout or
//! abort mid-stream can still report `partialText`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::chat::{build_body, parse_completion, Completion, PromptMessage, StreamState, StreamStep, Usage};
use super::config::{check_completion_params, default_system_message, ClientConfig};
use super::conversation::{
    build_prompt, Budget, BuiltPrompt, ConversationStore, MessageStore, StoredMessage, TokenCountCache, Truncation,
};
use super::error::{ChatError, ErrorCode};
use super::sse::{SseDecoder, SseError, SseEvent};
use super::tokens::{self, Encoding};
use super::transport::{network_error, read_capped, too_large, Transport};

/// One call's options (the `sendMessage` options minus the JS-only ones).
#[derive(Debug, Default, Clone)]
pub struct SendRequest {
    pub text: String,
    /// Overrides the instance's system message for this call; `Some("")` sends none.
    pub system_message: Option<String>,
    /// Merged over the instance's `completionParams`.
    pub completion_params: Option<Map<String, Value>>,
    /// Id of the user message (a UUID v4 when absent).
    pub message_id: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The user's `name` field.
    pub name: Option<String>,
    pub stream: bool,
    /// Overrides the instance's `timeoutMs` for this call.
    pub timeout: Option<Duration>,
}

/// What a sink sees for each delta.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The completion id (`chatcmpl-...`), once the server sent one.
    pub id: &'a str,
    pub delta: &'a str,
    /// Everything received so far, this delta included.
    pub text: &'a str,
    /// The user message's id: the reply's `parentMessageId`.
    pub parent_message_id: &'a str,
    pub conversation_id: Option<&'a str>,
}

/// Receives content deltas in order. Implementations must be cheap: this runs per delta.
pub trait DeltaSink: Send {
    fn on_delta(&mut self, progress: &Progress<'_>);
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub id: String,
    pub text: String,
    pub role: String,
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
    pub detail: Value,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    pub request_id: Option<String>,
    /// Number of content deltas delivered (0 for non-streaming calls).
    pub deltas: u32,
    /// Ancestors sent as history, and why the walk stopped early (if it did).
    pub history_messages: u32,
    pub truncated: Option<Truncation>,
}

/// A request ready to send: body parameters, prompt and the model's encoding.
pub struct PreparedRequest {
    pub params: Map<String, Value>,
    pub model: String,
    pub encoding: Encoding,
    pub prompt: BuiltPrompt,
    pub message_id: String,
}

/// One configured client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ChatClient {
    cfg: ClientConfig,
    transport: Transport,
    store: Arc<dyn ConversationStore>,
    counts: TokenCountCache,
}

/// Models that take `max_completion_tokens` and reject `max_tokens`.
fn uses_max_completion_tokens(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    m.starts_with("gpt-5") || m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4")
}

impl ChatClient {
    /// A client with the default in-memory store, or `store` when given.
    pub fn new(cfg: ClientConfig, store: Option<Arc<dyn ConversationStore>>) -> Result<Self, ChatError> {
        let transport = Transport::new(&cfg)?;
        let store = store.unwrap_or_else(|| Arc::new(MessageStore::new(cfg.message_store_size)));
        let counts = TokenCountCache::new(cfg.message_store_size);
        Ok(ChatClient {
            cfg,
            transport,
            store,
            counts,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Resolve parameters and build the prompt (history within the token budget) without
    /// sending anything: what `send` would send.
    pub async fn prepare(&self, req: &SendRequest) -> Result<PreparedRequest, ChatError> {
        let message_id = req
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut params = self.cfg.completion_params.clone();
        if let Some(call_params) = &req.completion_params {
            check_completion_params(call_params, "completionParams")?;
            params.extend(call_params.clone());
        }
        let model = params
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let encoding = Encoding::for_model(&model);

        let system = req.system_message.clone().or_else(|| self.cfg.system_message.clone());
        let system = system.unwrap_or_else(default_system_message);
        let system = (!system.is_empty()).then(|| PromptMessage {
            role: "system".into(),
            content: system,
            name: None,
        });
        let user = PromptMessage {
            role: "user".into(),
            content: req.text.clone(),
            name: req.name.clone(),
        };
        let budget = Budget {
            max_model_tokens: self.cfg.max_model_tokens,
            max_response_tokens: self.cfg.max_response_tokens,
            encoding,
        };
        let prompt = build_prompt(
            &*self.store,
            &self.counts,
            &budget,
            system,
            user,
            req.parent_message_id.as_deref(),
        )
        .await?;

        // The caller's own max_tokens wins, as in `chatgpt` v5's body spread.
        if !params.contains_key("max_tokens") && !params.contains_key("max_completion_tokens") {
            let key = if uses_max_completion_tokens(&model) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            params.insert(key.into(), Value::from(prompt.max_tokens));
        }
        Ok(PreparedRequest {
            params,
            model,
            encoding,
            prompt,
            message_id,
        })
    }

    /// Send one message. `sink` receives deltas when `req.stream` is set.
    pub async fn send(
        &self,
        req: SendRequest,
        sink: Option<&mut dyn DeltaSink>,
        cancel: &CancellationToken,
    ) -> Result<ChatReply, ChatError> {
        // An already-aborted signal must reject before anything is sent.
        if cancel.is_cancelled() {
            return Err(ChatError::aborted());
        }
        let started = Instant::now();
        let timeout = req.timeout.unwrap_or(self.cfg.timeout);
        let deadline = started + timeout;
        let g = Guard {
            deadline,
            timeout,
            idle: self.cfg.idle_timeout,
            cancel,
        };

        // A JS store is awaited here, so the history walk is bounded by the deadline and abort too.
        let prepared = g.run(self.prepare(&req), false).await?;
        let PreparedRequest {
            params,
            model,
            encoding,
            prompt,
            message_id,
        } = prepared;
        let prompt_tokens = prompt.prompt_tokens;

        let body = Bytes::from(build_body(&params, &prompt.messages, req.stream));
        let progress_ids = ProgressIds {
            parent: &message_id,
            conversation: req.conversation_id.as_deref(),
        };
        let outcome = self.run(body, req.stream, &g, sink, progress_ids).await;
        if self.cfg.debug {
            self.debug_log(&model, req.stream, started.elapsed(), &outcome);
        }
        let (completion, request_id, deltas) = outcome?;

        let usage = completion.usage.unwrap_or_else(|| {
            let completion_tokens = encoding.count(&completion.text) as u32;
            Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                estimated: true,
            }
        });
        let reply = ChatReply {
            id: completion.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            text: completion.text,
            role: completion.role,
            parent_message_id: message_id.clone(),
            conversation_id: req.conversation_id.clone(),
            detail: completion.detail,
            usage,
            finish_reason: completion.finish_reason,
            request_id,
            deltas,
            history_messages: prompt.history_messages,
            truncated: prompt.truncated,
        };

        // Store both messages (awaited, as `chatgpt` v5 does) so the reply's id can be the next
        // call's parentMessageId. Their token counts are known now: cache them for that walk.
        let user_message = StoredMessage {
            id: message_id,
            role: "user".into(),
            text: req.text,
            name: req.name,
            parent_message_id: req.parent_message_id,
            conversation_id: req.conversation_id.clone(),
        };
        let reply_message = StoredMessage {
            id: reply.id.clone(),
            role: reply.role.clone(),
            text: reply.text.clone(),
            name: None,
            parent_message_id: Some(reply.parent_message_id.clone()),
            conversation_id: req.conversation_id,
        };
        if let Some(user) = prompt.messages.last() {
            self.counts
                .remember(encoding, &user_message, tokens::message_tokens(encoding, user) as u32);
        }
        g.run(self.store.upsert(user_message), false).await?;
        g.run(self.store.upsert(reply_message), false).await?;
        Ok(reply)
    }

    async fn run(
        &self,
        body: Bytes,
        stream: bool,
        g: &Guard<'_>,
        sink: Option<&mut dyn DeltaSink>,
        ids: ProgressIds<'_>,
    ) -> Result<(Completion, Option<String>, u32), ChatError> {
        let resp = g.run(self.transport.post_chat(body, stream), false).await?;
        let request_id = resp.request_id.clone();
        let max = self.transport.max_response_bytes();
        if !stream {
            let bytes = g
                .run(read_capped(resp.inner, max), true)
                .await
                .map_err(|e| e.with_request_id(request_id.as_deref()))?;
            let completion = parse_completion(&bytes).map_err(|e| e.with_request_id(request_id.as_deref()))?;
            return Ok((completion, request_id, 0));
        }

        let mut body = resp.inner;
        let mut decoder = SseDecoder::new(max);
        let mut state = StreamState::default();
        let mut events: Vec<SseEvent> = Vec::new();
        let mut received = 0usize;
        let mut deltas = 0u32;
        let mut sink = sink;
        let fail = |e: ChatError, text: &str| e.with_partial_text(text).with_request_id(request_id.as_deref());
        'read: loop {
            let chunk = g
                .run(async { body.chunk().await.map_err(network_error) }, true)
                .await
                .map_err(|e| fail(e, &state.text))?;
            match &chunk {
                Some(bytes) => {
                    received += bytes.len();
                    if received > max {
                        return Err(fail(too_large(max), &state.text));
                    }
                    decoder
                        .feed(bytes, &mut events)
                        .map_err(|e| fail(sse_error(e, max), &state.text))?;
                }
                None => decoder.finish(&mut events),
            }
            for ev in events.drain(..) {
                match state.on_event(&ev).map_err(|e| fail(e, &state.text))? {
                    StreamStep::Delta(delta) => {
                        deltas += 1;
                        if let Some(s) = sink.as_deref_mut() {
                            s.on_delta(&Progress {
                                id: state.id.as_deref().unwrap_or(""),
                                delta: &delta,
                                text: &state.text,
                                parent_message_id: ids.parent,
                                conversation_id: ids.conversation,
                            });
                        }
                    }
                    StreamStep::Done => break 'read,
                    StreamStep::Nothing => {}
                }
            }
            if chunk.is_none() {
                break;
            }
        }
        if state.done {
            // Nothing after [DONE] is processed. One non-waiting poll lets an end-of-body that has
            // already arrived complete, which returns the connection to the keep-alive pool.
            let _ = body.chunk().now_or_never();
        }
        let completion = state.finish().map_err(|e| e.with_request_id(request_id.as_deref()))?;
        Ok((completion, request_id, deltas))
    }

    fn debug_log(
        &self,
        model: &str,
        stream: bool,
        elapsed: Duration,
        outcome: &Result<(Completion, Option<String>, u32), ChatError>,
    ) {
        // Never the key, never the prompt: only what helps find a request in server logs.
        match outcome {
            Ok((c, rid, _)) => eprintln!(
                "[chatgpt-native] POST {}/chat/completions model={model} stream={stream} -> ok in {} ms, finish={} request_id={}",
                self.cfg.api_base_url,
                elapsed.as_millis(),
                c.finish_reason.as_deref().unwrap_or("-"),
                rid.as_deref().unwrap_or("-"),
            ),
            Err(e) => eprintln!(
                "[chatgpt-native] POST {}/chat/completions model={model} stream={stream} -> {} status={} in {} ms request_id={}",
                self.cfg.api_base_url,
                e.code,
                e.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                elapsed.as_millis(),
                e.request_id.as_deref().unwrap_or("-"),
            ),
        }
    }
}

#[derive(Clone, Copy)]
struct ProgressIds<'a> {
    parent: &'a str,
    conversation: Option<&'a str>,
}

fn sse_error(e: SseError, max: usize) -> ChatError {
    match e {
        SseError::EventTooLarge { .. } => too_large(max),
    }
}

/// Races one await point against cancellation, the call's deadline and (for body reads) the
/// idle timeout.
struct Guard<'a> {
    deadline: Instant,
    timeout: Duration,
    idle: Duration,
    cancel: &'a CancellationToken,
}

impl Guard<'_> {
    async fn run<T>(&self, fut: impl Future<Output = Result<T, ChatError>>, idle: bool) -> Result<T, ChatError> {
        let idle_limit = if idle { Some(self.idle) } else { None };
        let idle_sleep = async move {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ChatError::aborted()),
            _ = tokio::time::sleep_until(self.deadline) => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The request timed out after {} ms (`timeoutMs`)", self.timeout.as_millis()),
            )),
            _ = idle_sleep => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The stream was idle for more than {} ms (`idleTimeoutMs`)", self.idle.as_millis()),
            )),
            r = fut => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models_use_max_completion_tokens() {
        assert!(uses_max_completion_tokens("gpt-5-mini"));
        assert!(uses_max_completion_tokens("o3"));
        assert!(!uses_max_completion_tokens("gpt-4.1-mini"));
        assert!(!uses_max_completion_tokens("llama-3"));
    }

    #[tokio::test(start_paused = true)]
    async fn guard_times_out_at_the_deadline() {
        let cancel = CancellationToken::new();
        let g = Guard {
            deadline: Instant::now() + Duration::from_millis(50),
            timeout: Duration::from_millis(50),
            idle: Duration::from_secs(10),
            cancel: &cancel,
        };
        let r: Result<(), _> = g.run(std::future::pending(), false).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn guard_idle_timeout_applies_only_to_body_reads() {
        let cancel = CancellationToken::new();
        let g = Guard {
            deadline: Instant::now() + Duration::from_secs(100),
            timeout: Duration::from_secs(100),
            idle: Duration::from_millis(20),
            cancel: &cancel,
        };
        let r: Result<(), _> = g.run(std::future::pending(), true).await;
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.message.contains("idleTimeoutMs"));
    }

    #[tokio::test]
    async fn guard_prefers_cancellation() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let g = Guard {
            deadline: Instant::now(),
            timeout: Duration::ZERO,
            idle: Duration::ZERO,
            cancel: &cancel,
        };
        let r: Result<(), _> = g.run(async { Ok(()) }, true).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Aborted);
    }
}
