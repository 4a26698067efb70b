//! Helpers shared by the simulator's tests: starting one, a reqwest client, request bodies,
//! reading SSE streams and headers, and the prompt token count of the usual test request.

pub(super) use std::time::Duration;

pub(super) use futures::StreamExt;
pub(super) use serde_json::{json, Value};

pub(super) use super::{FaultKind, Simulator, SimulatorConfig, SimulatorStats};

pub(super) const KEY: &str = "sk-sim-secret-key-0123456789";

pub(super) async fn start(config: SimulatorConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// A simulator limiting requests and tokens per minute (0: that one unlimited).
pub(super) async fn start_rate_limited(rate_limit_rpm: u32, rate_limit_tpm: u32) -> Simulator {
    start(SimulatorConfig {
        rate_limit_rpm,
        rate_limit_tpm,
        ..SimulatorConfig::default()
    })
    .await
}

pub(super) async fn start_default() -> Simulator {
    start(SimulatorConfig::default()).await
}

pub(super) fn client() -> reqwest::Client {
    // The project builds reqwest with `rustls-no-provider`; building a
    // client panics unless a crypto provider is installed (once per
    // process: later calls just report "already installed").
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().expect("client builds")
}

pub(super) fn chat_request(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": content},
        ],
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// Builds the request eagerly so the returned future borrows nothing.
pub(super) fn post(
    sim: &Simulator,
    body: &Value,
    headers: &[(&str, &str)],
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static {
    let mut request = client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send()
}

pub(super) async fn post_ok(sim: &Simulator, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    post(sim, body, headers).await.expect("request succeeds")
}

/// `post_ok` with `fault` (a fault's JSON) in the `x-sim-fault` header.
pub(super) async fn post_fault(sim: &Simulator, body: &Value, fault: &str) -> reqwest::Response {
    post_ok(sim, body, &[("x-sim-fault", fault)]).await
}

/// A GET of `path` (below the base URL), which must get an answer.
pub(super) async fn get_ok(sim: &Simulator, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await
        .expect("GET answered")
}

/// A one-message chat request, "Hi", not streamed.
pub(super) fn hi_request() -> Value {
    chat_request("Hi", json!({}))
}

/// A one-message chat request, "Hi", streamed.
pub(super) fn hi_stream_request() -> Value {
    chat_request("Hi", json!({"stream": true}))
}

pub(super) async fn json_body(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

/// The payloads of the `data:` lines of an SSE text, in order.
pub(super) fn data_frames(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|frame| {
            frame
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

pub(super) fn content_deltas(frames: &[String]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|frame| serde_json::from_str::<Value>(frame).ok())
        .filter_map(|chunk| {
            let delta = chunk.pointer("/choices/0/delta")?;
            if delta.get("role").is_some() {
                return None;
            }
            delta.get("content")?.as_str().map(str::to_string)
        })
        .collect()
}

/// Reads a streamed body until it ends, errors or goes quiet for `idle`.
/// Returns the text received and how the read ended.
pub(super) async fn read_stream(response: reqwest::Response, idle: Duration) -> (String, StreamEnd) {
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return (text, StreamEnd::TimedOut),
            Ok(None) => return (text, StreamEnd::Clean),
            Ok(Some(Err(_))) => return (text, StreamEnd::Error),
            Ok(Some(Ok(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum StreamEnd {
    Clean,
    Error,
    TimedOut,
}

pub(super) async fn wait_until_idle(sim: &Simulator) {
    for _ in 0..200 {
        if sim.stats().in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("in_flight did not return to 0: {:?}", sim.stats());
}

pub(super) fn o200k_len(text: &str) -> usize {
    tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len()
}

/// `chat_request("Hi", ..)`'s prompt tokens by OpenAI's formula.
pub(super) fn hi_prompt_tokens() -> u64 {
    let system = 3 + o200k_len("system") + o200k_len("You are terse.");
    let user = 3 + o200k_len("user") + o200k_len("Hi");
    (system + user + 3) as u64
}

/// Like `post`, but on a given client, for loops of many requests.
pub(super) async fn post_with(client: &reqwest::Client, sim: &Simulator, body: &Value) -> reqwest::Response {
    client
        .post(format!("{}/chat/completions", sim.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request succeeds")
}

pub(super) fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_string()
}

pub(super) fn header_u64(response: &reqwest::Response, name: &str) -> u64 {
    header(response, name).parse().expect("integer header")
}

pub(super) fn has_rate_headers(response: &reqwest::Response, kind: &str) -> bool {
    ["limit", "remaining", "reset"]
        .iter()
        .any(|what| response.headers().contains_key(format!("x-ratelimit-{what}-{kind}")))
}
