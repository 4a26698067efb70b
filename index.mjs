// chatgpt-native's ESM entry: the CommonJS entry (index.js) loaded once, its exports re-exported
// by name, and the whole exports object as the default export (as importing index.js would give).
import native from './index.js'

export const {
  ChatGPTAPI,
  ChatGPTError,
  ChatGPTSimulator,
  countMessageTokens,
  countTokens,
  countTokensAsync,
  decode,
  encode,
  splitText,
  __napiBindingTarget,
} = native

export default native
