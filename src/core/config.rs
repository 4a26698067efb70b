//! Client configuration: validated values with their documented defaults.
//!
//! The binding checks JavaScript types and hands plain Rust values to [`ClientConfig::build`],
//! which applies environment fallbacks (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`)
//! and range checks, so every front end (the Node class today, a CLI later) validates the same
//! way and reports the same messages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::breaker::BreakerConfig;
use super::cache::CacheConfig;
use super::coordination::{CoordinationConfig, CoordinationOptions};
use super::error::ChatError;
use super::limits::RateLimitConfig;
use super::redact::redact_url;
use super::retry::RetryPolicy;
use super::time::timeout_from_ms;

/// Default upstream, as in the `chatgpt` package and openai-node.
pub const DEFAULT_API_BASE_URL: &str = "https://api.openai.com/v1";
/// Default model: current, inexpensive, and accepts the sampling parameters `chatgpt` v5 sends
/// by default (the gpt-5 and o-series reasoning models reject `temperature` other than 1).
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";
/// `chatgpt` v5's defaults, kept so switching packages does not change answers.
pub const DEFAULT_MAX_MODEL_TOKENS: u32 = 4000;
pub const DEFAULT_MAX_RESPONSE_TOKENS: u32 = 1000;
/// Whole-call bound: openai-node's per-attempt default.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;
/// Longest silence tolerated inside a streaming body (openai-node has none: a known complaint).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Largest response body or single stream event accepted.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Messages kept by the in-memory conversation store (the `chatgpt` package's LRU size).
pub const DEFAULT_MESSAGE_STORE_SIZE: usize = 10_000;

/// The API key. Its `Debug` never shows the value, so a stray `{:?}` cannot leak it.
/// Shared, so leasing one for a request copies no text.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    pub fn new(key: String) -> Self {
        ApiKey(key.into())
    }

    /// The same key (the same allocation), not merely an equal one.
    pub fn same(&self, other: &ApiKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A part of the client that can be turned on, off or tuned (`circuitBreaker: false`,
/// `cache: true`, `cache: { ... }`). What not giving it means is the part's own default: the
/// breaker is on unless turned off, the response cache is off unless turned on.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Setting<T> {
    /// Not given: the part's default (see [`Setting::resolve_on_by_default`] and
    /// [`Setting::resolve_off_by_default`]).
    #[default]
    Unset,
    /// Turned on (`true`): the part runs with its documented defaults.
    On,
    /// Turned off (`false`).
    Off,
    /// Given: the part runs with this configuration.
    Custom(T),
}

impl<T: Default> Setting<T> {
    /// The configuration of a part that runs unless turned off, or `None` when it is off.
    pub fn resolve_on_by_default(self) -> Option<T> {
        match self {
            Setting::Unset | Setting::On => Some(T::default()),
            Setting::Off => None,
            Setting::Custom(config) => Some(config),
        }
    }

    /// The configuration of a part that runs only when turned on, or `None` when it is off.
    pub fn resolve_off_by_default(self) -> Option<T> {
        match self {
            Setting::Unset | Setting::Off => None,
            Setting::On => Some(T::default()),
            Setting::Custom(config) => Some(config),
        }
    }
}

/// What the caller gave, before defaults and environment fallbacks.
#[derive(Debug, Default, Clone)]
pub struct ClientOptions {
    pub api_key: Option<String>,
    pub api_base_url: Option<String>,
    pub api_org: Option<String>,
    pub completion_params: Option<Map<String, Value>>,
    pub system_message: Option<String>,
    pub max_model_tokens: Option<u32>,
    pub max_response_tokens: Option<u32>,
    /// `0`: no whole-call timeout.
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_response_bytes: Option<usize>,
    pub message_store_size: Option<usize>,
    pub headers: Vec<(String, String)>,
    pub debug: bool,
    /// A pool of keys used instead of `api_key` (failover, load spreading).
    pub api_keys: Vec<String>,
    pub max_retries: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    pub attempt_timeout_ms: Option<u64>,
    pub max_concurrency: Option<usize>,
    pub max_queue: Option<usize>,
    pub rate_limit: Option<RateLimitConfig>,
    pub circuit_breaker: Setting<BreakerConfig>,
    pub cache: Setting<CacheConfig>,
    /// Azure OpenAI instead of `api_base_url` (exclusive with it).
    pub azure: Option<AzureOptions>,
    /// PEM certificates (one or several per entry) trusted beside the OS roots.
    pub ca: Vec<Vec<u8>>,
    pub proxy: ProxySetting,
    /// Budgets shared with other processes through Redis (`None`: this process alone).
    pub coordination: Option<CoordinationOptions>,
    /// Servers tried in order (`upstreams`); empty for a client of one server (`apiBaseUrl`).
    pub upstreams: Vec<UpstreamOptions>,
}

/// One entry of the `upstreams` option, before checks: a server with its own keys, model and
/// limits. What it does not set is the instance's (`rateLimit`, `circuitBreaker`, `headers`).
#[derive(Debug, Default, Clone)]
pub struct UpstreamOptions {
    /// How replies (`reply.upstream`), errors and metrics name it; its index (`"0"`) if absent.
    pub name: Option<String>,
    pub api_base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_keys: Vec<String>,
    /// Azure OpenAI instead of `api_base_url` (exclusive with it).
    pub azure: Option<AzureOptions>,
    /// Replaces the request's `model` for this server.
    pub model: Option<String>,
    /// Set over the instance's `headers`.
    pub headers: Vec<(String, String)>,
    pub rate_limit: Option<RateLimitConfig>,
    pub circuit_breaker: Setting<BreakerConfig>,
}

/// Most entries of `upstreams`.
pub const MAX_UPSTREAMS: usize = 16;
/// Longest `upstreams[i].name`, in characters.
pub const MAX_UPSTREAM_NAME_CHARS: usize = 64;

/// One checked entry of `upstreams`: where it sends requests, with what, under which limits.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Unique among the instance's upstreams.
    pub name: String,
    /// Without a trailing slash, as [`ClientConfig::api_base_url`].
    pub api_base_url: String,
    pub api_query: Option<String>,
    pub key_header: KeyHeader,
    pub api_keys: Vec<ApiKey>,
    pub model: Option<String>,
    /// Its own `headers`, set over the instance's.
    pub headers: Vec<(String, String)>,
    /// Its own, else the instance's `rateLimit`.
    pub rate_limit: Option<RateLimitConfig>,
    /// Its own, else the instance's `circuitBreaker` (`None`: no breaker).
    pub circuit_breaker: Option<BreakerConfig>,
}

/// The `azure` option: where a deployment lives and the API version every request names.
#[derive(Debug, Default, Clone)]
pub struct AzureOptions {
    /// `{resource}.openai.azure.com`; exclusive with `base_url`.
    pub resource: Option<String>,
    /// The resource's endpoint (`https://my-resource.openai.azure.com`, or a gateway).
    pub base_url: Option<String>,
    pub deployment: String,
    pub api_version: String,
}

/// Which header carries the key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>` (OpenAI and compatible servers).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

/// Where requests go through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY`, as reqwest reads them.
    #[default]
    FromEnvironment,
    /// No proxy, whatever the environment says.
    Off,
    /// This proxy for every request; the environment is not read.
    Url(String),
}

/// Most bytes read from `NODE_EXTRA_CA_CERTS` (a bundle of every public root is ~250 KB).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Validated configuration of one client instance.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub api_key: ApiKey,
    /// Without a trailing slash; requests go to `{api_base_url}/chat/completions`.
    pub api_base_url: String,
    pub api_org: Option<String>,
    /// Merged under every request's own `completionParams`.
    pub completion_params: Map<String, Value>,
    /// `None` uses the dated default; `Some("")` sends no system message.
    pub system_message: Option<String>,
    pub max_model_tokens: u32,
    pub max_response_tokens: u32,
    /// The whole-call bound ([`NO_TIMEOUT`](super::time::NO_TIMEOUT) for `timeoutMs: 0`).
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub max_response_bytes: usize,
    pub message_store_size: usize,
    pub headers: Vec<(String, String)>,
    pub debug: bool,
    /// The query every request URL carries (`api-version=...`), from `apiBaseUrl` or `azure`.
    pub api_query: Option<String>,
    pub key_header: KeyHeader,
    /// PEM certificates trusted beside the OS roots: `ca`, then the `NODE_EXTRA_CA_CERTS` file.
    pub ca: Vec<Vec<u8>>,
    pub proxy: ProxySetting,
    /// Every key requests may use (one for `apiKey`, several for `apiKeys`).
    pub api_keys: Vec<ApiKey>,
    pub retry: RetryPolicy,
    /// Bound on one HTTP attempt (`None`: only the whole call is bounded).
    pub attempt_timeout: Option<Duration>,
    pub max_concurrency: Option<usize>,
    pub max_queue: Option<usize>,
    pub rate_limit: Option<RateLimitConfig>,
    /// `None`: no breaker.
    pub circuit_breaker: Option<BreakerConfig>,
    /// `None` (the default): no response cache and no coalescing.
    pub cache: Option<CacheConfig>,
    /// `None` (the default): rate limits are this process's alone.
    pub coordination: Option<CoordinationConfig>,
    /// The servers calls go to, first healthy one first (`upstreams`); empty for a client of
    /// one server, which the fields above describe. With upstreams, those fields are the first
    /// upstream's.
    pub upstreams: Vec<UpstreamConfig>,
}

/// Reads an environment variable, treating empty as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl ClientConfig {
    /// Apply fallbacks and defaults, then check what types alone cannot.
    pub fn build(mut opts: ClientOptions) -> Result<Self, ChatError> {
        let upstreams = std::mem::take(&mut opts.upstreams);
        let checked_upstreams = check_upstreams(&upstreams, &opts)?;
        if let Some(first) = upstreams.into_iter().next() {
            // The instance's own endpoint and keys are the first upstream's: what `apiBaseUrl`,
            // `warmup` and the cache key use.
            opts.api_base_url = first.api_base_url;
            opts.azure = first.azure;
            opts.api_keys = first.api_keys;
            opts.api_key = first.api_key;
        }
        if !opts.api_keys.is_empty() && opts.api_key.is_some() {
            return Err(ChatError::invalid_arg(
                "Expected either `apiKey` or `apiKeys`, not both",
            ));
        }
        for (i, key) in opts.api_keys.iter().enumerate() {
            if key.is_empty() || key.chars().any(|c| c.is_control() || c == ' ') {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `apiKeys[{i}]` to be a non-empty key without spaces or control characters"
                )));
            }
        }
        let api_key = opts
            .api_key
            .or_else(|| opts.api_keys.first().cloned())
            .filter(|k| !k.is_empty())
            .or_else(|| env_var("OPENAI_API_KEY"))
            .ok_or_else(|| {
                ChatError::invalid_arg("Missing API key: pass `apiKey` or set the OPENAI_API_KEY environment variable")
            })?;
        if api_key.chars().any(|c| c.is_control() || c == ' ') {
            // Never echo it: say what is wrong without the value.
            return Err(ChatError::invalid_arg(
                "Expected `apiKey` to contain no spaces or control characters",
            ));
        }

        let (endpoint, key_header) = match &opts.azure {
            Some(azure) => {
                if opts.api_base_url.is_some() {
                    return Err(ChatError::invalid_arg(
                        "Expected either `apiBaseUrl` or `azure`, not both",
                    ));
                }
                (azure_endpoint(azure)?, KeyHeader::ApiKey)
            }
            None => {
                let base = opts
                    .api_base_url
                    .or_else(|| env_var("OPENAI_BASE_URL"))
                    .unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
                (validate_endpoint(&base)?, KeyHeader::Bearer)
            }
        };
        let Endpoint {
            base: api_base_url,
            query: api_query,
        } = endpoint;
        let ca = trusted_certificates(opts.ca)?;
        if let ProxySetting::Url(url) = &opts.proxy {
            check_proxy_url(url)?;
        }

        let max_model_tokens = opts.max_model_tokens.unwrap_or(DEFAULT_MAX_MODEL_TOKENS);
        let max_response_tokens = opts.max_response_tokens.unwrap_or(DEFAULT_MAX_RESPONSE_TOKENS);
        if max_model_tokens == 0 {
            return Err(ChatError::invalid_arg(
                "Expected `maxModelTokens` to be a positive integer, got 0",
            ));
        }
        if max_response_tokens == 0 {
            return Err(ChatError::invalid_arg(
                "Expected `maxResponseTokens` to be a positive integer, got 0",
            ));
        }
        if max_response_tokens >= max_model_tokens {
            return Err(ChatError::invalid_arg(format!(
                "Expected `maxResponseTokens` ({max_response_tokens}) to be less than `maxModelTokens` ({max_model_tokens})"
            )));
        }

        let mut completion_params = Map::new();
        completion_params.insert("model".into(), Value::from(DEFAULT_MODEL));
        completion_params.insert("temperature".into(), Value::from(0.8));
        completion_params.insert("top_p".into(), Value::from(1.0));
        completion_params.insert("presence_penalty".into(), Value::from(1.0));
        if let Some(params) = opts.completion_params {
            check_completion_params(&params, "completionParams")?;
            completion_params.extend(params);
        }

        check_headers(&opts.headers, "headers")?;

        // 0 is no whole-call timeout, as in the `chatgpt` package.
        let timeout_ms = opts.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let idle_timeout_ms = opts.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS);
        check_positive("idleTimeoutMs", idle_timeout_ms)?;
        let max_response_bytes = opts.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        check_positive("maxResponseBytes", max_response_bytes as u64)?;
        let message_store_size = opts.message_store_size.unwrap_or(DEFAULT_MESSAGE_STORE_SIZE);
        check_positive("messageStoreSize", message_store_size as u64)?;

        let api_keys = if opts.api_keys.is_empty() {
            vec![ApiKey::new(api_key.clone())]
        } else {
            opts.api_keys.into_iter().map(ApiKey::new).collect()
        };
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: opts.max_retries.unwrap_or(defaults.max_retries),
            base: opts.retry_base_ms.map_or(defaults.base, Duration::from_millis),
            max: opts.retry_max_ms.map_or(defaults.max, Duration::from_millis),
        };
        if retry.base > retry.max {
            return Err(ChatError::invalid_arg(format!(
                "Expected `retryBaseMs` ({}) to be at most `retryMaxMs` ({})",
                retry.base.as_millis(),
                retry.max.as_millis()
            )));
        }
        if let Some(0) = opts.attempt_timeout_ms {
            return Err(ChatError::invalid_arg(
                "Expected `attemptTimeoutMs` to be a positive integer, got 0",
            ));
        }
        let instance_breaker = opts.circuit_breaker.resolve_on_by_default();
        let upstreams = checked_upstreams
            .into_iter()
            .map(|(u, breaker)| UpstreamConfig {
                rate_limit: u.rate_limit.or(opts.rate_limit),
                circuit_breaker: match breaker {
                    Setting::Unset => instance_breaker.clone(),
                    other => other.resolve_on_by_default(),
                },
                ..u
            })
            .collect();
        Ok(ClientConfig {
            upstreams,
            api_keys,
            retry,
            attempt_timeout: opts.attempt_timeout_ms.map(Duration::from_millis),
            max_concurrency: opts.max_concurrency,
            max_queue: opts.max_queue,
            rate_limit: opts.rate_limit,
            coordination: opts.coordination.map(CoordinationConfig::build).transpose()?,
            circuit_breaker: instance_breaker,
            // Off unless asked for: a repeated request is a new sample, as in `chatgpt` v5.
            cache: opts.cache.resolve_off_by_default(),
            api_key: ApiKey::new(api_key),
            api_base_url,
            api_org: opts.api_org.or_else(|| env_var("OPENAI_ORG_ID")),
            completion_params,
            system_message: opts.system_message,
            max_model_tokens,
            max_response_tokens,
            timeout: timeout_from_ms(timeout_ms),
            idle_timeout: Duration::from_millis(idle_timeout_ms),
            max_response_bytes,
            message_store_size,
            headers: opts.headers,
            debug: opts.debug,
            api_query,
            key_header,
            ca,
            proxy: opts.proxy,
        })
    }

    /// The configuration requests to `upstream` run with: this one's, with the upstream's
    /// endpoint, keys, headers, rate limit and breaker.
    pub fn for_upstream(&self, upstream: &UpstreamConfig) -> ClientConfig {
        let mut headers = self.headers.clone();
        for (name, value) in &upstream.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        ClientConfig {
            api_key: upstream
                .api_keys
                .first()
                .cloned()
                .unwrap_or_else(|| self.api_key.clone()),
            api_keys: upstream.api_keys.clone(),
            api_base_url: upstream.api_base_url.clone(),
            api_query: upstream.api_query.clone(),
            key_header: upstream.key_header,
            headers,
            rate_limit: upstream.rate_limit,
            circuit_breaker: upstream.circuit_breaker.clone(),
            upstreams: Vec::new(),
            ..self.clone()
        }
    }

    /// The model requests use unless a call overrides it.
    pub fn model(&self) -> &str {
        self.completion_params
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_MODEL)
    }
}

/// Check `upstreams` (with the instance options they exclude): each entry as its
/// [`UpstreamConfig`] (rate limit and breaker not yet defaulted to the instance's) and its
/// `circuitBreaker` setting. Messages name the entry (`upstreams[1].apiBaseUrl`); keys are never
/// shown.
fn check_upstreams(
    upstreams: &[UpstreamOptions],
    opts: &ClientOptions,
) -> Result<Vec<(UpstreamConfig, Setting<BreakerConfig>)>, ChatError> {
    if upstreams.is_empty() {
        return Ok(Vec::new());
    }
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `upstreams` to have from 1 to {MAX_UPSTREAMS} entries, got {}",
            upstreams.len()
        )));
    }
    let exclusive = [
        ("apiKey", opts.api_key.is_some()),
        ("apiKeys", !opts.api_keys.is_empty()),
        ("apiBaseUrl", opts.api_base_url.is_some()),
        ("azure", opts.azure.is_some()),
    ];
    if let Some((name, _)) = exclusive.iter().find(|(_, given)| *given) {
        return Err(ChatError::invalid_arg(format!(
            "Expected either `{name}` or `upstreams`, not both: each upstream has its own (`upstreams[0].{name}`)"
        )));
    }
    let mut out: Vec<(UpstreamConfig, Setting<BreakerConfig>)> = Vec::with_capacity(upstreams.len());
    for (i, u) in upstreams.iter().enumerate() {
        let at = format!("upstreams[{i}]");
        let name = match &u.name {
            None => i.to_string(),
            Some(name) => {
                let chars = name.chars().count();
                if chars == 0 || chars > MAX_UPSTREAM_NAME_CHARS || name.chars().any(char::is_control) {
                    return Err(ChatError::invalid_arg(format!(
                        "Expected `{at}.name` to be 1 to {MAX_UPSTREAM_NAME_CHARS} characters without control characters, got {:?}",
                        name.chars().take(MAX_UPSTREAM_NAME_CHARS).collect::<String>()
                    )));
                }
                name.clone()
            }
        };
        if out.iter().any(|(other, _)| other.name == name) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{at}.name` to be unique among `upstreams`, got {name:?} twice"
            )));
        }
        let keys = upstream_keys(u, &at)?;
        let (endpoint, key_header) = match (&u.azure, &u.api_base_url) {
            (Some(_), Some(_)) => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected either `{at}.apiBaseUrl` or `{at}.azure`, not both"
                )))
            }
            (Some(azure), None) => (
                azure_endpoint(azure)
                    .map_err(|e| ChatError::invalid_arg(e.message.replace("`azure.", &format!("`{at}.azure."))))?,
                KeyHeader::ApiKey,
            ),
            (None, Some(base)) => (
                validate_endpoint(base).map_err(|e| {
                    ChatError::invalid_arg(e.message.replace("`apiBaseUrl`", &format!("`{at}.apiBaseUrl`")))
                })?,
                KeyHeader::Bearer,
            ),
            (None, None) => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}.apiBaseUrl` (or `{at}.azure`) to be given, got undefined"
                )))
            }
        };
        if let Some(model) = &u.model {
            if model.is_empty() {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}.model` to be a non-empty string, got \"\""
                )));
            }
        }
        check_headers(&u.headers, &format!("{at}.headers"))?;
        let config = UpstreamConfig {
            name,
            api_base_url: endpoint.base,
            api_query: endpoint.query,
            key_header,
            api_keys: keys,
            model: u.model.clone(),
            headers: u.headers.clone(),
            rate_limit: u.rate_limit,
            circuit_breaker: None,
        };
        out.push((config, u.circuit_breaker.clone()));
    }
    Ok(out)
}

/// An upstream's `apiKey` or `apiKeys` (one of them, required), checked like the instance's.
fn upstream_keys(u: &UpstreamOptions, at: &str) -> Result<Vec<ApiKey>, ChatError> {
    let keys: Vec<&String> = match (&u.api_key, u.api_keys.is_empty()) {
        (Some(_), false) => {
            return Err(ChatError::invalid_arg(format!(
                "Expected either `{at}.apiKey` or `{at}.apiKeys`, not both"
            )))
        }
        (Some(key), true) => vec![key],
        (None, false) => u.api_keys.iter().collect(),
        (None, true) => {
            return Err(ChatError::invalid_arg(format!(
                "Missing API key: pass `{at}.apiKey` or `{at}.apiKeys`"
            )))
        }
    };
    for (j, key) in keys.iter().enumerate() {
        if key.is_empty() || key.chars().any(|c| c.is_control() || c == ' ') {
            let name = match u.api_key {
                Some(_) => format!("{at}.apiKey"),
                None => format!("{at}.apiKeys[{j}]"),
            };
            // Never echo it: say what is wrong without the value.
            return Err(ChatError::invalid_arg(format!(
                "Expected `{name}` to be a non-empty key without spaces or control characters"
            )));
        }
    }
    Ok(keys.into_iter().map(|k| ApiKey::new(k.clone())).collect())
}

/// Header names and values a request can carry; `option` names them in messages.
fn check_headers(headers: &[(String, String)], option: &str) -> Result<(), ChatError> {
    for (name, value) in headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ChatError::invalid_arg(format!(
                "Expected `{option}` keys to be valid header names, got {name:?}"
            ))
        })?;
        reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| ChatError::invalid_arg(format!("Expected `{option}[{name:?}]` to be a valid header value")))?;
    }
    Ok(())
}

fn check_positive(name: &str, value: u64) -> Result<(), ChatError> {
    if value == 0 {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{name}` to be a positive integer, got 0"
        )));
    }
    Ok(())
}

/// The request body is built by us: these keys belong to the protocol, not to the caller
/// (`chatgpt` v5 documents the same exclusions).
const RESERVED_PARAMS: [&str; 2] = ["messages", "stream"];

/// Reject parameters that would corrupt the request we build.
pub fn check_completion_params(params: &Map<String, Value>, option: &str) -> Result<(), ChatError> {
    for key in RESERVED_PARAMS {
        if params.contains_key(key) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{option}` not to contain `{key}`: it is set by the client"
            )));
        }
    }
    if let Some(n) = params.get("n") {
        let max = crate::core::chat::MAX_CHOICES as u64;
        if !n.as_u64().is_some_and(|n| (1..=max).contains(&n)) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{option}.n` to be an integer from 1 to {max}, got {n}"
            )));
        }
    }
    if let Some(model) = params.get("model") {
        if model.as_str().is_none_or(|m| m.is_empty()) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{option}.model` to be a non-empty string, got {model}"
            )));
        }
    }
    Ok(())
}

/// Where requests go: `{base}/chat/completions?{query}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Without a trailing slash, query or fragment.
    pub base: String,
    /// Kept after every path the client appends (`api-version=2024-10-21`).
    pub query: Option<String>,
}

/// Accept `http(s)://host[:port][/path]`, return it without a trailing slash. Messages show
/// the value without the credentials a URL may carry.
pub fn validate_base_url(raw: &str) -> Result<String, ChatError> {
    let endpoint = validate_endpoint(raw)?;
    match endpoint.query {
        None => Ok(endpoint.base),
        Some(_) => Err(ChatError::invalid_arg(format!(
            "Expected `apiBaseUrl` to have no query, got {:?}",
            redact_url(raw)
        ))),
    }
}

/// Accept `http(s)://host[:port][/path][?query]`: the base without a trailing slash, and the
/// query, which every request URL keeps after the path it appends (Azure's `api-version`).
pub fn validate_endpoint(raw: &str) -> Result<Endpoint, ChatError> {
    let shown = redact_url(raw);
    let mut url = reqwest::Url::parse(raw.trim())
        .map_err(|_| ChatError::invalid_arg(format!("Expected `apiBaseUrl` to be an http(s) URL, got {shown:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ChatError::invalid_arg(format!(
            "Expected `apiBaseUrl` to be an http(s) URL, got {shown:?}"
        )));
    }
    if url.fragment().is_some() {
        return Err(ChatError::invalid_arg(format!(
            "Expected `apiBaseUrl` to have no fragment, got {shown:?}"
        )));
    }
    let query = url.query().filter(|q| !q.is_empty()).map(str::to_owned);
    url.set_query(None);
    Ok(Endpoint {
        base: url.as_str().trim_end_matches('/').to_owned(),
        query,
    })
}

/// `azure` -> `{endpoint}/openai/deployments/{deployment}` and `api-version={apiVersion}`.
fn azure_endpoint(azure: &AzureOptions) -> Result<Endpoint, ChatError> {
    let endpoint = match (&azure.resource, &azure.base_url) {
        (Some(_), Some(_)) => {
            return Err(ChatError::invalid_arg(
                "Expected either `azure.resource` or `azure.baseUrl`, not both",
            ))
        }
        (None, None) => {
            return Err(ChatError::invalid_arg(
                "Expected `azure.resource` or `azure.baseUrl` to be given",
            ))
        }
        (Some(resource), None) => {
            if !is_url_word(resource) {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `azure.resource` to be a resource name (letters, digits, '-'), got {resource:?}"
                )));
            }
            format!("https://{resource}.openai.azure.com")
        }
        (None, Some(base)) => {
            let endpoint = validate_endpoint(base)
                .map_err(|e| ChatError::invalid_arg(e.message.replace("apiBaseUrl", "azure.baseUrl")))?;
            if endpoint.query.is_some() {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `azure.baseUrl` to have no query (the API version is `azure.apiVersion`), got {:?}",
                    redact_url(base)
                )));
            }
            endpoint.base
        }
    };
    if !is_url_word(&azure.deployment) {
        return Err(ChatError::invalid_arg(format!(
            "Expected `azure.deployment` to be a deployment name (letters, digits, '-', '_', '.'), got {:?}",
            azure.deployment
        )));
    }
    if !is_url_word(&azure.api_version) {
        return Err(ChatError::invalid_arg(format!(
            "Expected `azure.apiVersion` to be an API version like \"2024-10-21\", got {:?}",
            azure.api_version
        )));
    }
    Ok(Endpoint {
        base: format!("{endpoint}/openai/deployments/{}", azure.deployment),
        query: Some(format!("api-version={}", azure.api_version)),
    })
}

/// A name that goes into a URL as it is: 1 to 128 letters, digits, '-', '_' or '.', not `.`/`..`.
fn is_url_word(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `ca`, checked to hold certificates, then the `NODE_EXTRA_CA_CERTS` file. As in Node, a
/// `NODE_EXTRA_CA_CERTS` that cannot be read (or holds no certificate) is skipped, not fatal: a
/// stale variable must not stop every client in the process.
fn trusted_certificates(given: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, ChatError> {
    for (i, pem) in given.iter().enumerate() {
        let count = reqwest::Certificate::from_pem_bundle(pem).map_or(0, |certs| certs.len());
        if count == 0 {
            let name = if given.len() == 1 {
                "ca".to_owned()
            } else {
                format!("ca[{i}]")
            };
            return Err(ChatError::invalid_arg(format!(
                "Expected `{name}` to hold PEM certificates (-----BEGIN CERTIFICATE-----), found none"
            )));
        }
    }
    let mut all = given;
    if let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS").filter(|p| !p.is_empty()) {
        if let Some(pem) = read_bounded(std::path::Path::new(&path), MAX_CA_FILE_BYTES) {
            if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) {
                all.push(pem);
            }
        }
    }
    Ok(all)
}

/// A file's bytes, or `None` when it cannot be read or is larger than `limit`.
fn read_bounded(path: &std::path::Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut out = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= limit).then_some(out)
}

/// `proxy`: an `http://` or `https://` URL (CONNECT tunnels for https requests, forwarding for http).
fn check_proxy_url(raw: &str) -> Result<(), ChatError> {
    let shown = redact_url(raw);
    let ok =
        reqwest::Url::parse(raw.trim()).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !ok {
        return Err(ChatError::invalid_arg(format!(
            "Expected `proxy` to be an http(s) URL, `false` or `null`, got {shown:?}"
        )));
    }
    Ok(())
}

/// `chatgpt` v5's default system message, dated like the original.
pub fn default_system_message() -> String {
    format!(
        "You are ChatGPT, a large language model trained by OpenAI. Answer as concisely as possible.\nCurrent date: {}",
        today_utc()
    )
}

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days algorithm (Howard Hinnant's):
/// a dozen lines, not worth a date-time crate.
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts_with_key() -> ClientOptions {
        ClientOptions {
            api_key: Some("sk-test".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let cfg = ClientConfig::build(ClientOptions {
            api_base_url: Some(DEFAULT_API_BASE_URL.into()),
            ..opts_with_key()
        })
        .unwrap();
        assert_eq!(cfg.api_base_url, "https://api.openai.com/v1");
        assert_eq!(cfg.model(), DEFAULT_MODEL);
        assert_eq!(cfg.max_model_tokens, 4000);
        assert_eq!(cfg.max_response_tokens, 1000);
        assert_eq!(cfg.timeout, Duration::from_millis(600_000));
        assert_eq!(cfg.completion_params.get("temperature"), Some(&Value::from(0.8)));
    }

    #[test]
    fn base_url_loses_its_trailing_slash_and_must_be_http() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/v1/").unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert!(validate_base_url("ftp://example.com").is_err());
        assert!(validate_base_url("not a url").is_err());
        assert!(validate_base_url("http://x/v1?a=b").is_err());
        assert!(validate_endpoint("http://x/v1#frag").is_err());
    }

    #[test]
    fn a_base_url_query_is_kept_apart_from_the_path() {
        let cfg = ClientConfig::build(ClientOptions {
            api_base_url: Some("https://r.example/openai/deployments/d/?api-version=2024-10-21".into()),
            ..opts_with_key()
        })
        .unwrap();
        assert_eq!(cfg.api_base_url, "https://r.example/openai/deployments/d");
        assert_eq!(cfg.api_query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(cfg.key_header, KeyHeader::Bearer);
    }

    #[test]
    fn azure_builds_the_deployment_url_and_sends_the_key_as_api_key() {
        let azure = |resource: Option<&str>, base_url: Option<&str>, deployment: &str| ClientOptions {
            azure: Some(AzureOptions {
                resource: resource.map(Into::into),
                base_url: base_url.map(Into::into),
                deployment: deployment.into(),
                api_version: "2024-10-21".into(),
            }),
            ..opts_with_key()
        };
        let cfg = ClientConfig::build(azure(Some("my-res"), None, "gpt4o")).unwrap();
        assert_eq!(
            cfg.api_base_url,
            "https://my-res.openai.azure.com/openai/deployments/gpt4o"
        );
        assert_eq!(cfg.api_query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(cfg.key_header, KeyHeader::ApiKey);
        let cfg = ClientConfig::build(azure(None, Some("http://127.0.0.1:9/"), "d")).unwrap();
        assert_eq!(cfg.api_base_url, "http://127.0.0.1:9/openai/deployments/d");
        for bad in [
            azure(Some("a"), Some("http://x"), "d"),
            azure(None, None, "d"),
            azure(Some("a/b"), None, "d"),
            azure(Some("a"), None, "../x"),
            azure(Some("a"), None, ""),
            azure(None, Some("http://x?y=1"), "d"),
        ] {
            assert!(ClientConfig::build(bad).is_err());
        }
        let both = ClientOptions {
            api_base_url: Some("http://x".into()),
            ..azure(Some("a"), None, "d")
        };
        assert!(ClientConfig::build(both).unwrap_err().message.contains("apiBaseUrl"));
    }

    #[test]
    fn ca_must_hold_certificates_and_proxy_must_be_a_url() {
        let err = ClientConfig::build(ClientOptions {
            ca: vec![b"not a certificate".to_vec()],
            ..opts_with_key()
        })
        .unwrap_err();
        assert!(err.message.contains("`ca`"), "{}", err.message);
        let err = ClientConfig::build(ClientOptions {
            proxy: ProxySetting::Url("ftp://user:secret@x".into()),
            ..opts_with_key()
        })
        .unwrap_err();
        assert!(
            err.message.contains("`proxy`") && !err.message.contains("secret"),
            "{}",
            err.message
        );
    }

    #[test]
    fn base_url_messages_never_show_its_credentials() {
        let err = validate_base_url("http://user:pa55w0rd@127.0.0.1:1/v1?x=1").unwrap_err();
        assert!(!err.message.contains("pa55w0rd"), "{}", err.message);
        assert!(err.message.contains("127.0.0.1:1/v1?x=1"), "{}", err.message);
        let err = validate_base_url("ftp://user:pa55w0rd@example.com").unwrap_err();
        assert!(!err.message.contains("pa55w0rd"), "{}", err.message);
    }

    #[test]
    fn reserved_completion_params_are_rejected() {
        let mut p = Map::new();
        p.insert("messages".into(), Value::Array(vec![]));
        let err = check_completion_params(&p, "completionParams").unwrap_err();
        assert!(err.message.contains("messages"));
    }

    #[test]
    fn n_is_accepted_from_1_to_128_and_anything_else_is_named() {
        for ok in [1, 3, 128] {
            let p = Map::from_iter([("n".to_owned(), Value::from(ok))]);
            assert!(check_completion_params(&p, "completionParams").is_ok(), "{ok}");
        }
        for bad in [
            Value::from(0),
            Value::from(129),
            Value::from(-1),
            Value::from(1.5),
            Value::from("2"),
            Value::Null,
        ] {
            let p = Map::from_iter([("n".to_owned(), bad.clone())]);
            let err = check_completion_params(&p, "completionParams").unwrap_err();
            assert_eq!(err.code, crate::core::error::ErrorCode::InvalidArg, "{bad}");
            assert!(err.message.contains("`completionParams.n`"), "{}", err.message);
            assert!(err.message.contains(&bad.to_string()), "{}", err.message);
        }
    }

    #[test]
    fn response_budget_must_fit_the_window() {
        let err = ClientConfig::build(ClientOptions {
            max_model_tokens: Some(100),
            max_response_tokens: Some(100),
            ..opts_with_key()
        })
        .unwrap_err();
        assert!(err.message.contains("maxResponseTokens"));
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let cfg = ClientConfig::build(opts_with_key()).unwrap();
        assert!(!format!("{cfg:?}").contains("sk-test"));
    }

    #[test]
    fn the_breaker_is_on_by_default_and_can_be_turned_off_or_tuned() {
        let threshold_of = |circuit_breaker: Setting<BreakerConfig>| {
            ClientConfig::build(ClientOptions {
                circuit_breaker,
                ..opts_with_key()
            })
            .unwrap()
            .circuit_breaker
            .map(|b| b.volume_threshold)
        };
        let default = BreakerConfig::default().volume_threshold;
        assert_eq!(threshold_of(Setting::Unset), Some(default), "on when not given");
        assert_eq!(threshold_of(Setting::On), Some(default));
        assert_eq!(threshold_of(Setting::Off), None);
        let tuned = BreakerConfig {
            volume_threshold: 3,
            ..BreakerConfig::default()
        };
        assert_eq!(threshold_of(Setting::Custom(tuned)), Some(3));
    }

    #[test]
    fn the_cache_is_off_by_default_and_on_when_turned_on_or_configured() {
        let cache_of = |cache: Setting<CacheConfig>| {
            ClientConfig::build(ClientOptions {
                cache,
                ..opts_with_key()
            })
            .unwrap()
            .cache
        };
        assert_eq!(cache_of(Setting::Unset), None, "off when not given");
        assert_eq!(cache_of(Setting::Off), None);
        assert_eq!(cache_of(Setting::On), Some(CacheConfig::default()));
        let tuned = CacheConfig {
            max_entries: 3,
            ..CacheConfig::default()
        };
        assert_eq!(cache_of(Setting::Custom(tuned)), Some(tuned));
    }

    #[test]
    fn an_upstream_takes_the_instance_limits_breaker_and_headers_unless_it_has_its_own() {
        let limit = |rpm| RateLimitConfig {
            requests_per_minute: Some(rpm),
            tokens_per_minute: None,
        };
        let upstream = |rate_limit, circuit_breaker| UpstreamOptions {
            api_base_url: Some("http://127.0.0.1:9".into()),
            api_key: Some("sk-u".into()),
            headers: vec![("X-Tenant".into(), "upstream".into())],
            rate_limit,
            circuit_breaker,
            ..Default::default()
        };
        let cfg = ClientConfig::build(ClientOptions {
            rate_limit: Some(limit(10)),
            headers: vec![("x-tenant".into(), "instance".into()), ("x-app".into(), "a".into())],
            upstreams: vec![upstream(None, Setting::Unset), upstream(Some(limit(20)), Setting::Off)],
            ..Default::default()
        })
        .unwrap();
        let [first, second] = [&cfg.upstreams[0], &cfg.upstreams[1]];
        assert_eq!(first.rate_limit, Some(limit(10)));
        assert_eq!(second.rate_limit, Some(limit(20)));
        assert!(first.circuit_breaker.is_some() && second.circuit_breaker.is_none());
        let derived = cfg.for_upstream(second);
        assert_eq!(
            derived.headers,
            [
                ("x-app".to_owned(), "a".to_owned()),
                ("X-Tenant".to_owned(), "upstream".to_owned())
            ],
            "an upstream's header replaces the instance's of the same name"
        );
        assert_eq!((cfg.api_key.expose(), derived.api_key.expose()), ("sk-u", "sk-u"));
        assert!(derived.upstreams.is_empty());
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
