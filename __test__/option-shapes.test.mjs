// The typings and the runtime accept the same options: every member of an options interface in
// the typings is read by its call (a value no option accepts fails naming it, not as an unknown
// option), and a name from another options interface is rejected as unknown.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'

import { ChatGPTAPI, countTokens, splitText } from '../index.js'
import { API_KEY, rejection, thrown } from './helpers.mjs'

/** A value no option accepts: each reader must reject it, naming the option. */
const PROBE = Symbol('probe')

/** Options accepted on purpose without being read: `fetch` is ignored with a warning. */
const IGNORED = new Set(['fetch'])

/** The bases of an `extends` clause: `A, B` or `Omit<A, 'x' | 'y'>` (A without x and y). */
function basesOf(clause) {
  if (!clause) return []
  const omit = clause.match(/^Omit<(\w+),([^>]*)>$/)
  if (omit) return [{ name: omit[1], omitted: [...omit[2].matchAll(/'(\w+)'/g)].map((m) => m[1]) }]
  return clause.split(',').map((b) => ({ name: b.trim(), omitted: [] }))
}

/**
 * Members of every `export interface` in the typings (and the generated binding's, if separate),
 * with those of the interfaces it `extends` (less what an `Omit<...>` leaves out).
 */
function interfaces() {
  const files = ['../index.d.ts', '../binding.d.ts']
    .map((f) => new URL(f, import.meta.url))
    .filter((url) => existsSync(url))
  const declared = new Map()
  for (const url of files) {
    const source = readFileSync(url, 'utf8')
    for (const [, name, clause, body = ''] of source.matchAll(
      /^export interface (\w+)(?:\s+extends ([^{]+?))? *\{(?:\}|\n([\s\S]*?)^\})/gm,
    )) {
      const members = [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1])
      declared.set(name, { bases: basesOf(clause?.replace(/\s+/g, ' ').trim()), members })
    }
  }
  /** An interface's own members and its bases' (a base missing from the typings adds none). */
  const resolve = (name, seen = new Set()) => {
    const shape = declared.get(name)
    if (!shape || seen.has(name)) return []
    seen.add(name)
    const inherited = shape.bases.flatMap((base) =>
      resolve(base.name, seen).filter((member) => !base.omitted.includes(member)),
    )
    return [...new Set([...shape.members, ...inherited])]
  }
  return new Map([...declared.keys()].map((name) => [name, resolve(name)]))
}

const typed = interfaces()

/** The options objects this test probes: how to call with one, and how messages name its keys. */
const base = { apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:9', maxRetries: 0 }
const shapes = {
  ChatGPTAPIOptions: { label: (n) => n, call: (o) => thrown(() => new ChatGPTAPI({ ...base, ...o })) },
  RateLimitOptions: {
    label: (n) => `rateLimit.${n}`,
    call: (o) => thrown(() => new ChatGPTAPI({ ...base, rateLimit: o })),
  },
  CircuitBreakerOptions: {
    label: (n) => `circuitBreaker.${n}`,
    call: (o) => thrown(() => new ChatGPTAPI({ ...base, circuitBreaker: o })),
  },
  CacheOptions: { label: (n) => `cache.${n}`, call: (o) => thrown(() => new ChatGPTAPI({ ...base, cache: o })) },
  CoordinationOptions: {
    label: (n) => `coordination.${n}`,
    call: (o) => thrown(() => new ChatGPTAPI({ ...base, coordination: o })),
  },
  RedisCoordinationOptions: {
    label: (n) => `coordination.redis.${n}`,
    call: (o) =>
      thrown(() => new ChatGPTAPI({ ...base, coordination: { redis: { url: 'redis://127.0.0.1:9', ...o } } })),
  },
  UpstreamOptions: {
    label: (n) => `upstreams[0].${n}`,
    call: (o) =>
      thrown(() => new ChatGPTAPI({ maxRetries: 0, upstreams: [{ apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:9', ...o }] })),
  },
  SendMessageOptions: { label: (n) => n, call: (o) => rejection(new ChatGPTAPI(base).sendMessage('hi', o)) },
  SendMessagesOptions: {
    label: (n) => n,
    call: (o) => rejection(new ChatGPTAPI(base).sendMessages([{ role: 'user', content: 'hi' }], o)),
  },
  SendManyOptions: { label: (n) => n, call: (o) => rejection(new ChatGPTAPI(base).sendMany(['hi'], o)) },
  TokenizerOptions: { label: (n) => n, call: (o) => thrown(() => countTokens('x', o)) },
  SplitTextOptions: { label: (n) => n, call: (o) => thrown(() => splitText('x', { maxTokens: 10, ...o })) },
}

/** Every name any probed options interface declares, plus one no interface declares. */
const vocabulary = new Set(['notAnOption', 'text'])
for (const name of Object.keys(shapes)) for (const member of typed.get(name) ?? []) vocabulary.add(member)

test('the typings declare every options interface the calls read', () => {
  for (const name of Object.keys(shapes)) {
    assert.ok(typed.get(name)?.length > 0, `${name} is missing from the typings or has no members`)
  }
})

for (const [name, shape] of Object.entries(shapes)) {
  test(`every ${name} member of the typings is read, and other names are unknown`, async () => {
    const members = typed.get(name) ?? []
    for (const member of members) {
      if (IGNORED.has(member)) continue
      const err = await shape.call({ [member]: PROBE })
      assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', `${name}.${member}: ${err.message}`)
      assert.doesNotMatch(err.message, /Unknown option/, `${name}.${member} is typed but not accepted`)
      assert.ok(err.message.includes(`\`${shape.label(member)}\``), `${name}.${member} is not read: ${err.message}`)
    }
    for (const other of vocabulary) {
      if (members.includes(other)) continue
      const err = await shape.call({ [other]: PROBE })
      assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', `${name}: ${other}: ${err.message}`)
      assert.match(err.message, /Unknown option/, `${name} accepts \`${other}\`, which its typings lack`)
    }
  })
}

test('a sendMany object input reads `text` and every SendMessageOptions member, and nothing else', async () => {
  const api = new ChatGPTAPI(base)
  const members = ['text', ...(typed.get('SendMessageOptions') ?? [])]
  for (const member of members) {
    // sendMany documents that an input's own `abortSignal` is not used (the batch's cancels it).
    if (member === 'abortSignal') continue
    const err = await rejection(api.sendMany([{ text: 'hi', [member]: PROBE }]))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', `${member}: ${err.message}`)
    assert.ok(err.message.includes(`\`inputs[0].${member}\``), `inputs[0].${member} is not read: ${err.message}`)
  }
  for (const other of vocabulary) {
    if (members.includes(other)) continue
    const err = await rejection(api.sendMany([{ text: 'hi', [other]: PROBE }]))
    assert.match(err.message, /Unknown option/, `a sendMany input accepts \`${other}\``)
  }
})
