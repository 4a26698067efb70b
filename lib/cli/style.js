// Terminal styling for the `chatgpt-native` commands: dimmed text only where a person reads it.
//
// Escape codes go to a stream only when it is a terminal, NO_COLOR is unset or empty
// (no-color.org) and TERM is not `dumb`; piped or logged output stays plain text.
'use strict'

/** Whether `stream` should get ANSI styling. */
function useColor(stream) {
  if (!stream || !stream.isTTY) return false
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  return process.env.TERM !== 'dumb'
}

/** `text` dimmed for `stream` (SGR 2 ... 22), or as it is when `stream` gets no styling. */
function dim(stream, text) {
  return useColor(stream) ? `\x1b[2m${text}\x1b[22m` : text
}

module.exports = { useColor, dim }
