//! The response cache in Redis: a second level behind each process's in-process cache, so an
//! answer one process paid for answers the same request in every process with the same Redis and
//! `keyPrefix` (with `cache` and `coordination` both on).
//!
//! Entries live in three keys of one hash-tag slot, `{prefix:cache}`: `:e`, a hash of entry name
//! to stored answer; `:i`, a sorted set of entry name by expiry (milliseconds of the Redis
//! server's clock); `:b`, the total bytes of the entries. An entry's name is the in-process cache
//! key (a hash of the request, never the API key) in hex. Storing is one script that drops
//! expired entries, then the earliest to expire until the new one fits within `maxEntries`
//! entries and `maxBytes` bytes (the storing process's `cache` settings), so the bound holds
//! however many processes store. The keys expire with their last entry. Reading is one script
//! that answers an entry only while it is unexpired and at most [`MAX_ENTRY_BYTES`] (checked
//! before it is sent). What comes back is decoded as untrusted input: anything unexpected is a
//! miss, counted as rejected.
//!
//! Redis slow or away: a lookup is a miss within `operationTimeoutMs`, a store is dropped (it runs
//! in the background), as every other Redis operation falls back.

use redis::{RedisResult, Script, Value};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};

use super::connection::{Coordinator, RedisConn};
use crate::core::cache::{CacheConfig, CachedCompletion};
use crate::core::chat::{CompletionChoice, RawJson, ToolCall, Usage, MAX_CHOICES, MAX_TOOL_CALLS};

/// Largest stored answer (its encoded bytes): larger ones stay in-process only.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Version of the stored encoding; an entry of another version is a miss.
const VERSION: u8 = 1;
/// Most expired entries one store drops besides those it evicts: the work of a script is bounded.
const EXPIRED_PER_STORE: u32 = 64;

/// KEYS: entries, index, bytes. ARGV[1] the entry's name, ARGV[2] the answer, ARGV[3] its time
/// to live (ms), ARGV[4] / ARGV[5] the most entries / bytes, ARGV[6] the most expired entries to
/// drop besides those evicted.
const STORE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local name, answer = ARGV[1], ARGV[2]
local ttl, max_n, max_b = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local total = tonumber(redis.call('GET', KEYS[3])) or 0
local function drop(m)
  total = total - redis.call('HSTRLEN', KEYS[1], m)
  redis.call('HDEL', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
if redis.call('ZSCORE', KEYS[2], name) then drop(name) end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))) do drop(m) end
local size = string.len(answer)
while true do
  local n = redis.call('ZCARD', KEYS[2])
  if n == 0 then total = 0 break end
  if n < max_n and total + size <= max_b then break end
  drop(redis.call('ZRANGE', KEYS[2], 0, 0)[1])
end
redis.call('HSET', KEYS[1], name, answer)
redis.call('ZADD', KEYS[2], now + ttl, name)
total = math.max(0, total) + size
redis.call('SET', KEYS[3], total)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = math.max(1, tonumber(last[2]) - now)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
return 1
"#;

/// KEYS: entries, index. ARGV[1] the entry's name, ARGV[2] the most bytes to answer. Nil when
/// absent or expired, -1 when larger, else the stored answer.
const LOOKUP: &str = r#"
local expires = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
if not expires then return false end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if expires <= now then return false end
if redis.call('HSTRLEN', KEYS[1], ARGV[1]) > tonumber(ARGV[2]) then return -1 end
return redis.call('HGET', KEYS[1], ARGV[1])
"#;

static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE));
static LOOKUP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOOKUP));

/// A stored answer, as encoded in Redis.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    text: String,
    #[serde(default)]
    delta_ends: Vec<usize>,
    role: String,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    #[serde(default)]
    usage_estimated: bool,
    /// The response's JSON text.
    detail: String,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
    refusal: Option<String>,
    logprobs: Option<String>,
    #[serde(default)]
    choices: Vec<StoredChoice>,
    upstream: Option<usize>,
}

/// One choice of a stored answer with several.
#[derive(Serialize, Deserialize)]
struct StoredChoice {
    index: u32,
    text: String,
    finish_reason: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
    refusal: Option<String>,
    logprobs: Option<String>,
}

/// The stored form of `c`.
fn encode(c: &CachedCompletion) -> Option<Vec<u8>> {
    let raw = |j: &RawJson| j.get().to_owned();
    let stored = Stored {
        v: VERSION,
        text: c.text.clone(),
        delta_ends: c.delta_ends.clone(),
        role: c.role.clone(),
        finish_reason: c.finish_reason.clone(),
        usage: c.usage,
        usage_estimated: c.usage.is_some_and(|u| u.estimated),
        detail: raw(&c.detail),
        tool_calls: c.tool_calls.clone(),
        refusal: c.refusal.clone(),
        logprobs: c.logprobs.as_ref().map(raw),
        choices: c
            .all_choices
            .iter()
            .map(|choice| StoredChoice {
                index: choice.index,
                text: choice.text.clone(),
                finish_reason: choice.finish_reason.clone(),
                tool_calls: choice.tool_calls.clone(),
                refusal: choice.refusal.clone(),
                logprobs: choice.logprobs.as_ref().map(raw),
            })
            .collect(),
        upstream: c.upstream,
    };
    serde_json::to_vec(&stored).ok()
}

/// An answer read back from Redis, or `None` when it is not one this version stored: any other
/// version, a shape that does not decode, delta offsets past the text or inside a character, more
/// choices or tool calls than an answer can have, an upstream index of no upstream of this client
/// (`upstreams`, 0 without).
fn decode(bytes: &[u8], upstreams: usize) -> Option<CachedCompletion> {
    let s: Stored = serde_json::from_slice(bytes).ok()?;
    let calls_ok = |calls: &[ToolCall]| calls.len() <= MAX_TOOL_CALLS;
    let ends_ok = s.delta_ends.len() <= s.text.len()
        && s.delta_ends.is_sorted()
        && s.delta_ends.iter().all(|&end| s.text.is_char_boundary(end));
    if s.v != VERSION
        || !ends_ok
        || !calls_ok(&s.tool_calls)
        || s.choices.len() > MAX_CHOICES
        || s.choices.iter().any(|c| !calls_ok(&c.tool_calls))
        || s.upstream.is_some_and(|u| u >= upstreams.max(1))
    {
        return None;
    }
    let usage = s.usage.map(|u| Usage {
        estimated: s.usage_estimated,
        ..u
    });
    Some(CachedCompletion {
        text: s.text,
        delta_ends: s.delta_ends,
        role: s.role,
        finish_reason: s.finish_reason,
        usage,
        detail: RawJson::from_text(s.detail),
        tool_calls: s.tool_calls,
        refusal: s.refusal,
        logprobs: s.logprobs.map(RawJson::from_text),
        all_choices: s
            .choices
            .into_iter()
            .map(|c| CompletionChoice {
                index: c.index,
                text: c.text,
                finish_reason: c.finish_reason,
                tool_calls: c.tool_calls,
                refusal: c.refusal,
                logprobs: c.logprobs.map(RawJson::from_text),
                parsed: None,
            })
            .collect(),
        upstream: s.upstream,
    })
}

/// What a lookup found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    Hit(Box<CachedCompletion>),
    Miss,
    /// Something was stored under the name that is not an answer this client can use (too big,
    /// undecodable): a miss, counted apart.
    Rejected,
}

/// One client's use of the response cache in Redis.
pub struct SharedCache {
    coordinator: Arc<Coordinator>,
    /// `{prefix:cache}:e`, `:i`, `:b` (see the module docs).
    entries: Arc<str>,
    index: Arc<str>,
    bytes: Arc<str>,
    cfg: CacheConfig,
    /// The client's number of `upstreams` (0 without): a stored answer names one by index.
    upstreams: usize,
}

impl SharedCache {
    /// The shared cache of a client with `cfg` (its in-process `cache` settings, which bound
    /// what it stores in Redis too) and `upstreams` upstreams.
    pub fn new(coordinator: Arc<Coordinator>, cfg: CacheConfig, upstreams: usize) -> Self {
        let tag = format!("{{{}:cache}}", coordinator.config().key_prefix);
        SharedCache {
            coordinator,
            entries: format!("{tag}:e").into(),
            index: format!("{tag}:i").into(),
            bytes: format!("{tag}:b").into(),
            cfg,
            upstreams,
        }
    }

    /// The entry name of the in-process cache key `key`.
    fn name(key: u128) -> String {
        format!("{key:032x}")
    }

    /// The answer stored under `key`, within `operationTimeoutMs`.
    pub async fn lookup(&self, key: u128) -> Lookup {
        let (entries, index) = (Arc::clone(&self.entries), Arc::clone(&self.index));
        let found = self
            .coordinator
            .run(|conn| async move { lookup(conn, &entries, &index, key).await })
            .await;
        match found {
            Ok(Value::BulkString(bytes)) => match decode(&bytes, self.upstreams) {
                Some(hit) => Lookup::Hit(Box::new(hit)),
                None => Lookup::Rejected,
            },
            Ok(Value::Nil) | Err(_) => Lookup::Miss,
            Ok(_) => Lookup::Rejected,
        }
    }

    /// Stores `completion` under `key` with the cache's TTL, within `operationTimeoutMs`
    /// (callers run it in the background). False when nothing was stored: larger than
    /// [`MAX_ENTRY_BYTES`] or `maxBytes`, or Redis unavailable.
    pub async fn store(&self, key: u128, completion: &CachedCompletion) -> bool {
        let Some(answer) = encode(completion) else {
            return false;
        };
        let cap = usize::try_from(self.cfg.max_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_ENTRY_BYTES);
        if answer.len() > cap {
            return false;
        }
        let ttl_ms = u64::try_from(self.cfg.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (entries, index, bytes) = (
            Arc::clone(&self.entries),
            Arc::clone(&self.index),
            Arc::clone(&self.bytes),
        );
        let bound = Bound {
            ttl_ms,
            max_entries: self.cfg.max_entries.max(1),
            max_bytes: self.cfg.max_bytes.max(1),
        };
        self.coordinator
            .run(|mut conn: RedisConn| async move {
                STORE_SCRIPT
                    .key(&*entries)
                    .key(&*index)
                    .key(&*bytes)
                    .arg(Self::name(key))
                    .arg(answer)
                    .arg(bound.ttl_ms)
                    .arg(bound.max_entries)
                    .arg(bound.max_bytes)
                    .arg(EXPIRED_PER_STORE)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .is_ok()
    }
}

/// What one store may keep: its time to live and the cache's bounds.
#[derive(Clone, Copy)]
struct Bound {
    ttl_ms: u64,
    max_entries: usize,
    max_bytes: u64,
}

async fn lookup(mut conn: RedisConn, entries: &str, index: &str, key: u128) -> RedisResult<Value> {
    LOOKUP_SCRIPT
        .key(entries)
        .key(index)
        .arg(SharedCache::name(key))
        .arg(MAX_ENTRY_BYTES)
        .invoke_async(&mut conn)
        .await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::core::chat::ToolFunction;
    use crate::core::coordination::test_redis::TestRedis;
    use crate::core::coordination::{CoordinationConfig, CoordinationOptions};

    fn process(url: &str, timeout_ms: u64) -> Arc<Coordinator> {
        let cfg = CoordinationConfig::build(CoordinationOptions {
            url: url.into(),
            key_prefix: Some("c".into()),
            operation_timeout_ms: Some(timeout_ms),
            ..Default::default()
        })
        .unwrap();
        Arc::new(Coordinator::new(cfg))
    }

    fn cache(url: &str, cfg: CacheConfig) -> SharedCache {
        SharedCache::new(process(url, 2_000), cfg, 0)
    }

    fn answer(text: &str) -> CachedCompletion {
        CachedCompletion {
            text: text.into(),
            delta_ends: vec![1, text.len()],
            role: "assistant".into(),
            finish_reason: Some("stop".into()),
            usage: Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
                total_tokens: 7,
                ..Usage::default()
            }),
            detail: RawJson::from_text(r#"{"id":"chatcmpl-1","object":"chat.completion"}"#.into()),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                kind: "function".into(),
                function: ToolFunction {
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            }],
            refusal: None,
            logprobs: Some(RawJson::from_text(r#"{"content":[]}"#.into())),
            all_choices: Vec::new(),
            upstream: None,
        }
    }

    /// Runs a raw command on `cache`'s Redis.
    async fn command<T: redis::FromRedisValue + Send + 'static>(cache: &SharedCache, cmd: redis::Cmd) -> T {
        cache
            .coordinator
            .run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_stored_by_one_process_is_found_by_another_as_it_was() {
        let redis = TestRedis::start();
        let (a, b) = (
            cache(&redis.url(), CacheConfig::default()),
            cache(&redis.url(), CacheConfig::default()),
        );
        assert_eq!(b.lookup(7).await, Lookup::Miss);
        let stored = answer("hello there");
        assert!(a.store(7, &stored).await);
        assert_eq!(b.lookup(7).await, Lookup::Hit(Box::new(stored)));
        assert_eq!(b.lookup(8).await, Lookup::Miss);
        // Every key of the cache is in one hash-tag slot, and none names the request in clear.
        let keys: Vec<String> = command(&b, redis::cmd("KEYS").arg("*").clone()).await;
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(keys.iter().all(|k| k.starts_with("{c:cache}:")), "{keys:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_is_a_miss_once_its_ttl_has_passed_and_the_keys_expire_with_it() {
        let redis = TestRedis::start();
        let short = CacheConfig {
            ttl: Duration::from_millis(300),
            ..CacheConfig::default()
        };
        let a = cache(&redis.url(), short);
        assert!(a.store(1, &answer("soon gone")).await);
        assert!(matches!(a.lookup(1).await, Lookup::Hit(_)));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(a.lookup(1).await, Lookup::Miss);
        let keys: Vec<String> = command(&a, redis::cmd("KEYS").arg("*").clone()).await;
        assert!(keys.is_empty(), "{keys:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_entry_count_and_bytes_stay_within_the_bound_whoever_stores() {
        let redis = TestRedis::start();
        let bound = CacheConfig {
            max_entries: 3,
            ..CacheConfig::default()
        };
        let (a, b) = (cache(&redis.url(), bound), cache(&redis.url(), bound));
        for key in 0..8u128 {
            let process = if key % 2 == 0 { &a } else { &b };
            assert!(process.store(key, &answer(&format!("answer {key}"))).await);
        }
        let count: u64 = command(&a, redis::cmd("HLEN").arg(&*a.entries).clone()).await;
        let indexed: u64 = command(&a, redis::cmd("ZCARD").arg(&*a.index).clone()).await;
        assert_eq!((count, indexed), (3, 3));
        // The earliest to expire went first; the latest are kept.
        assert_eq!(a.lookup(0).await, Lookup::Miss);
        assert!(matches!(a.lookup(7).await, Lookup::Hit(_)));

        // A byte bound: room for two of these answers, not three.
        let size = encode(&answer("x".repeat(1_000).as_str())).unwrap().len() as u64;
        let tight = CacheConfig {
            max_bytes: size * 2 + size / 2,
            ..CacheConfig::default()
        };
        let c = SharedCache::new(process(&redis.url(), 2_000), tight, 0);
        command::<i64>(
            &c,
            redis::cmd("DEL").arg(&*c.entries).arg(&*c.index).arg(&*c.bytes).clone(),
        )
        .await;
        for key in 0..4u128 {
            assert!(c.store(key, &answer("x".repeat(1_000).as_str())).await);
        }
        let total: u64 = command(&c, redis::cmd("GET").arg(&*c.bytes).clone()).await;
        let count: u64 = command(&c, redis::cmd("HLEN").arg(&*c.entries).clone()).await;
        assert_eq!((total, count), (size * 2, 2));
        // An answer larger than the bound is not stored at all.
        let huge = answer(&"y".repeat(MAX_ENTRY_BYTES));
        assert!(!c.store(9, &huge).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_is_not_a_stored_answer_is_a_rejected_miss() {
        let redis = TestRedis::start();
        let a = cache(&redis.url(), CacheConfig::default());
        assert!(a.store(1, &answer("real")).await);
        let entries = a.entries.to_string();
        let name = |key: u128| SharedCache::name(key);
        let valid = String::from_utf8(encode(&answer("real")).unwrap()).unwrap();
        let mut cases: Vec<(u128, Vec<u8>)> = vec![
            (2, b"not json".to_vec()),
            (3, br#"{"v":1}"#.to_vec()),
            (4, valid.replace(r#""v":1"#, r#""v":99"#).into_bytes()),
            (5, valid.replace("[1,4]", "[3,2]").into_bytes()),
            (6, valid.replace("[1,4]", "[1,400]").into_bytes()),
            (7, valid.replace(r#""upstream":null"#, r#""upstream":5"#).into_bytes()),
            (8, vec![0xff, 0xfe, 0x00]),
            (9, vec![b'['; 100_000]),
            // A delta ending inside a character: replaying it would lose text.
            (
                11,
                valid
                    .replacen(r#""text":"real""#, r#""text":"réal""#, 1)
                    .replace("[1,4]", "[2,5]")
                    .into_bytes(),
            ),
        ];
        // Larger than an entry may be: refused before it is sent.
        cases.push((10, vec![b' '; MAX_ENTRY_BYTES + 1]));
        for (key, bytes) in cases {
            command::<i64>(&a, redis::cmd("HSET").arg(&entries).arg(name(key)).arg(bytes).clone()).await;
            command::<i64>(
                &a,
                redis::cmd("ZADD")
                    .arg(&*a.index)
                    .arg(u64::MAX / 4)
                    .arg(name(key))
                    .clone(),
            )
            .await;
            assert_eq!(a.lookup(key).await, Lookup::Rejected, "case {key}");
        }
        assert!(matches!(a.lookup(1).await, Lookup::Hit(_)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_unreachable_a_lookup_is_a_miss_within_the_operation_budget() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = SharedCache::new(
            process(&format!("redis://127.0.0.1:{port}"), 100),
            CacheConfig::default(),
            0,
        );
        let started = Instant::now();
        assert_eq!(a.lookup(1).await, Lookup::Miss);
        assert!(!a.store(1, &answer("nowhere")).await);
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "{:?}",
            started.elapsed()
        );
    }
}
