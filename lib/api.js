// Properties of ChatGPTAPI that the `chatgpt` package has: `apiKey` and `apiOrg`, set like v5's.
// They are accessors on the prototype; the values live in native code, which validates a new value
// and makes the calls that start afterwards use it. `apiKey` reads back as the key's fingerprint
// (`sk-…abcd`), never the key: `util.inspect(api, { showHidden: true, getters: true })` shows
// prototype accessors' values, and keys never appear in inspect output.
'use strict'

function defineCredentialProperties(ChatGPTAPI) {
  Object.defineProperties(ChatGPTAPI.prototype, {
    apiKey: {
      get() {
        return this.__getApiKey()
      },
      set(key) {
        this.__setApiKey(key)
      },
      configurable: true,
    },
    apiOrg: {
      get() {
        return this.__getApiOrg()
      },
      set(org) {
        this.__setApiOrg(org)
      },
      configurable: true,
    },
  })
}

module.exports = { defineCredentialProperties }
