// The printer behind `debug: true` (src/binding/debug.rs hands it each entry, already scrubbed of
// keys and credentials).
//
// Logged as the `chatgpt` package logs: `console.log('sendMessage (N tokens)', body)` before a
// call and `console.log(response)` after a non-streamed reply, with the JSON parsed so it prints
// as the same object would. Other entries are lines of text.
'use strict'

function parsed(text) {
  try {
    return JSON.parse(text)
  } catch (_) {
    return text
  }
}

/** Print one entry: `kind` is 'request', 'response' or 'line'. */
function debugLog(kind, text, promptTokens) {
  if (kind === 'request') console.log(`sendMessage (${promptTokens} tokens)`, parsed(text))
  else if (kind === 'response') console.log(parsed(text))
  else console.log(text)
}

module.exports = { debugLog }
