//! Reading a streamed chat completion: response bytes through the SSE decoder and the chunk
//! parser, each content delta handed to the caller's [`DeltaSink`] as it arrives, and the
//! folded [`Completion`] at the end.
//!
//! Every body read runs under the attempt's [`CallBounds`] with the idle timeout, and every
//! failure carries the text received so far (`partialText`) and the response's request id.

use futures::FutureExt;

use super::bounds::CallBounds;
use super::chat::{ChoiceDelta, Completion, StreamState, StreamStep, ToolCall};
use super::error::ChatError;
use super::sse::{SseDecoder, SseError, SseEvent};
use super::transport::{network_error, too_large};

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
    /// The raw JSON of the chunk that carried this delta; empty when there is none (a delta
    /// replayed from the cache or a shared call, a replacement character flushed at the end).
    pub chunk: &'a str,
    /// The tool calls assembled so far, when this event carried a tool-call fragment (`delta` is
    /// then "" unless the same chunk carried text); `None` for a text-only delta.
    pub tool_calls: Option<&'a [ToolCall]>,
    /// The choice this delta belongs to, when the request asked for several (`n > 1`); `text`
    /// and `tool_calls` are then that choice's. `None` with one choice.
    pub choice: Option<u32>,
    /// Refusal text this event added (a streamed `delta.refusal`; `delta` is then "" unless the
    /// same chunk carried text).
    pub refusal: Option<&'a str>,
}

/// One event for a sink, with everything a delta may carry besides its text.
#[derive(Debug, Default)]
pub struct DeltaEvent<'a> {
    pub delta: &'a str,
    /// The choice's text so far, this delta included.
    pub text: &'a str,
    /// The raw JSON of the chunk that carried it ("" when none).
    pub chunk: &'a str,
    /// The choice's tool calls so far, when the event carried a fragment of one.
    pub tool_calls: Option<&'a [ToolCall]>,
    /// See [`Progress::choice`].
    pub choice: Option<u32>,
    /// See [`Progress::refusal`].
    pub refusal: Option<&'a str>,
}

/// Receives content deltas in order. Implementations must be cheap: this runs per delta.
pub trait DeltaSink: Send {
    fn on_delta(&mut self, progress: &Progress<'_>);
}

/// The ids a call's deltas carry.
#[derive(Clone, Copy)]
pub struct ProgressIds<'a> {
    /// The reply's id.
    pub reply: &'a str,
    /// The user message's id.
    pub parent: &'a str,
    pub conversation: Option<&'a str>,
}

/// Where one call's deltas go, and how many went there.
pub struct Delivery<'a, 'd> {
    sink: &'a mut (dyn DeltaSink + 'd),
    ids: ProgressIds<'a>,
    delivered: u32,
}

impl<'a, 'd> Delivery<'a, 'd> {
    pub fn new(sink: &'a mut (dyn DeltaSink + 'd), ids: ProgressIds<'a>) -> Self {
        Delivery {
            sink,
            ids,
            delivered: 0,
        }
    }

    /// Hand one delta to the sink; `text` is everything received so far, the delta included,
    /// and `chunk` the raw JSON of the chunk it came in ("" when none).
    pub fn deliver(&mut self, delta: &str, text: &str, chunk: &str) {
        self.deliver_with_tools(delta, text, chunk, None);
    }

    /// [`Delivery::deliver`] for an event that may have carried tool-call fragments: `tool_calls`
    /// is then the calls assembled so far.
    pub fn deliver_with_tools(&mut self, delta: &str, text: &str, chunk: &str, tool_calls: Option<&[ToolCall]>) {
        self.deliver_event(DeltaEvent {
            delta,
            text,
            chunk,
            tool_calls,
            ..DeltaEvent::default()
        });
    }

    /// Hand one event, of any kind, to the sink.
    pub fn deliver_event(&mut self, event: DeltaEvent<'_>) {
        self.delivered = self.delivered.saturating_add(1);
        self.sink.on_delta(&Progress {
            id: self.ids.reply,
            delta: event.delta,
            text: event.text,
            parent_message_id: self.ids.parent,
            conversation_id: self.ids.conversation,
            chunk: event.chunk,
            tool_calls: event.tool_calls,
            choice: event.choice,
            refusal: event.refusal,
        });
    }

    /// Deltas delivered so far. Once there are any, a retry would repeat them.
    pub fn delivered(&self) -> u32 {
        self.delivered
    }
}

/// Hand `delta`, folded into `state` already, to `delivery` with its choice's text and calls.
fn deliver_choice(state: &StreamState, delta: &ChoiceDelta, chunk: &str, delivery: &mut Delivery<'_, '_>) {
    let Some(choice) = state.choice(delta.choice) else {
        return;
    };
    delivery.deliver_event(DeltaEvent {
        delta: &delta.text,
        text: &choice.text,
        chunk,
        tool_calls: delta.tool_calls_changed.then_some(choice.tool_calls.as_slice()),
        // Below MAX_CHOICES.
        choice: (state.requested() > 1).then(|| u32::try_from(delta.choice).unwrap_or(u32::MAX)),
        refusal: delta.refusal.as_deref(),
    });
}

/// Read a streamed response to its end (or `[DONE]`), delivering each delta. `max_bytes`
/// bounds the whole body and each event; `choices` is the number of choices asked for (`n`).
pub async fn read_stream(
    mut body: reqwest::Response,
    bounds: &CallBounds<'_>,
    max_bytes: usize,
    choices: usize,
    delivery: &mut Delivery<'_, '_>,
) -> Result<Completion, ChatError> {
    let mut decoder = SseDecoder::new(max_bytes);
    let mut state = StreamState::new(choices);
    let mut events: Vec<SseEvent> = Vec::new();
    let mut received = 0usize;
    'read: loop {
        // The idle timeout counts from the first token (see `StreamState::started`): until then
        // the model may be thinking, which the attempt's and the call's deadlines bound.
        let read = async { body.chunk().await.map_err(network_error) };
        let chunk = if state.started() {
            bounds.read_body(read).await
        } else {
            bounds.read_before_first_token(read).await
        }
        .map_err(|e| e.with_partial_text(state.text()))?;
        match &chunk {
            Some(bytes) => {
                received = received.saturating_add(bytes.len());
                if received > max_bytes {
                    return Err(too_large(max_bytes).with_partial_text(state.text()));
                }
                decoder
                    .feed(bytes, &mut events)
                    .map_err(|e| sse_error(e, max_bytes).with_partial_text(state.text()))?;
            }
            None => decoder.finish(&mut events),
        }
        for ev in events.drain(..) {
            match state.on_event(&ev).map_err(|e| e.with_partial_text(state.text()))? {
                StreamStep::Delta(delta) => {
                    deliver_choice(&state, &delta, &ev.data, delivery);
                    // A chunk that changed several choices (most servers send one per chunk).
                    while let Some(more) = state.next_queued() {
                        deliver_choice(&state, &more, &ev.data, delivery);
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
    while let Some(delta) = state.flush_held() {
        deliver_choice(&state, &delta, "", delivery);
    }
    if state.done {
        // Nothing after [DONE] is processed. One non-waiting poll lets an end-of-body that has
        // already arrived complete, which returns the connection to the keep-alive pool.
        let _ = body.chunk().now_or_never();
    }
    state.finish()
}

fn sse_error(e: SseError, max: usize) -> ChatError {
    match e {
        SseError::EventTooLarge { .. } => too_large(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a sink is given.
    #[derive(Default)]
    struct Recorder(Vec<(String, String, String)>);

    impl DeltaSink for Recorder {
        fn on_delta(&mut self, p: &Progress<'_>) {
            self.0.push((p.delta.to_owned(), p.text.to_owned(), p.id.to_owned()));
        }
    }

    #[test]
    fn a_delivery_counts_deltas_and_stamps_them_with_the_call_ids() {
        let mut recorder = Recorder::default();
        let ids = ProgressIds {
            reply: "chatcmpl-1",
            parent: "user-1",
            conversation: None,
        };
        let mut delivery = Delivery::new(&mut recorder, ids);
        delivery.deliver("Hel", "Hel", "{}");
        delivery.deliver("lo", "Hello", "{}");
        assert_eq!(delivery.delivered(), 2);
        assert_eq!(recorder.0[1], ("lo".into(), "Hello".into(), "chatcmpl-1".into()));
    }
}
