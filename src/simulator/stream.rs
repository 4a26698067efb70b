//! Delivering an answer: the whole JSON after the time it would take, or SSE frames paced by
//! `ttft` and `token_delay` through a bounded channel (so a slow reader slows the producer), with
//! a scripted mid-stream fault carried out where its delta would have been due.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::answer::{Answer, ChunkDelta};
use super::faults::{fault_error, Fault, FaultKind};
use super::request::ChatRequest;
use super::response::{error_value, insert_request_id, json_response, sse, BoxError, SimBody, SimChunk};
use super::server::{InFlight, Shared};

/// The normal answer, possibly with a streaming fault applied to the stream.
pub(super) async fn answer_normally(
    shared: Arc<Shared>,
    answer: Answer,
    chat: ChatRequest,
    stream_fault: Option<Fault>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    if !chat.stream {
        sleep_if_needed(answer.total_delay(&shared.config)).await;
        answer.record_usage(&shared);
        let body = answer.completion_json();
        return Ok(json_response(StatusCode::OK, body, Some(in_flight)));
    }
    let (tx, body) = SimBody::channel(None, in_flight);
    tokio::spawn(async move {
        // `Err` only means the client is gone; the task just ends.
        let _ = produce_stream(&shared, &answer, chat.include_usage, stream_fault, &tx).await;
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    insert_request_id(headers);
    Ok(response)
}

/// The client stopped reading (the body was dropped).
struct Gone;

/// Sends one SSE frame, waiting for room in the channel (backpressure).
async fn send(tx: &mpsc::Sender<SimChunk>, frame: Bytes) -> Result<(), Gone> {
    tx.send(SimChunk::Data(frame)).await.map_err(|_| Gone)
}

/// Sleeps unless the client goes away first, so an abandoned slow stream
/// does not keep its task alive for the rest of the answer.
async fn pause(tx: &mpsc::Sender<SimChunk>, duration: Duration) -> Result<(), Gone> {
    if duration.is_zero() {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => Ok(()),
        _ = tx.closed() => Err(Gone),
    }
}

/// Writes a stream's frames into `tx`: the role chunks, the deltas (batched when there is no
/// delay between them; several choices interleaved), then the tool call fragments, the finish
/// chunks, the usage and `[DONE]` frames, or the fault where it strikes.
async fn produce_stream(
    shared: &Shared,
    answer: &Answer,
    include_usage: bool,
    fault: Option<Fault>,
    tx: &mpsc::Sender<SimChunk>,
) -> Result<(), Gone> {
    let config = &shared.config;
    // The role chunks go out with the headers, before ttft, like OpenAI's: one per choice.
    for choice in &answer.choices {
        let role = ChunkDelta::plain(choice.role_delta());
        send(tx, answer.chunk(choice.index, role, include_usage)).await?;
    }

    // The choices advance together: round `r` carries piece `r` of each choice that has one, in
    // the order of their indexes.
    let delivered = answer.rounds();
    // Where a mid-stream fault fires: where round number `after_chunks` would
    // have been sent (or at the end if the answer is shorter).
    let fault_at = fault
        .as_ref()
        .filter(|f| f.kind != FaultKind::NoDone)
        .map(|f| usize::try_from(f.after_chunks).map_or(delivered, |n| n.min(delivered)));
    let delay_before = |index: usize| {
        if index == 0 {
            config.ttft
        } else {
            config.token_delay
        }
    };

    // Without a delay between tokens, frames are written in batches of up to 16 KiB (several SSE
    // events per body frame, as a busy real server's TCP stream delivers them): one write per
    // token would make the simulator, not the client under test, the bottleneck of a stream.
    let mut batch: Vec<u8> = Vec::new();
    for index in 0..delivered {
        if fault_at == Some(index) {
            break;
        }
        let delay = delay_before(index);
        if !delay.is_zero() && !batch.is_empty() {
            send(tx, Bytes::from(std::mem::take(&mut batch))).await?;
        }
        pause(tx, delay).await?;
        for choice in &answer.choices {
            let Some((delta, logprobs)) = choice.piece_delta(index) else {
                continue;
            };
            let delta = ChunkDelta {
                delta,
                logprobs,
                finish_reason: None,
            };
            let frame = answer.chunk(choice.index, delta, include_usage);
            if config.token_delay.is_zero() {
                batch.extend_from_slice(&frame);
                if batch.len() >= 16 * 1024 {
                    send(tx, Bytes::from(std::mem::take(&mut batch))).await?;
                }
            } else {
                send(tx, frame).await?;
            }
        }
    }
    if !batch.is_empty() {
        send(tx, Bytes::from(batch)).await?;
    }

    if let (Some(at), Some(fault)) = (fault_at, &fault) {
        pause(tx, delay_before(at)).await?;
        match fault.kind {
            FaultKind::Disconnect => {
                let _ = tx.send(SimChunk::Abort).await;
            }
            FaultKind::Stall => {
                // Keep the connection open and silent until the client hangs
                // up or close() aborts the connection (which drops the body).
                tx.closed().await;
            }
            FaultKind::Malformed => {
                send(tx, Bytes::from_static(b"data: {\"id\": \"broken\", \"choices\": [\n\n")).await?;
                send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await?;
            }
            FaultKind::ErrorEvent => {
                let error = error_value(&fault_error(fault, 500));
                let frame = if fault.sse_event {
                    format!("event: error\ndata: {error}\n\n")
                } else {
                    format!("data: {error}\n\n")
                };
                send(tx, Bytes::from(frame)).await?;
            }
            // Truncate (and anything else): end the body cleanly right here.
            _ => {}
        }
        return Ok(());
    }

    if delivered == 0 {
        pause(tx, config.ttft).await?;
    }
    for choice in &answer.choices {
        for fragment in choice.tool_call.iter().flat_map(|call| call.fragments()) {
            send(
                tx,
                answer.chunk(choice.index, ChunkDelta::plain(fragment), include_usage),
            )
            .await?;
        }
    }
    for choice in &answer.choices {
        let finish = ChunkDelta::finish(choice.finish_reason);
        send(tx, answer.chunk(choice.index, finish, include_usage)).await?;
    }
    answer.record_usage(shared);
    if include_usage {
        let usage = json!({
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "choices": [],
            "usage": answer.usage(),
        });
        send(tx, sse(&usage)).await?;
    }
    let no_done = fault.is_some_and(|f| f.kind == FaultKind::NoDone);
    if !no_done {
        send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await?;
    }
    Ok(())
}

/// Sleeps for `duration`, skipping the timer entirely when it is zero.
pub(super) async fn sleep_if_needed(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[tokio::test]
    async fn streaming_frames_come_in_openai_order() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({"stream": true, "stream_options": {"include_usage": true}}));
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "4")]).await;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 4 + 1 + 1 + 1, "{text}");
        assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = frames[..frames.len() - 1]
            .iter()
            .map(|f| serde_json::from_str(f).expect("chunk json"))
            .collect();
        let id = &chunks[0]["id"];
        assert!(chunks.iter().all(|c| &c["id"] == id));
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        for chunk in &chunks[1..5] {
            assert!(chunk["choices"][0]["delta"]["content"].is_string());
            assert!(chunk["choices"][0]["finish_reason"].is_null());
            assert!(chunk["usage"].is_null());
        }
        assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 4);
        assert_eq!(
            chunks[6]["usage"]["total_tokens"],
            chunks[6]["usage"]["prompt_tokens"].as_u64().expect("prompt") + 4
        );

        // Without include_usage there is no usage chunk.
        let request = hi_stream_request();
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "4")]).await;
        let (text, _) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(data_frames(&text).len(), 1 + 4 + 1 + 1);
        assert!(!text.contains("usage"));
    }

    #[tokio::test]
    async fn streamed_content_equals_the_non_streaming_content() {
        let sim = start_default().await;
        let plain = json_body(post_ok(&sim, &chat_request("Compare", json!({})), &[]).await).await;
        let streamed = post_ok(&sim, &chat_request("Compare", json!({"stream": true})), &[]).await;
        let (text, _) = read_stream(streamed, Duration::from_secs(5)).await;
        let deltas = content_deltas(&data_frames(&text));
        assert_eq!(deltas.len(), 16);
        assert_eq!(json!(deltas.concat()), plain["choices"][0]["message"]["content"]);
    }

    #[tokio::test]
    async fn streaming_respects_ttft_and_token_delay() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_millis(100),
            token_delay: Duration::from_millis(20),
            ..SimulatorConfig::default()
        })
        .await;
        let started = tokio::time::Instant::now();
        let response = post_ok(&sim, &hi_request(), &[("x-sim-response-tokens", "5")]).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(response);

        let started = tokio::time::Instant::now();
        let request = hi_stream_request();
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "5")]).await;
        // Headers and the role chunk come before ttft has passed.
        assert!(started.elapsed() < Duration::from_millis(100));
        let (text, _) = read_stream(response, Duration::from_secs(5)).await;
        assert!(started.elapsed() >= Duration::from_millis(180));
        assert_eq!(content_deltas(&data_frames(&text)).len(), 5);
    }
}
