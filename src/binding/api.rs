//! `ChatGPTAPI`: the drop-in for the `chatgpt` package's class of the same name.
//!
//! This file only converts: JS options to core requests (read in `requests.rs`), AbortSignals to
//! cancellation tokens, `onProgress` to a [`ProgressSink`], and core results and errors back to
//! JS (replies as `message.rs` serialises them). All HTTP, SSE and protocol work happens in
//! `crate::core` on napi's tokio runtime, off the JS thread.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use super::batch::{item_to_js, ItemSink};
use super::convert::caught;
use super::debug::JsDebugLog;
use super::errors::{invalid_arg, promise_or_rejection, to_napi_error, type_error};
use super::message::{history, message_to_js, serialize_message, BuiltMessages, PromptMessageJs};
use super::metrics::ChatMetrics;
use super::options::{describe, emit_warning, Opts};
use super::progress::{deadline_after, ProgressSink};
use super::requests::{read_call, read_client_options, read_inputs, read_messages_call, SEND_MANY_OPTIONS};
use super::settle;
use super::store::{JsStore, JsStoreParts};
use crate::core::client::{ChatClient, SendRequest};
use crate::core::config::{ApiKey, ClientConfig};
use crate::core::conversation::ConversationStore;
use crate::core::redact::{fingerprint, redact_url};
use std::sync::{Mutex, PoisonError};

/// A Promise already resolved with `value` (napi's deferred, resolved on the spot).
fn resolved_promise<'env, T: ToNapiValue>(env: &'env Env, value: T) -> Result<PromiseRaw<'env, T>> {
    let raw_env = env.raw();
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    unsafe {
        napi::check_status!(napi::sys::napi_create_promise(raw_env, &mut deferred, &mut promise))?;
        let value = T::to_napi_value(raw_env, value)?;
        napi::check_status!(napi::sys::napi_resolve_deferred(raw_env, deferred, value))?;
        Ok(PromiseRaw::new(raw_env, promise))
    }
}

/// The `code` of the process warning emitted once when coordination falls back to this process's own
/// limits, key health, breaker and cache (Redis failed or was slower than `coordination.redis.operationTimeoutMs`).
pub const COORDINATION_FALLBACK_WARNING: &str = "CHATGPT_NATIVE_COORDINATION_FALLBACK";

/// Client for OpenAI-compatible chat-completions APIs; a drop-in for `chatgpt`'s `ChatGPTAPI`.
#[napi(js_name = "ChatGPTAPI")]
pub struct ChatGPTAPI {
    /// Replaced as a whole when `apiKey` or `apiOrg` is set; every call clones the `Arc` it
    /// starts with, so calls in flight are unaffected.
    client: Mutex<Arc<ChatClient>>,
}

#[napi]
impl ChatGPTAPI {
    /// Create a client. Throws `ERR_CHATGPT_INVALID_ARG` for a missing key, a bad option or an
    /// unknown option (with a did-you-mean); `fetch`, which the `chatgpt` package accepts, is
    /// ignored with a one-time warning. Called without `new`, throws a `TypeError`.
    #[napi(constructor, ts_args_type = "options?: ChatGPTAPIOptions")]
    pub fn new(env: Env, this: This, options: Option<Unknown>) -> Result<Self> {
        // Without `new`, `this` is the global object (or whatever `.call` passed): wrapping it
        // would succeed once and corrupt it. Only an object made by `new` for this class (or a
        // subclass) passes napi-rs's generated instanceof check.
        if unsafe { <&ChatGPTAPI as ValidateNapiValue>::validate(env.raw(), this.object.raw()) }.is_err() {
            return Err(type_error(
                &env,
                "Class constructor ChatGPTAPI cannot be invoked without 'new'",
            ));
        }
        let o = Opts::from_arg(&env, options, "options")?;
        let client_opts = read_client_options(&o)?;
        let get_message_by_id = o.function("getMessageById")?;
        let upsert_message = o.function("upsertMessage")?;
        let message_store = o.object("messageStore")?;
        // As in the `chatgpt` package, each hook may come alone and with `messageStore`: an
        // operation is its hook's, else `messageStore`'s, else the in-memory store's.
        if let Some(store) = &message_store {
            for method in ["get", "set"] {
                let f: Option<Unknown> = store.get(method).map_err(|e| {
                    let thrown = caught(&env, &e);
                    invalid_arg(&env, format!("Reading `messageStore.{method}` threw {thrown}"))
                })?;
                if !matches!(f.map(|f| f.get_type()), Some(Ok(ValueType::Function))) {
                    return Err(invalid_arg(
                        &env,
                        format!("Expected `messageStore.{method}` to be a function"),
                    ));
                }
            }
        }
        let cfg = ClientConfig::build(client_opts).map_err(|e| to_napi_error(&env, &e))?;
        let given = get_message_by_id.is_some() || upsert_message.is_some() || message_store.is_some();
        let store: Option<Arc<dyn ConversationStore>> = if given {
            let parts = JsStoreParts {
                get_message_by_id,
                upsert_message,
                message_store,
            };
            Some(Arc::new(JsStore::new(&env, parts, cfg.message_store_size)?))
        } else {
            None
        };
        let debug = cfg.debug;
        let mut client = ChatClient::new(cfg, store).map_err(|e| to_napi_error(&env, &e))?;
        if debug {
            client = client.with_debug_log(Arc::new(JsDebugLog::new(&env)?));
        }
        Ok(ChatGPTAPI {
            client: Mutex::new(Arc::new(client)),
        })
    }

    /// The client calls start on now.
    fn client(&self) -> Arc<ChatClient> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replace the client by one with `change` applied to its configuration.
    fn reconfigure(&self, env: &Env, change: impl FnOnce(&mut ClientConfig)) -> Result<()> {
        let current = self.client();
        let mut cfg = current.config().clone();
        change(&mut cfg);
        let next = current.with_config(cfg).map_err(|e| to_napi_error(env, &e))?;
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// `api.apiKey` (defined in `lib/api.js`): the fingerprint (`sk-…abcd`) of the key requests
    /// use, the first of `apiKeys` when several were given. Never the key itself: a getter's value
    /// shows in `util.inspect(api, { getters: true })`.
    #[napi(js_name = "__getApiKey", skip_typescript)]
    pub fn get_api_key(&self) -> String {
        fingerprint(self.client().config().api_key.expose())
    }

    /// `api.apiKey = key`: later calls use this key alone (it replaces an `apiKeys` pool too).
    #[napi(js_name = "__setApiKey", skip_typescript)]
    pub fn set_api_key(&self, env: Env, key: Unknown) -> Result<()> {
        let valid = key.get_type()? == ValueType::String;
        let key = if valid {
            unsafe { key.cast::<String>() }?
        } else {
            String::new()
        };
        // Only the kind of value is described, never the value: it is a secret.
        if key.is_empty() || key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid_arg(
                &env,
                "Expected `apiKey` to be a non-empty string without spaces or control characters",
            ));
        }
        if !self.client().config().upstreams.is_empty() {
            return Err(invalid_arg(
                &env,
                "Expected no `apiKey` to be set on an instance with `upstreams`: each upstream has its own keys",
            ));
        }
        let key = ApiKey::new(key);
        self.reconfigure(&env, |cfg| {
            cfg.api_keys = vec![key.clone()];
            cfg.api_key = key;
        })
    }

    /// `api.apiOrg`: the organisation sent as `OpenAI-Organization`, if any.
    #[napi(js_name = "__getApiOrg", skip_typescript)]
    pub fn get_api_org(&self) -> Either<String, ()> {
        match &self.client().config().api_org {
            Some(org) => Either::A(org.clone()),
            None => Either::B(()),
        }
    }

    /// `api.apiOrg = org` (`undefined` or `null` removes it), for later calls.
    #[napi(js_name = "__setApiOrg", skip_typescript)]
    pub fn set_api_org(&self, env: Env, org: Unknown) -> Result<()> {
        let org = match org.get_type()? {
            ValueType::Undefined | ValueType::Null => None,
            ValueType::String => Some(unsafe { org.cast::<String>() }?),
            _ => {
                return Err(invalid_arg(
                    &env,
                    format!("Expected `apiOrg` to be a string, got {}", describe(&env, &org)),
                ))
            }
        };
        self.reconfigure(&env, |cfg| cfg.api_org = org)
    }

    /// The base URL requests go to (without a trailing slash), for display: credentials in it
    /// (`http://user:pass@host`) show as `<redacted>`, so logging it or `util.inspect(api)`
    /// cannot leak them. Requests still use them. A query (`?api-version=`, from `apiBaseUrl` or
    /// `azure`) is shown after it.
    #[napi(getter)]
    pub fn api_base_url(&self) -> String {
        let client = self.client();
        let cfg = client.config();
        let base = redact_url(&cfg.api_base_url);
        match &cfg.api_query {
            Some(query) => format!("{base}?{query}"),
            None => base.into_owned(),
        }
    }

    /// The default model (`completionParams.model`).
    #[napi(getter)]
    pub fn model(&self) -> String {
        self.client().config().model().to_owned()
    }

    /// A snapshot of this client's metrics: calls, failures by code, retries, 429s, cache,
    /// coalescing, latency and time-to-first-token percentiles, tokens, breaker, keys and Redis
    /// coordination.
    #[napi]
    pub fn metrics(&self, env: Env) -> ChatMetrics {
        let client = self.client();
        if let Some(message) = client.take_coordination_warning() {
            emit_warning(&env, message, COORDINATION_FALLBACK_WARNING);
        }
        client.stats().into()
    }

    /// The same metrics in Prometheus text exposition format (serve it at `/metrics`).
    #[napi]
    pub fn metrics_text(&self) -> String {
        self.client().prometheus()
    }

    /// Zero the counters and histograms.
    #[napi]
    pub fn reset_metrics(&self) {
        self.client().reset_metrics();
    }

    /// Open a connection to the server before the first real call (TCP, TLS, HTTP/2 when
    /// offered), with a `GET {apiBaseUrl}/models` whose status does not matter. Resolves with
    /// the milliseconds it took.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn warmup<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, f64>> {
        let client = self.client();
        settle::spawn(env, async move { client.warmup().await }, |env, r| {
            r.map(|d| d.as_secs_f64() * 1000.0).map_err(|e| to_napi_error(env, &e))
        })
    }

    /// Send many messages under this instance's concurrency, rate limits and retries. Resolves
    /// with one `{ ok: true, message }` or `{ ok: false, error }` per input, in input order; one
    /// item's failure never rejects the batch. Inputs are strings (sent with `options`' message
    /// options) or `{ text, ...sendMessage options }` (their own options; per-item `onProgress`
    /// and `abortSignal` are not used). `onItem(index, result)` reports each completion as it
    /// happens; `abortSignal` cancels what is left (those items fail with `ABORT_ERR`). At most
    /// 100,000 inputs; an invalid input or option rejects the call with `ERR_CHATGPT_INVALID_ARG`
    /// naming it (`inputs[3].timeoutMs`) before anything is sent. Never throws.
    #[napi(
        ts_args_type = "inputs: Array<string | ({ text: string | ContentPart[] | ToolMessage | ToolMessage[] } & SendMessageOptions)>, options?: SendManyOptions",
        ts_return_type = "Promise<Array<SendManyResult>>"
    )]
    pub fn send_many<'env>(
        &self,
        env: &'env Env,
        inputs: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        promise_or_rejection(env, || {
            let o = Opts::from_arg(env, options, "options")?;
            o.allow_only(SEND_MANY_OPTIONS, &[])?;
            let requests = read_inputs(env, inputs, &o)?;
            self.start_many(env, requests, &o)
        })
    }

    /// `sendMany` once its arguments are read; its errors become the Promise's rejection.
    fn start_many<'env>(
        &self,
        env: &'env Env,
        requests: Vec<SendRequest>,
        o: &Opts<'env>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        let cancel = CancellationToken::new();
        let abort = AbortListener::from_options(env, o, &cancel)?;
        let sink = match o.function("onItem")? {
            Some(f) => Some(ItemSink::new(env, f, cancel.clone())?),
            None => None,
        };
        let client = self.client();
        // Promises `onItem` returned are waited for until the latest deadline an item can have.
        let timeout = requests
            .iter()
            .map(|r| r.timeout.unwrap_or(client.config().timeout))
            .max()
            .unwrap_or_default();
        let deadline = deadline_after(timeout);
        let fut = async move {
            let sink = Mutex::new(sink);
            let calls = requests.into_iter().enumerate().map(|(i, req)| {
                let (client, cancel, sink) = (&client, &cancel, &sink);
                async move {
                    let result = client.send(req, None, cancel).await;
                    if let Ok(mut s) = sink.lock() {
                        if let Some(s) = s.as_mut() {
                            s.report(i as u32, result.clone());
                        }
                    }
                    result
                }
            });
            let results = futures::future::join_all(calls).await;
            let sink = sink.into_inner().unwrap_or_else(|e| e.into_inner());
            let drained = match &sink {
                Some(s) => Box::pin(s.barrier(deadline)).await,
                None => Ok(()),
            };
            let callback_error = sink.as_ref().and_then(ItemSink::take_error);
            (results, drained, callback_error)
        };
        settle::spawn(env, fut, move |env, (results, drained, callback_error)| {
            after_callbacks(env, abort, callback_error)?;
            if let Err(e) = drained {
                return Err(to_napi_error(env, &e));
            }
            let mut out = env.create_array(results.len() as u32)?;
            for (i, r) in results.iter().enumerate() {
                out.set(i as u32, item_to_js(env, r)?)?;
            }
            Ok(out.to_unknown())
        })
    }

    /// Build the prompt `sendMessage(text, options)` would send — system message, history walked
    /// through `parentMessageId` within the token budget, the new message — without sending it.
    /// Rejects with `ERR_CHATGPT_CONTEXT_TOO_LONG` exactly when `sendMessage` would, and with
    /// `ERR_CHATGPT_INVALID_ARG` for invalid arguments. Never throws.
    #[napi(
        ts_args_type = "text: string | ContentPart[] | ToolMessage | ToolMessage[], options?: SendMessageOptions",
        ts_return_type = "Promise<BuiltMessages>"
    )]
    pub fn build_messages<'env>(
        &self,
        env: &'env Env,
        text: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, BuiltMessages>> {
        promise_or_rejection(env, || {
            let (req, _) = read_call(env, text, options)?;
            self.start_build(env, req)
        })
    }

    /// `buildMessages` once its arguments are read.
    fn start_build<'env>(&self, env: &'env Env, req: SendRequest) -> Result<PromiseRaw<'env, BuiltMessages>> {
        let client = self.client();
        settle::spawn(env, async move { client.prepare(&req, true).await }, |env, prepared| {
            let p = prepared.map_err(|e| to_napi_error(env, &e))?.prompt;
            Ok(BuiltMessages {
                messages: p
                    .messages
                    .into_iter()
                    .map(|m| PromptMessageJs {
                        role: m.role,
                        // Strings and parts always serialise.
                        content: serde_json::to_value(&m.content).unwrap_or_default(),
                        name: m.name,
                        tool_calls: m.tool_calls.map(|calls| calls.into_iter().map(Into::into).collect()),
                        tool_call_id: m.tool_call_id,
                    })
                    .collect(),
                num_tokens: p.prompt_tokens,
                max_tokens: p.max_tokens,
                history: history(p.history_messages, p.truncated),
            })
        })
    }

    /// Send a message and resolve with the reply. `text` is a string, or an array of content
    /// parts (text and images, sent as given; the stored row keeps their text parts joined with
    /// newlines as `text` and the parts as `content`), or the results of the tool calls of the
    /// reply `parentMessageId` names, as one `{ role: 'tool', toolCallId, content }` or an array
    /// of them: exactly `sendMessage('', { toolResults, parentMessageId })` (sent, stored and
    /// chained the same). Streams when `onProgress` is given (or `stream: true`). Rejects with a
    /// `ChatGPTError`, for invalid arguments too (`ERR_CHATGPT_INVALID_ARG`): it never throws.
    #[napi(
        ts_args_type = "text: string | ContentPart[] | ToolMessage | ToolMessage[], options?: SendMessageOptions",
        ts_return_type = "Promise<ChatReply>"
    )]
    pub fn send_message<'env>(
        &self,
        env: &'env Env,
        text: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        promise_or_rejection(env, || {
            let (req, o) = read_call(env, text, options)?;
            self.start_message(env, req, &o)
        })
    }

    /// Send a complete `messages` array as given (roles `system`, `developer`, `user`,
    /// `assistant`, `tool`; content a string or content parts), for callers who keep the history
    /// themselves: no system message is added, no history is read, nothing is stored. Resolves
    /// with the reply, whose `parentMessageId` is absent (there is no stored user message).
    /// Retries, limits, the breaker and the cache apply as for `sendMessage`. Rejects with
    /// `ERR_CHATGPT_INVALID_ARG` naming a bad message field or option (the conversation options
    /// `parentMessageId`, `messageId`, `conversationId`, `systemMessage` and `name` among them),
    /// and with `ERR_CHATGPT_CONTEXT_TOO_LONG` when the messages do not fit `maxModelTokens -
    /// maxResponseTokens`. Never throws.
    #[napi(
        ts_args_type = "messages: ChatCompletionMessageParam[], options?: SendMessagesOptions",
        ts_return_type = "Promise<ChatReply>"
    )]
    pub fn send_messages<'env>(
        &self,
        env: &'env Env,
        messages: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        promise_or_rejection(env, || {
            let (req, o) = read_messages_call(env, messages, options)?;
            self.start_message(env, req, &o)
        })
    }

    /// `sendMessage` once its arguments are read; its errors become the Promise's rejection.
    fn start_message<'env>(
        &self,
        env: &'env Env,
        req: SendRequest,
        o: &Opts<'env>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        let on_progress = o.function("onProgress")?;

        let client = self.client();
        // Fast path: a non-streaming cache hit is answered right here, without a thread hop
        // (unless the signal is already aborted: that must reject).
        let already_aborted = match o.object("abortSignal")? {
            Some(signal) => signal_aborted(env, &signal)?,
            None => false,
        };
        if !already_aborted {
            if let Some(reply) = client.try_cached(&req) {
                return resolved_promise(env, message_to_js(env, &serialize_message(reply))?);
            }
        }

        let cancel = CancellationToken::new();
        let abort = AbortListener::from_options(env, o, &cancel)?;
        // Deltas only flow when streaming; a callback on a non-streaming call is never invoked.
        let sink = match (&on_progress, req.stream) {
            (Some(f), true) => Some(ProgressSink::new(
                env,
                *f,
                req.message_id.clone().unwrap_or_default(),
                req.conversation_id.clone(),
                cancel.clone(),
            )?),
            _ => None,
        };

        let deadline = deadline_after(req.timeout.unwrap_or(client.config().timeout));
        let fut = async move {
            let mut sink = sink;
            // Boxed, so the call's state machine (~2 KB) is allocated by the tokio worker that
            // first polls it, and the JavaScript thread only allocates and copies a ~0.5 KB task
            // per call. (A profile showed large aligned allocations and copies around the spawn;
            // the A/B difference in CPU per call was within the benchmark's noise.)
            let result = Box::pin(client.send(
                req,
                sink.as_mut().map(|s| s as &mut dyn crate::core::client::DeltaSink),
                &cancel,
            ))
            .await;
            // A reply is only delivered once every Promise `onProgress` returned has settled.
            let result = match &sink {
                Some(s) => match Box::pin(s.barrier(deadline)).await {
                    Ok(()) => result,
                    // The reply came: the failure (a timeout, an abort) is of a call that sent
                    // requests, and says how many.
                    Err(e) => result.and_then(|reply| Err(e.with_attempts(reply.attempts))),
                },
                None => result,
            };
            let callback_error = sink.as_ref().and_then(ProgressSink::take_error);
            let warning = client.take_coordination_warning();
            // Serialised here, off the JavaScript thread; one JSON.parse there builds the object
            // far faster than setting each property through napi.
            (result.map(serialize_message), callback_error, warning)
        };
        settle::spawn(env, fut, move |env, (result, callback_error, warning)| {
            if let Some(message) = warning {
                emit_warning(env, message, COORDINATION_FALLBACK_WARNING);
            }
            after_callbacks(env, abort, callback_error)?;
            match result {
                Ok(json) => message_to_js(env, &json),
                Err(e) => Err(to_napi_error(env, &e)),
            }
        })
    }
}

/// The error for a read or call on the caller's `abortSignal` that threw.
fn signal_threw(env: &Env, what: &str, e: &Error) -> Error {
    invalid_arg(env, format!("Using `abortSignal.{what}` threw {}", caught(env, e)))
}

/// `signal.aborted`, which must be a boolean (or absent).
fn signal_aborted(env: &Env, signal: &Object) -> Result<bool> {
    let aborted: Option<Unknown> = signal.get("aborted").map_err(|e| signal_threw(env, "aborted", &e))?;
    match aborted {
        None => Ok(false),
        Some(v) => match v.get_type()? {
            ValueType::Undefined => Ok(false),
            ValueType::Boolean => unsafe { v.cast::<bool>() },
            _ => Err(invalid_arg(
                env,
                format!(
                    "Expected `abortSignal.aborted` to be a boolean, got {}",
                    describe(env, &v)
                ),
            )),
        },
    }
}

/// `signal.addEventListener` / `removeEventListener` as called from Rust.
type ListenerMethod<'a> = Function<'a, FnArgs<(&'a str, Function<'a, Unknown<'a>, ()>)>, Unknown<'a>>;

/// An `abort` listener on the caller's AbortSignal, removed again when the call settles so a
/// long-lived signal does not accumulate listeners.
struct AbortListener {
    signal: ObjectRef,
    listener: FunctionRef<Unknown<'static>, ()>,
}

/// The first step of settling a call whose callbacks have all run: removes its abort listener,
/// then fails with what a callback threw or rejected with, if one did.
fn after_callbacks(env: &Env, abort: Option<AbortListener>, callback_error: Option<Error>) -> Result<()> {
    if let Some(listener) = abort {
        listener.detach(env);
    }
    callback_error.map_or(Ok(()), Err)
}

impl AbortListener {
    /// The listener on `o`'s `abortSignal`, when it has one: an abort cancels `cancel`.
    fn from_options(env: &Env, o: &Opts, cancel: &CancellationToken) -> Result<Option<Self>> {
        match o.object("abortSignal")? {
            Some(signal) => Self::attach(env, signal, cancel.clone()).map(Some),
            None => Ok(None),
        }
    }

    fn attach(env: &Env, signal: Object, cancel: CancellationToken) -> Result<Self> {
        if signal_aborted(env, &signal)? {
            cancel.cancel();
        }
        let listener = env.create_function_from_closure::<Unknown, (), _>("onAbort", move |_ctx| {
            cancel.cancel();
            Ok(())
        })?;
        let not_a_signal = || invalid_arg(env, "Expected `abortSignal` to be an AbortSignal");
        let add: Unknown = signal
            .get("addEventListener")
            .map_err(|e| signal_threw(env, "addEventListener", &e))?
            .ok_or_else(not_a_signal)?;
        if add.get_type()? != ValueType::Function {
            return Err(not_a_signal());
        }
        let add: ListenerMethod = unsafe { add.cast() }?;
        add.apply(signal, FnArgs::from(("abort", listener)))
            .map_err(|e| signal_threw(env, "addEventListener", &e))?;
        Ok(AbortListener {
            signal: signal.create_ref()?,
            listener: listener.create_ref()?,
        })
    }

    fn detach(self, env: &Env) {
        let _ = (|| -> Result<()> {
            let signal = self.signal.get_value(env)?;
            let listener = self.listener.borrow_back(env)?;
            let remove: ListenerMethod = signal
                .get("removeEventListener")?
                .ok_or_else(|| Error::from_reason("no removeEventListener"))?;
            remove.apply(signal, FnArgs::from(("abort", listener)))?;
            Ok(())
        })();
        let _ = self.signal.unref(env);
    }
}
