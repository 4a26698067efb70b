// Reading a command's text input: a file, or stdin when the name is `-`.
'use strict'

const { readFile } = require('node:fs/promises')

/** The whole of `file` (or of stdin for `-`) as UTF-8 text. */
async function readText(file) {
  if (file !== '-') return readFile(file, 'utf8')
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

module.exports = { readText }
