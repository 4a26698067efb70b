// Normalising and comparing what the parity suite observed from chatgpt v5 and from
// chatgpt-native: generated ids become placeholders numbered by first appearance, server-made
// values (completion ids, `created`, request ids) become fixed markers, and the documented
// differences (the suite's DELIBERATE table) are checked one by one and then set aside, so that
// whatever is left must be equal.
import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'

/** What a path of a listed difference is replaced with in both observations once checked. */
export const LISTED = '<listed in DELIBERATE>'

/** An expectation for a value that is not there (missing key or `undefined`). */
export const ABSENT = Object.freeze({ says: 'absent', test: (value) => value === undefined })

/** An expectation written as a predicate: `says` is what the table prints. */
export function expect(says, test) {
  return { says, test }
}

// v4 UUIDs (both packages' message ids) and `chatcmpl-` ids (the simulator's completion ids, and
// chatgpt-native's own reply ids, which take the same form).
const ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|chatcmpl-[0-9A-Za-z]+)$/i

/**
 * A copy of `observed` that the two packages can be compared on: `undefined` members dropped
 * (as JSON would), in every `detail` object `id` and `created` replaced by markers, `requestId`
 * replaced, and every other generated id (a string or an object key) replaced by `<id#n>`, n
 * counting distinct ids in the order the walk meets them. The walk takes the top-level members
 * in their insertion order and nested object members in sorted key order, so two observations of
 * the same script number their ids alike whatever order each package builds its objects in.
 */
export function normalise(observed) {
  const ids = new Map()
  const idFor = (value) => {
    if (!ids.has(value)) ids.set(value, `<id#${ids.size + 1}>`)
    return ids.get(value)
  }
  const walk = (value, key, sortKeys) => {
    if (typeof value === 'string') return ID.test(value) ? idFor(value) : value
    if (Array.isArray(value)) return value.map((item) => walk(item, undefined, true))
    if (value === null || typeof value !== 'object') return value
    const out = {}
    const keys = Object.keys(value)
    if (sortKeys) keys.sort()
    for (const member of keys) {
      let item = value[member]
      if (item === undefined) continue
      if (key === 'detail' && member === 'id') item = '<completion id>'
      else if (key === 'detail' && member === 'created') item = '<created>'
      else if (member === 'requestId') item = '<requestId>'
      out[ID.test(member) ? idFor(member) : member] = walk(item, member, true)
    }
    return out
  }
  return walk(observed, undefined, false)
}

/**
 * Checks each entry of `entries` (the DELIBERATE rows of one scenario) against the normalised
 * observations `v5` and `ours`, then replaces the checked values with LISTED in both. A path is
 * dot-separated; `*` matches every member present on either side. For every matched path the
 * v5 value must meet `entry.v5` and ours `entry.ours` (a literal compared deeply, ABSENT, or an
 * `expect(...)` predicate, called as `test(value, { root, parent })`), and at least one matched
 * path must hold different values: a difference that went away fails here until the table is
 * updated.
 */
export function settleListedDifferences(entries, v5, ours) {
  for (const entry of entries) {
    const segments = entry.path.split('.')
    const paths = expand([v5, ours], segments)
    assert.ok(paths.length > 0, `DELIBERATE ${entry.scenario}/${entry.path}: matched nothing`)
    let differing = 0
    for (const path of paths) {
      const v5Value = at(v5, path)
      const oursValue = at(ours, path)
      meets(entry, 'v5', entry.v5, v5Value, { root: v5, parent: at(v5, path.slice(0, -1)) }, path)
      meets(entry, 'ours', entry.ours, oursValue, { root: ours, parent: at(ours, path.slice(0, -1)) }, path)
      if (!isDeepStrictEqual(v5Value, oursValue)) differing++
    }
    assert.ok(
      differing > 0,
      `DELIBERATE ${entry.scenario}/${entry.path}: v5 and ours now agree here; remove the entry`,
    )
    // Only after every path was checked: a predicate may look at values of another listed path.
    for (const path of paths) {
      setIfParent(v5, path)
      setIfParent(ours, path)
    }
  }
}

/**
 * `assert.deepEqual(ours, v5)`, with the failure message opening on the list of the paths that
 * differ (the diff of a large observation is hard to read on its own).
 */
export function assertSame(ours, v5) {
  try {
    assert.deepEqual(ours, v5)
  } catch (err) {
    const paths = differingPaths(ours, v5).join('\n  ')
    err.message = `chatgpt-native differs from chatgpt v5 at:\n  ${paths}\n${err.message}`
    throw err
  }
}

/** The paths (dot-separated) where `a` and `b` differ, deepest first found. */
export function differingPaths(a, b, path = []) {
  if (isDeepStrictEqual(a, b)) return []
  const bothObjects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object'
  if (!bothObjects || Array.isArray(a) !== Array.isArray(b)) return [path.join('.') || '(root)']
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...keys].flatMap((key) => differingPaths(a[key], b[key], [...path, key]))
}

function meets(entry, side, expectation, value, context, path) {
  const where = `DELIBERATE ${entry.scenario}/${path.join('.')} (${side})`
  if (expectation && typeof expectation.test === 'function') {
    assert.ok(expectation.test(value, context), `${where}: expected ${expectation.says}, got ${show(value)}`)
  } else {
    assert.deepEqual(value, expectation, `${where}: the table says ${show(expectation)}`)
  }
}

function show(value) {
  return value === undefined ? 'undefined' : JSON.stringify(value)
}

/** Every concrete path (an array of keys) `segments` matches in any of `roots`. */
function expand(roots, segments) {
  let paths = [[]]
  for (const segment of segments) {
    const next = []
    for (const path of paths) {
      if (segment !== '*') {
        next.push([...path, segment])
        continue
      }
      const keys = new Set()
      for (const root of roots) {
        const value = at(root, path)
        if (value !== null && typeof value === 'object') for (const key of Object.keys(value)) keys.add(key)
      }
      for (const key of keys) next.push([...path, key])
    }
    paths = next
  }
  return paths
}

function at(root, path) {
  let value = root
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined
    value = value[key]
  }
  return value
}

function setIfParent(root, path) {
  const parent = at(root, path.slice(0, -1))
  if (parent !== null && typeof parent === 'object') parent[path[path.length - 1]] = LISTED
}
