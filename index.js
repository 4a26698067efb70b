// chatgpt-native's public entry (CommonJS; index.mjs re-exports it for ESM).
//
// binding.js is the loader `napi build` generates for the native addon; this file wraps it. It
// hands the native side, once per JavaScript environment (the main thread, each worker), the
// pieces that are JavaScript by nature (lib/): the ChatGPTError class, the callback relays, the
// conversation-store adapter, the `debug` printer and JSON.parse; and it adds ChatGPTAPI's
// `apiKey` / `apiOrg` properties (lib/api.js) and the `runTools` loop over `sendMessage` (lib/tools.js). Everything else is the native classes and functions themselves,
// exported as they are, so calls go straight to native code with nothing in between.
// No HTTP, retry or protocol logic lives here.
'use strict'

// On a platform with no binary this throws ChatGPTError ERR_CHATGPT_UNSUPPORTED_PLATFORM (lib/platform.js).
const binding = require('./lib/platform.js').loadBinding()
const { ChatGPTError } = require('./lib/errors.js')
const { makeProgressRelay, makeItemRelay } = require('./lib/relay.js')
const { makeStore } = require('./lib/store.js')
const { debugLog } = require('./lib/debug.js')
const { defineCredentialProperties } = require('./lib/api.js')
const { defineRunTools } = require('./lib/tools.js')

binding.__init({ ChatGPTError, makeProgressRelay, makeItemRelay, makeStore, debugLog, parseJson: JSON.parse })
defineCredentialProperties(binding.ChatGPTAPI)
defineRunTools(binding.ChatGPTAPI)

// One assignment per name, so Node's CommonJS named-export detection sees each for ESM imports.
module.exports.ChatGPTAPI = binding.ChatGPTAPI
module.exports.ChatGPTError = ChatGPTError
module.exports.ChatGPTSimulator = binding.ChatGPTSimulator
module.exports.countMessageTokens = binding.countMessageTokens
module.exports.countTokens = binding.countTokens
module.exports.countTokensAsync = binding.countTokensAsync
module.exports.decode = binding.decode
module.exports.encode = binding.encode
module.exports.splitText = binding.splitText
// Which artifact the generated loader loaded ('native' here; its typings come from binding.d.ts).
module.exports.__napiBindingTarget = binding.__napiBindingTarget
