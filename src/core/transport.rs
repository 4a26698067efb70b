//! HTTP transport: one reqwest client (keep-alive pool, rustls, gzip) per API instance, and the
//! mapping from HTTP failures to [`ChatError`]s.
//!
//! Only this module touches reqwest. It knows nothing about chat semantics beyond the shape of
//! OpenAI's error body, so retries, pacing and key pools (later layers) can wrap it.

#![warn(clippy::arithmetic_side_effects)]

use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::config::{ApiKey, ClientConfig, KeyHeader, ProxySetting};
use super::error::{status_to_error, ChatError, ErrorCode};
use super::time::{duration_from_millis_f64, duration_from_secs_f64};

/// rustls needs a process-wide crypto provider; we ship `ring` (smaller and faster to build than
/// aws-lc-rs). Installing twice is harmless, and another library may have installed one first.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A started response: status 2xx, headers read, body not yet consumed.
pub struct Response {
    pub inner: reqwest::Response,
    pub request_id: Option<String>,
}

/// The HTTP side of a client.
pub struct Transport {
    client: reqwest::Client,
    /// Parsed once: reqwest would otherwise parse (and IDNA-normalise) the string per request.
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    /// The key's header (`Authorization`, or Azure's `api-key`) for each configured key, made once.
    auth: Vec<(ApiKey, HeaderValue)>,
    key_header: KeyHeader,
    max_response_bytes: usize,
}

impl Transport {
    pub fn new(cfg: &ClientConfig) -> Result<Self, ChatError> {
        install_crypto_provider();
        // Keys are validated here once; each request attaches its (pool-chosen) key itself.
        let auth = cfg
            .api_keys
            .iter()
            .map(|key| Ok((key.clone(), key_value(cfg.key_header, key)?)))
            .collect::<Result<Vec<_>, ChatError>>()?;

        // The fixed headers are the client's defaults, rather than a map copied into each request.
        let mut builder = reqwest::Client::builder();
        for pem in &cfg.ca {
            // Checked by `ClientConfig::build`; extra roots are trusted beside the OS store.
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ChatError::invalid_arg(format!("Expected `ca` to hold PEM certificates: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        builder = match &cfg.proxy {
            ProxySetting::FromEnvironment => builder,
            ProxySetting::Off => builder.no_proxy(),
            ProxySetting::Url(url) => builder.proxy(reqwest::Proxy::all(url.as_str()).map_err(|_| {
                ChatError::invalid_arg(format!(
                    "Expected `proxy` to be an http(s) URL, got {:?}",
                    super::redact::redact_url(url)
                ))
            })?),
        };
        let client = builder
            .default_headers(fixed_headers(cfg)?)
            .user_agent(concat!("chatgpt-native/", env!("CARGO_PKG_VERSION")))
            .gzip(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(30).min(cfg.timeout))
            .build()
            .map_err(|e| ChatError::new(ErrorCode::Network, format!("Could not create the HTTP client: {e}")))?;

        Ok(Transport {
            client,
            chat_url: endpoint_url(cfg, "chat/completions")?,
            models_url: endpoint_url(cfg, "models")?,
            auth,
            key_header: cfg.key_header,
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The key header's value for `key`: made once per configured key.
    fn authorization(&self, key: &ApiKey) -> Result<HeaderValue, ChatError> {
        match self.auth.iter().find(|(k, _)| k.same(key)) {
            Some((_, value)) => Ok(value.clone()),
            None => key_value(self.key_header, key),
        }
    }

    /// The header that carries the key.
    fn key_header_name(&self) -> HeaderName {
        match self.key_header {
            KeyHeader::Bearer => AUTHORIZATION,
            KeyHeader::ApiKey => HeaderName::from_static("api-key"),
        }
    }

    /// POST a chat-completions body. Resolves once the status line and headers are in; a non-2xx
    /// status is read (bounded) and turned into an error here, so callers only see successes.
    /// `observe` sees the headers of every response, success or failure (rate-limit learning).
    pub async fn post_chat(
        &self,
        post: ChatPost<'_>,
        key: &ApiKey,
        observe: &(dyn Fn(&HeaderMap) + Sync),
    ) -> Result<Response, ChatError> {
        let ChatPost { body, stream, headers } = post;
        let mut req = self.client.post(self.chat_url.clone());
        if let Some(headers) = headers {
            // Replaces the instance's value of each name it has; `call_headers` has refused the
            // key's headers, so the key set next is the pool's.
            req = req.headers(headers.clone());
        }
        req = req.header(self.key_header_name(), self.authorization(key)?).body(body);
        if stream {
            req = req.header(reqwest::header::ACCEPT, "text/event-stream");
        }
        let resp = req.send().await.map_err(network_error)?;
        observe(resp.headers());
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.status().is_success() {
            return Ok(Response {
                inner: resp,
                request_id,
            });
        }
        Err(self.status_error(resp, request_id).await)
    }

    /// `GET {base}/models`, reading the (small) body so the connection returns to the pool.
    pub async fn warmup(&self, key: &ApiKey) -> Result<u16, ChatError> {
        let url = self.models_url.clone();
        let resp = self
            .client
            .get(url)
            .header(self.key_header_name(), self.authorization(key)?)
            .send()
            .await
            .map_err(network_error)?;
        let status = resp.status().as_u16();
        let _ = read_capped(resp, 1024 * 1024).await;
        Ok(status)
    }

    /// Build the error for a non-2xx response from its status, headers and OpenAI error body.
    async fn status_error(&self, resp: reqwest::Response, request_id: Option<String>) -> ChatError {
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers());
        let should_retry = match resp.headers().get("x-should-retry").and_then(|v| v.to_str().ok()) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        // Error bodies are small; cap what we read so a hostile server cannot make us buffer more.
        let body = read_capped(resp, 64 * 1024).await.unwrap_or_default();
        let mut e = status_to_error(
            status.as_u16(),
            status.canonical_reason(),
            &body,
            request_id,
            retry_after,
        );
        e.should_retry = should_retry;
        e
    }
}

/// The headers every request carries: content type, `apiOrg`, the `headers` option.
fn fixed_headers(cfg: &ClientConfig) -> Result<HeaderMap, ChatError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(org) = &cfg.api_org {
        let value = HeaderValue::from_str(org)
            .map_err(|_| ChatError::invalid_arg("Expected `apiOrg` to be a valid header value"))?;
        headers.insert(HeaderName::from_static("openai-organization"), value);
    }
    for (name, value) in &cfg.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ChatError::invalid_arg(format!("Invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ChatError::invalid_arg(format!("Invalid value for header {name:?}")))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// What one attempt posts: the body and the call's own headers.
pub struct ChatPost<'a> {
    pub body: Bytes,
    pub stream: bool,
    /// Set over the instance's headers (see [`call_headers`]).
    pub headers: Option<&'a HeaderMap>,
}

/// Headers a call may not set: the key's (it comes from `apiKey`/`apiKeys`, so a call cannot
/// send another key, or make the pool's bookkeeping wrong), and those that frame the request.
const CALL_HEADERS_REFUSED: [&str; 6] = [
    "authorization",
    "api-key",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Longest `idempotencyKey` accepted, in bytes (openai-node's are ~40).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// One call's `headers` and `idempotencyKey` as the header map each of its attempts sets, or
/// `None` when it has neither. Names are case-insensitive: a call's `x-a` replaces the
/// instance's `X-A`. `Idempotency-Key` comes from `idempotency_key` when given (over a
/// `headers` entry of that name).
pub fn call_headers(
    headers: &[(String, String)],
    idempotency_key: Option<&str>,
) -> Result<Option<std::sync::Arc<HeaderMap>>, ChatError> {
    if headers.is_empty() && idempotency_key.is_none() {
        return Ok(None);
    }
    let mut map = HeaderMap::with_capacity(headers.len().saturating_add(1));
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ChatError::invalid_arg(format!(
                "Expected `headers` keys to be valid header names, got {name:?}"
            ))
        })?;
        if CALL_HEADERS_REFUSED.contains(&header.as_str()) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `headers` not to set {name:?}: the client sets it (keys come from `apiKey` or `apiKeys`)"
            )));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| ChatError::invalid_arg(format!("Expected `headers[{name:?}]` to be a valid header value")))?;
        map.insert(header, value);
    }
    if let Some(key) = idempotency_key {
        let value = HeaderValue::from_str(key)
            .ok()
            .filter(|_| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES);
        let Some(value) = value else {
            let shown: String = key.chars().take(40).collect();
            return Err(ChatError::invalid_arg(format!(
                "Expected `idempotencyKey` to be a non-empty header value of at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {shown:?}"
            )));
        };
        map.insert(HeaderName::from_static("idempotency-key"), value);
    }
    Ok(Some(std::sync::Arc::new(map)))
}

/// `{base}/{path}`, with the base URL's query (Azure's `api-version`) after the path.
fn endpoint_url(cfg: &ClientConfig, path: &str) -> Result<reqwest::Url, ChatError> {
    let mut url = parse_url(&format!("{}/{path}", cfg.api_base_url))?;
    url.set_query(cfg.api_query.as_deref());
    Ok(url)
}

fn parse_url(url: &str) -> Result<reqwest::Url, ChatError> {
    reqwest::Url::parse(url)
        .map_err(|_| ChatError::invalid_arg(format!("Expected `apiBaseUrl` to be an http(s) URL, got {url:?}")))
}

/// The key header's value: `Bearer <key>`, or the bare key for Azure's `api-key`, marked
/// sensitive: reqwest leaves sensitive values out of its Debug output and HTTP/2 never indexes
/// them in HPACK tables, so the key cannot end up in logs or compression state.
fn key_value(style: KeyHeader, key: &ApiKey) -> Result<HeaderValue, ChatError> {
    let text = match style {
        KeyHeader::Bearer => format!("Bearer {}", key.expose()),
        KeyHeader::ApiKey => key.expose().to_owned(),
    };
    let mut auth = HeaderValue::from_str(&text)
        .map_err(|_| ChatError::invalid_arg("Expected `apiKey` to be a valid header value"))?;
    auth.set_sensitive(true);
    Ok(auth)
}

/// Read a whole body, failing when it exceeds `limit` bytes.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ChatError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(network_error)? {
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn too_large(limit: usize) -> ChatError {
    ChatError::new(
        ErrorCode::ResponseTooLarge,
        format!("The response exceeded `maxResponseBytes` ({limit} bytes)"),
    )
}

/// `retry-after-ms` (float milliseconds) first, then `retry-after` (seconds or an HTTP date).
/// Absurd values saturate (see [`super::time`]) rather than panic; negative and non-numeric ones
/// are ignored.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .and_then(duration_from_millis_f64)
    {
        return Some(ms);
    }
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return duration_from_secs_f64(secs);
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Map a reqwest failure. The message walks the source chain ("connection refused") because
/// reqwest's top-level text alone ("error sending request") does not say what happened; the URL
/// is dropped since a base URL may carry credentials.
pub fn network_error(err: reqwest::Error) -> ChatError {
    let code = if err.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::Network
    };
    let not_sent = err.is_connect();
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    if message.contains("invalid peer certificate") {
        // rustls names the problem (`UnknownIssuer`, `Expired`, ...); say what fixes the common one.
        message.push_str(
            " (the server's certificate is not trusted: pass its CA as the `ca` option or name its file in NODE_EXTRA_CA_CERTS)",
        );
    }
    let mut e = ChatError::new(code, message);
    e.not_sent = not_sent;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_auth_org_and_extra_headers_with_the_key_marked_sensitive() {
        let cfg = crate::core::config::ClientConfig::build(crate::core::config::ClientOptions {
            api_key: Some("sk-abc".into()),
            api_base_url: Some("http://127.0.0.1:1/v1/".into()),
            api_org: Some("org-42".into()),
            headers: vec![("x-extra".into(), "1".into())],
            ..Default::default()
        })
        .unwrap();
        let t = Transport::new(&cfg).unwrap();
        assert_eq!(t.chat_url.as_str(), "http://127.0.0.1:1/v1/chat/completions");
        let headers = fixed_headers(&cfg).unwrap();
        assert_eq!(headers["openai-organization"], "org-42");
        assert_eq!(headers["x-extra"], "1");
        assert!(!format!("{headers:?}").contains("sk-abc"));
        assert!(key_value(KeyHeader::Bearer, &cfg.api_keys[0]).unwrap().is_sensitive());
        // Each configured key's header is made once and found again by identity.
        assert!(t.authorization(&cfg.api_keys[0]).unwrap().is_sensitive());
        assert_eq!(t.auth.len(), 1);
    }

    #[test]
    fn call_headers_refuse_the_key_headers_and_carry_the_idempotency_key() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(call_headers(&[], None).unwrap().is_none());
        let map = call_headers(
            &pairs(&[("X-Trace", "1"), ("idempotency-key", "from-headers")]),
            Some("k-1"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(map["x-trace"], "1");
        assert_eq!(map["idempotency-key"], "k-1");
        for refused in ["Authorization", "API-KEY", "content-length", "Host"] {
            let err = call_headers(&pairs(&[(refused, "x")]), None).unwrap_err();
            assert!(err.message.contains(refused), "{}", err.message);
        }
        assert!(call_headers(&[], Some("")).is_err());
        assert!(call_headers(&[], Some("a\nb")).is_err());
        assert!(call_headers(&[], Some(&"k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1))).is_err());
    }

    #[test]
    fn the_base_url_query_follows_every_path() {
        let cfg = crate::core::config::ClientConfig::build(crate::core::config::ClientOptions {
            api_key: Some("sk-abc".into()),
            api_base_url: Some("http://127.0.0.1:1/openai/deployments/d?api-version=2024-10-21".into()),
            ..Default::default()
        })
        .unwrap();
        let t = Transport::new(&cfg).unwrap();
        assert_eq!(
            t.chat_url.as_str(),
            "http://127.0.0.1:1/openai/deployments/d/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            t.models_url.as_str(),
            "http://127.0.0.1:1/openai/deployments/d/models?api-version=2024-10-21"
        );
    }

    #[test]
    fn azure_keys_go_in_api_key_never_in_authorization() {
        let key = ApiKey::new("az-key".into());
        let value = key_value(KeyHeader::ApiKey, &key).unwrap();
        assert_eq!(value, "az-key");
        assert!(value.is_sensitive());
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_micros(150_500)));
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let mut h = HeaderMap::new();
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(28), "{d:?}");
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        // The latest date the format can say is a long wait, not a panic.
        h.insert("retry-after", HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"));
        assert!(parse_retry_after(&h).unwrap() > Duration::from_secs(86_400 * 365 * 7000));
    }

    #[test]
    fn absurd_retry_after_values_saturate_instead_of_panicking() {
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "1e19"),
            ("retry-after", "1e400"),
            ("retry-after", "18446744073709551616"),
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "1e400"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            let d = parse_retry_after(&h).unwrap();
            assert!(
                d >= Duration::from_secs(1_000_000_000_000_000),
                "{name}: {value} -> {d:?}"
            );
        }
        for value in ["-1", "NaN", "-inf", "soon"] {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_static(value));
            assert_eq!(parse_retry_after(&h), None, "{value}");
        }
    }
}
