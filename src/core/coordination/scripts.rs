//! The Lua scripts that keep one shared rate bucket in Redis, and their typed calls.
//!
//! A bucket is one hash, `{prefix:rl:key-hash}:m:model` (`{prefix:rl:up:upstream-hash:key-hash}:m:model`
//! for an entry of `upstreams`). The braces are a Redis Cluster hash tag covering the key (and
//! upstream) only, so the buckets of one key and its health hash (`{…}:h`, see `health.rs`,
//! which the reservation reads) share a slot, and a script always runs on one node. Its fields:
//! `r` / `t` the request and token levels, `ts` when they were last refilled (microseconds of
//! the Redis server's clock, `TIME`, so processes on machines with different clocks agree),
//! `p` until when sending is paused, `lr` / `lt` limits learned from `x-ratelimit-limit-*` when
//! none is configured. A missing hash is a full bucket: each write sets an expiry after which
//! the bucket would have refilled anyway (two minutes, or the end of a longer pause).
//!
//! The buckets refill continuously at `limit / 60 s`, capacity `limit`, like the in-process
//! `RateLimiter` (`core/limits.rs`); each script reads, refills, decides and writes in one atomic
//! step, so two processes can never both take the last request or token. Scripts are sent by
//! hash (`EVALSHA`) and, on `NOSCRIPT` (a restarted or flushed server), in full (`EVAL`): redis-rs's
//! `Script` does that.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{RedisResult, Script};

use super::connection::RedisConn;

use crate::core::limits::{RateHeaders, RateLimitConfig};

/// Reads and refills the bucket; defines `save()`, which writes it back with its expiry.
/// ARGV[1] and ARGV[2] are the configured requests and tokens per minute (0: none configured,
/// use a learned limit if there is one).
const PRELUDE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local h = redis.call('HMGET', KEYS[1], 'r', 't', 'ts', 'p', 'lr', 'lt')
local learned_r = tonumber(h[5])
local learned_t = tonumber(h[6])
local rpm = tonumber(ARGV[1])
if rpm <= 0 then rpm = learned_r or 0 end
local tpm = tonumber(ARGV[2])
if tpm <= 0 then tpm = learned_t or 0 end
local r = tonumber(h[1]) or rpm
local tk = tonumber(h[2]) or tpm
local ts = tonumber(h[3]) or now
local paused = tonumber(h[4]) or 0
local minutes = math.max(0, now - ts) / 60000000
if rpm > 0 then r = math.min(rpm, r + rpm * minutes) end
if tpm > 0 then tk = math.min(tpm, tk + tpm * minutes) end
local function save()
  local ttl = 120000
  if paused > now then ttl = math.max(ttl, math.ceil((paused - now) / 1000) + 1000) end
  redis.call('HSET', KEYS[1], 'r', string.format('%.6f', r), 't', string.format('%.6f', tk),
    'ts', string.format('%.0f', now), 'p', string.format('%.0f', paused))
  if learned_r then redis.call('HSET', KEYS[1], 'lr', string.format('%.0f', learned_r)) end
  if learned_t then redis.call('HSET', KEYS[1], 'lt', string.format('%.0f', learned_t)) end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
"#;

/// ARGV[3]: the tokens needed; ARGV[4]: `1` to honour the key's health, KEYS[2] (see
/// `health.rs`: the key's shared cool-down and disable; pools of one key ignore it, as they
/// ignore their own). Returns `{granted, wait_ms, why}`: takes 1 request and the tokens and
/// returns `{1, 0, 0}`, or takes nothing and says how long to wait and why: 0 the bucket is
/// short, 1 a server-imposed pause, 2 the key is cooling down, 3 the key is disabled (the wait is
/// then what is left of the disable). A need above a learned token limit waits for a full bucket
/// (a configured limit is checked before the script runs).
const RESERVE: &str = r#"
local need = tonumber(ARGV[3])
if ARGV[4] == '1' then
  local health = redis.call('HMGET', KEYS[2], 'c', 'd')
  local off = tonumber(health[2]) or 0
  if off > now then return {0, math.max(1, math.ceil((off - now) / 1000)), 3} end
  local cool = tonumber(health[1]) or 0
  if cool > now then return {0, math.max(1, math.ceil((cool - now) / 1000)), 2} end
end
if paused > now then return {0, math.ceil((paused - now) / 1000), 1} end
if tpm > 0 then need = math.min(need, tpm) end
local wait = 0
if rpm > 0 and r < 1 - 1e-6 then wait = math.max(wait, (1 - r) * 60000 / rpm) end
if tpm > 0 and tk < need - 1e-6 then wait = math.max(wait, (need - tk) * 60000 / tpm) end
if wait > 0 then return {0, math.max(1, math.ceil(wait)), 0} end
if rpm > 0 or tpm > 0 then
  if rpm > 0 then r = r - 1 end
  if tpm > 0 then tk = tk - need end
  save()
end
return {1, 0, 0}
"#;

/// ARGV[3]: tokens to give back (negative: to take more); ARGV[4]: requests to give back.
/// Levels never rise above the limit; they may go below zero (an under-estimate), which makes
/// the next reservations wait for the refill.
const ADJUST: &str = r#"
if rpm > 0 then r = math.min(rpm, r + tonumber(ARGV[4])) end
if tpm > 0 then tk = math.min(tpm, tk + tonumber(ARGV[3])) end
if rpm > 0 or tpm > 0 then save() end
return 1
"#;

/// What a response taught (-1 for "not said"): ARGV[3] / ARGV[4] remaining requests / tokens,
/// ARGV[5] / ARGV[6] the limits the server states, ARGV[7] a pause in milliseconds. A remaining
/// count lowers the level, never raises it; a stated limit is adopted when none is configured
/// or learned; a pause is extended, never shortened.
const OBSERVE: &str = r#"
local remaining_r = tonumber(ARGV[3])
local remaining_t = tonumber(ARGV[4])
local stated_r = tonumber(ARGV[5])
local stated_t = tonumber(ARGV[6])
if remaining_r >= 0 then
  if rpm > 0 then r = math.min(r, remaining_r)
  elseif stated_r > 0 then rpm = stated_r; learned_r = stated_r; r = math.min(remaining_r, stated_r) end
end
if remaining_t >= 0 then
  if tpm > 0 then tk = math.min(tk, remaining_t)
  elseif stated_t > 0 then tpm = stated_t; learned_t = stated_t; tk = math.min(remaining_t, stated_t) end
end
local pause = tonumber(ARGV[7])
if pause >= 0 then paused = math.max(paused, now + pause * 1000) end
save()
return 1
"#;

static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{RESERVE}")));
static ADJUST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{ADJUST}")));
static OBSERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{OBSERVE}")));

/// The answer of [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// One request and the tokens were taken.
    Granted,
    /// Nothing was taken; try again after `wait`.
    Wait {
        wait: Duration,
        /// The wait is a pause the server imposed (a 429, or a remaining count of 0).
        paused: bool,
    },
    /// Nothing was taken: some process cooled the key down or disabled it (see `health.rs`);
    /// another key should be used.
    Unhealthy(KeyHealth),
}

/// A key's shared health, as a reservation found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHealth {
    /// Disabled (a 401/403) rather than cooling down (a 429).
    pub disabled: bool,
    /// How long the cool-down or disable still lasts.
    pub remaining: Duration,
}

/// The keys and numbers of one [`reserve`].
pub struct ReserveArgs<'a> {
    /// The bucket's key.
    pub bucket: &'a str,
    /// The key's health hash (in the bucket's hash-tag slot).
    pub health: &'a str,
    /// Whether the key's health decides (pools of more than one key).
    pub check_health: bool,
    pub limits: RateLimitConfig,
    pub tokens: u32,
}

/// A configured budget as the scripts take it (0: none).
fn limit_args(limits: RateLimitConfig) -> (u32, u32) {
    (
        limits.requests_per_minute.unwrap_or(0),
        limits.tokens_per_minute.unwrap_or(0),
    )
}

/// Takes 1 request and `tokens` from the bucket, or says how long to wait (or that the key is
/// unhealthy).
pub async fn reserve(mut conn: RedisConn, args: &ReserveArgs<'_>) -> RedisResult<Reservation> {
    let (rpm, tpm) = limit_args(args.limits);
    let answer: Vec<i64> = RESERVE_SCRIPT
        .key(args.bucket)
        .key(args.health)
        .arg(rpm)
        .arg(tpm)
        .arg(args.tokens)
        .arg(u8::from(args.check_health))
        .invoke_async(&mut conn)
        .await?;
    let millis = |wait: i64| Duration::from_millis(u64::try_from(wait).unwrap_or(1).max(1));
    Ok(match answer.as_slice() {
        [1, ..] => Reservation::Granted,
        [_, wait, why @ (2 | 3), ..] => Reservation::Unhealthy(KeyHealth {
            disabled: *why == 3,
            remaining: millis(*wait),
        }),
        [_, wait, why, ..] => Reservation::Wait {
            wait: millis(*wait),
            paused: *why == 1,
        },
        _ => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reserve answer",
            )))
        }
    })
}

/// Gives back `tokens` (negative: takes more) and `requests` to the bucket at `key`.
pub async fn adjust(
    mut conn: RedisConn,
    key: &str,
    limits: RateLimitConfig,
    tokens: i64,
    requests: i64,
) -> RedisResult<()> {
    let (rpm, tpm) = limit_args(limits);
    ADJUST_SCRIPT
        .key(key)
        .arg(rpm)
        .arg(tpm)
        .arg(tokens)
        .arg(requests)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(drop)
}

/// Applies what a response's headers (or a 429's pause) said to the bucket at `key`.
pub async fn observe(mut conn: RedisConn, key: &str, limits: RateLimitConfig, reading: RateHeaders) -> RedisResult<()> {
    let (rpm, tpm) = limit_args(limits);
    let given = |v: Option<f64>| v.unwrap_or(-1.0);
    let pause_ms = reading
        .pause
        .map_or(-1, |p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX));
    OBSERVE_SCRIPT
        .key(key)
        .arg(rpm)
        .arg(tpm)
        .arg(given(reading.remaining_requests))
        .arg(given(reading.remaining_tokens))
        .arg(given(reading.limit_requests))
        .arg(given(reading.limit_tokens))
        .arg(pause_ms)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(drop)
}
