//! `ChatGPTSimulator`: the bundled OpenAI-compatible server, started from JavaScript for tests,
//! demos and benchmarks. It runs on napi's tokio runtime, so it costs the JS thread nothing and
//! does not keep the process alive on its own.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::convert::to_json;
use super::errors::{invalid_arg, promise_or_rejection, to_napi_error};
use super::options::{describe, u32_arg, Opts};
use crate::core::error::{ChatError, ErrorCode};
use crate::simulator::{Fault, Simulator, SimulatorConfig};

/// Options of `ChatGPTSimulator.start(options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[cfg_attr(test, derive(Default, serde::Serialize), serde(rename_all = "camelCase"))]
pub struct SimulatorOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    /// @default 0
    pub port: Option<u32>,
    /// When set, requests must send `Authorization: Bearer <apiKey>` or get OpenAI's 401.
    pub api_key: Option<String>,
    /// Model name reported when a request names none.
    /// @default 'sim-gpt'
    pub model: Option<String>,
    /// Delay before the first content token (and before a non-streaming answer), in milliseconds.
    /// @default 0
    pub ttft_ms: Option<u32>,
    /// Delay between content tokens, in milliseconds.
    /// @default 0
    pub token_delay_ms: Option<u32>,
    /// Length of generated answers in tokens, per choice (a request's `max_tokens` cuts it short,
    /// and the header `x-sim-response-tokens` overrides it per request).
    /// @default 16
    pub response_tokens: Option<u32>,
    /// Requests per minute allowed, OpenAI-style (continuous bucket, 429 with `retry-after-ms`,
    /// `x-ratelimit-*` headers on every response); 0 = unlimited.
    /// @default 0
    pub rate_limit_rpm: Option<u32>,
    /// Tokens per minute allowed; a request costs its prompt tokens plus its `max_tokens` times
    /// its `n`.
    /// @default 0
    pub rate_limit_tpm: Option<u32>,
    /// Share of chat requests, 0 to 1, that fail with a random 500/502/503.
    /// @default 0
    pub failure_rate: Option<f64>,
    /// Seed of the random failures, so a run can be repeated.
    /// @default 0
    pub seed: Option<u32>,
}

/// A fault applied to one chat request (queued with `enqueueFault`, or sent per request as the
/// JSON header `x-sim-fault`).
// The typings of the simulator's own `Fault`, which is what `enqueueFault` parses (with serde,
// like the header). A test below maps the two field by field, so a field added to one and not
// the other fails to compile, naming it.
#[napi(object, object_from_js = false, object_to_js = false)]
#[cfg_attr(test, derive(serde::Serialize), serde(rename_all = "camelCase"))]
pub struct SimulatorFault {
    /// What goes wrong.
    #[napi(
        ts_type = "'status' | 'reset' | 'disconnect' | 'stall' | 'malformed' | 'errorEvent' | 'truncate' | 'noDone' | 'delay'"
    )]
    pub kind: String,
    /// `kind: 'status'`: the HTTP status.
    /// @default 500
    pub status: Option<u32>,
    /// Error body `message`.
    pub message: Option<String>,
    /// Error body `type`.
    #[napi(js_name = "type")]
    #[cfg_attr(test, serde(rename = "type"))]
    pub error_type: Option<String>,
    /// Error body `code`, e.g. 'rate_limit_exceeded' or 'insufficient_quota'.
    pub code: Option<String>,
    /// Error body `param`.
    pub param: Option<String>,
    /// `retry-after` header value (seconds or an HTTP date).
    pub retry_after: Option<String>,
    /// `retry-after-ms` header value.
    pub retry_after_ms: Option<String>,
    /// Sends `x-should-retry: true|false`.
    pub should_retry: Option<bool>,
    /// Content deltas sent before the fault strikes (stream faults).
    /// @default 0
    pub after_chunks: Option<u32>,
    /// `kind: 'errorEvent'`: send it as `event: error` instead of a `data: {"error":...}` line.
    /// @default false
    pub sse_event: Option<bool>,
    /// `kind: 'delay'`: extra milliseconds before the response headers.
    pub delay_ms: Option<u32>,
}

/// Counters tests can read.
#[napi(object)]
pub struct SimulatorStats {
    /// Every HTTP request received, any path.
    pub requests: f64,
    /// `POST /v1/chat/completions` requests received.
    pub chat_requests: f64,
    /// Chat requests being answered right now.
    pub in_flight: f64,
    /// Most chat requests answered at once since start or `resetStats()`.
    pub max_in_flight: f64,
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
    pub faults_injected: f64,
    /// 429s sent by the rate limiter.
    pub rate_limited: f64,
    /// Random failures sent (`failureRate`).
    pub random_failures: f64,
}

/// An OpenAI-compatible chat-completions server on 127.0.0.1 with scriptable faults.
///
/// Besides plain deterministic answers it serves `n` choices (1 to 8), `logprobs`/`top_logprobs`,
/// `response_format` (`json_object`, `json_schema`), refusals (a last user message containing
/// `[refuse]`) and reasoning models' `completion_tokens_details.reasoning_tokens` (o1, o3, o4,
/// gpt-5, with `reasoning_effort`); the README's "The simulator" section has the details.
#[napi(js_name = "ChatGPTSimulator")]
pub struct ChatGPTSimulator {
    inner: Arc<Simulator>,
}

fn ms(v: Option<u64>) -> Duration {
    Duration::from_millis(v.unwrap_or(0))
}

/// The options `ChatGPTSimulator.start` reads.
const START_OPTIONS: &[&str] = &[
    "port",
    "apiKey",
    "model",
    "ttftMs",
    "tokenDelayMs",
    "responseTokens",
    "rateLimitRpm",
    "rateLimitTpm",
    "failureRate",
    "seed",
];

/// `ChatGPTSimulator.start`'s options.
fn read_config(env: &Env, options: Option<Unknown>) -> Result<SimulatorConfig> {
    let o = Opts::from_arg(env, options, "options")?;
    o.allow_only(START_OPTIONS, &[])?;
    let port = o.non_negative_int("port")?.unwrap_or(0);
    if port > u16::MAX as u64 {
        return Err(invalid_arg(
            env,
            format!("Expected `port` to be at most 65535, got {port}"),
        ));
    }
    let mut config = SimulatorConfig {
        port: port as u16,
        api_key: o.secret_string("apiKey")?,
        ttft: ms(o.non_negative_int("ttftMs")?),
        token_delay: ms(o.non_negative_int("tokenDelayMs")?),
        ..SimulatorConfig::default()
    };
    if let Some(model) = o.string("model")? {
        config.model = model;
    }
    if let Some(n) = o.non_negative_int("responseTokens")? {
        config.response_tokens = n.min(u32::MAX as u64) as u32;
    }
    config.rate_limit_rpm = o.non_negative_int("rateLimitRpm")?.unwrap_or(0).min(u32::MAX as u64) as u32;
    config.rate_limit_tpm = o.non_negative_int("rateLimitTpm")?.unwrap_or(0).min(u32::MAX as u64) as u32;
    config.seed = o.non_negative_int("seed")?.unwrap_or(0);
    if let Some(value) = o.raw("failureRate")? {
        let rate: f64 = match value.get_type()? {
            ValueType::Number => unsafe { value.cast() }?,
            _ => f64::NAN,
        };
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid_arg(
                env,
                format!(
                    "Expected `failureRate` to be a number from 0 to 1, got {}",
                    describe(env, &value)
                ),
            ));
        }
        config.failure_rate = rate;
    }
    Ok(config)
}

#[napi]
impl ChatGPTSimulator {
    /// Start a simulator; resolves once it is listening. Invalid options reject the Promise.
    #[napi(
        ts_args_type = "options?: SimulatorOptions",
        ts_return_type = "Promise<ChatGPTSimulator>"
    )]
    pub fn start<'env>(env: &'env Env, options: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ChatGPTSimulator>> {
        promise_or_rejection(env, || {
            let config = read_config(env, options)?;
            Self::start_with(env, config)
        })
    }

    fn start_with(env: &Env, config: SimulatorConfig) -> Result<PromiseRaw<'_, ChatGPTSimulator>> {
        // Served on the simulators' own runtime (see `runtime.rs`): its connection tasks are
        // spawned from the start task, so they land there too.
        let rt = super::runtime::simulator_runtime().map_err(|e| {
            to_napi_error(
                env,
                &ChatError::new(ErrorCode::Network, format!("The simulator could not start: {e}")),
            )
        })?;
        let started = rt.spawn(Simulator::start(config));
        super::settle::spawn(
            env,
            async move {
                match started.await {
                    Ok(Ok(sim)) => Ok(sim),
                    Ok(Err(e)) => Err(ChatError::new(
                        ErrorCode::Network,
                        format!("The simulator could not listen: {e}"),
                    )),
                    // The start task panicked (a bug) or its runtime is shutting down.
                    Err(_) => Err(ChatError::new(
                        ErrorCode::Internal,
                        "The simulator's start task ended early",
                    )),
                }
            },
            |env, started| match started {
                Ok(sim) => Ok(ChatGPTSimulator { inner: Arc::new(sim) }),
                Err(e) => Err(to_napi_error(env, &e)),
            },
        )
    }

    /// Base URL to pass as `apiBaseUrl`, e.g. `http://127.0.0.1:41234/v1`.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.inner.base_url()
    }

    /// The port it listens on.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.inner.port() as u32
    }

    /// Queue a fault for the next chat request (FIFO, one fault per request).
    #[napi(ts_args_type = "fault: SimulatorFault")]
    pub fn enqueue_fault(&self, env: Env, fault: Unknown) -> Result<()> {
        let fault: Fault = serde_json::from_value(to_json(&env, &fault, "fault")?)
            .map_err(|e| invalid_arg(&env, format!("Expected `fault` to be a simulator fault: {e}")))?;
        self.inner.enqueue_fault(fault);
        Ok(())
    }

    /// Drop every queued fault.
    #[napi]
    pub fn clear_faults(&self) {
        self.inner.clear_faults();
    }

    /// Faults still queued.
    #[napi(getter)]
    pub fn pending_faults(&self) -> u32 {
        self.inner.pending_faults() as u32
    }

    /// A snapshot of the counters.
    #[napi]
    pub fn stats(&self) -> SimulatorStats {
        // Destructured without `..`, so a counter added to the simulator's stats and not here
        // fails to compile.
        let crate::simulator::SimulatorStats {
            requests,
            chat_requests,
            in_flight,
            max_in_flight,
            prompt_tokens,
            completion_tokens,
            faults_injected,
            rate_limited,
            random_failures,
        } = self.inner.stats();
        SimulatorStats {
            requests: requests as f64,
            chat_requests: chat_requests as f64,
            in_flight: in_flight as f64,
            max_in_flight: max_in_flight as f64,
            prompt_tokens: prompt_tokens as f64,
            completion_tokens: completion_tokens as f64,
            faults_injected: faults_injected as f64,
            rate_limited: rate_limited as f64,
            random_failures: random_failures as f64,
        }
    }

    /// Change the rate limits (0 = unlimited); both buckets start full again. Throws
    /// `ERR_CHATGPT_INVALID_ARG` unless both are integers from 0 to 2^32 - 1.
    #[napi(ts_args_type = "rateLimitRpm: number, rateLimitTpm: number")]
    pub fn set_limits(&self, env: Env, rate_limit_rpm: Unknown, rate_limit_tpm: Unknown) -> Result<()> {
        let rpm = u32_arg(&env, &rate_limit_rpm, "rateLimitRpm")?;
        let tpm = u32_arg(&env, &rate_limit_tpm, "rateLimitTpm")?;
        self.inner.set_limits(rpm, tpm);
        Ok(())
    }

    /// Zero the counters (`maxInFlight` restarts from what is in flight now).
    #[napi]
    pub fn reset_stats(&self) {
        self.inner.reset_stats();
    }

    /// Stop listening and drop open connections. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        // On the addon's own runtime, like every other Promise (see `runtime.rs`).
        let sim = self.inner.clone();
        super::settle::spawn(env, async move { sim.close().await }, |_, ()| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::FaultKind;

    /// [`SimulatorFault`] field by field as the simulator's [`Fault`]. Neither side uses `..`, so
    /// a field added to one of the two structs and not the other fails to compile here.
    fn fault_from_typings(typings: SimulatorFault) -> Fault {
        let SimulatorFault {
            after_chunks,
            code,
            delay_ms,
            error_type,
            kind,
            message,
            param,
            retry_after,
            retry_after_ms,
            should_retry,
            sse_event,
            status,
        } = typings;
        Fault {
            kind: serde_json::from_value(serde_json::Value::String(kind)).expect("a fault kind"),
            status: status.map(|status| u16::try_from(status).expect("an HTTP status")),
            message,
            error_type,
            code,
            param,
            retry_after,
            retry_after_ms,
            should_retry,
            after_chunks: after_chunks.unwrap_or(0),
            sse_event: sse_event.unwrap_or(false),
            delay_ms: delay_ms.map_or(0, u64::from),
        }
    }

    #[test]
    fn simulator_fault_typings_name_every_field_the_simulator_reads() {
        // Every field set to something other than its default.
        let typings = SimulatorFault {
            kind: "errorEvent".into(),
            status: Some(429),
            message: Some("boom".into()),
            error_type: Some("requests".into()),
            code: Some("rate_limit_exceeded".into()),
            param: Some("messages".into()),
            retry_after: Some("2".into()),
            retry_after_ms: Some("150".into()),
            should_retry: Some(false),
            after_chunks: Some(3),
            sse_event: Some(true),
            delay_ms: Some(5),
        };
        // What JavaScript sends under the typings' names, parsed the way `enqueueFault` parses it.
        let sent = serde_json::to_value(&typings).expect("serializes");
        let parsed: Fault = serde_json::from_value(sent.clone()).expect("parses");
        assert_eq!(parsed, fault_from_typings(typings), "{sent}");
        assert_eq!(parsed.kind, FaultKind::ErrorEvent);
    }

    #[test]
    fn start_accepts_exactly_the_options_the_typings_declare() {
        let typed = serde_json::to_value(SimulatorOptions::default()).expect("serializes");
        let mut typed: Vec<&str> = typed
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut read = START_OPTIONS.to_vec();
        typed.sort_unstable();
        read.sort_unstable();
        assert_eq!(typed, read);
    }
}
