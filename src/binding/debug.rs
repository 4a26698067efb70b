//! `debug: true` in Node.js: core's debug entries (`core::debug`) printed by the JavaScript
//! layer's `debugLog` (`lib/debug.js`) with `console.log`, as the `chatgpt` package prints them.
//!
//! Each entry is a call through a weak ThreadsafeFunction that the call awaits, so entries appear
//! in order and before what the call does next (the request is logged before it is sent, the
//! response before the Promise settles); a pending call keeps Node alive meanwhile.

use futures::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;

use super::init::BindingData;
use crate::core::debug::{DebugEntry, DebugLog};

/// `debugLog(kind, text, promptTokens)`'s arguments.
type Args = FnArgs<(String, String, Option<u32>)>;
type LogFn = ThreadsafeFunction<Args, (), Args, Status, false, true>;

/// Prints through `lib/debug.js`.
pub struct JsDebugLog {
    print: LogFn,
}

impl JsDebugLog {
    pub fn new(env: &Env) -> Result<Self> {
        let print = BindingData::get(env)?.js(|js| js.debug_log.borrow_back(env))?;
        Ok(JsDebugLog {
            print: print
                .build_threadsafe_function()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
        })
    }
}

impl DebugLog for JsDebugLog {
    fn log(&self, entry: DebugEntry) -> BoxFuture<'_, ()> {
        let (kind, text, prompt_tokens) = match entry {
            DebugEntry::Request { prompt_tokens, body } => ("request", body, Some(prompt_tokens)),
            DebugEntry::Response { body } => ("response", body, None),
            DebugEntry::Line(line) => ("line", line, None),
        };
        let args = FnArgs::from((kind.to_owned(), text, prompt_tokens));
        Box::pin(async move {
            // Printing is best effort: a closing environment or a replaced `console.log` that
            // throws must not fail the call.
            let _ = self.print.call_async(args).await;
        })
    }
}
