#!/usr/bin/env node
// The `chatgpt-native` command (package.json `bin`): chat, batch, simulate, tokens, split.
// Everything is in lib/cli/; this file only starts it, so `npx chatgpt-native` finds it.
'use strict'

require('../lib/cli/main.js').main(process.argv.slice(2))
