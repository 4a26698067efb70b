//! Key health shared through Redis: a 429 cool-down or a 401/403 disable that one process
//! learns applies to every process with the same Redis and `keyPrefix`.
//!
//! Each API key (of each upstream) has one hash, `{prefix:rl:key-hash}:h`, in the hash-tag slot
//! of the key's rate buckets: fields `c` (cooling until) and `d` (disabled until), microseconds
//! of the Redis server's clock. Writing costs one script per 429 or 401/403 of a pool ([`mark`]);
//! reading costs nothing extra, since the reservation every attempt makes reads the hash in the
//! same script (see `scripts.rs`) and says when the key is unhealthy, so the caller takes another
//! key instead.
//!
//! A shared disable lasts [`SHARED_DISABLE`] after the last 401/403, then the key is tried again
//! by processes that only heard of it through Redis: a key fixed (or re-enabled) upstream comes
//! back without restarting every process. The process that received the 401/403 itself keeps the
//! key disabled for its life, as without `coordination`. The hash expires when the later of its
//! two times has passed.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{RedisResult, Script};

use super::connection::RedisConn;

/// How long every process skips a key after one of them got a 401 or 403 with it.
pub const SHARED_DISABLE: Duration = Duration::from_secs(10 * 60);

/// ARGV[1]: `c` (cool down) or `d` (disable); ARGV[2]: for how many milliseconds from now. A
/// time already later is kept (extended, never shortened).
const MARK: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local h = redis.call('HMGET', KEYS[1], 'c', 'd')
local cool = tonumber(h[1]) or 0
local off = tonumber(h[2]) or 0
local till = now + tonumber(ARGV[2]) * 1000
if ARGV[1] == 'd' then off = math.max(off, till) else cool = math.max(cool, till) end
redis.call('HSET', KEYS[1], 'c', string.format('%.0f', cool), 'd', string.format('%.0f', off))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((math.max(cool, off) - now) / 1000)))
return 1
"#;

static MARK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(MARK));

/// What one process learned about a key, to share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMark {
    /// A 429: rest the key for this long.
    CoolDown(Duration),
    /// A 401/403: skip the key for this long ([`SHARED_DISABLE`] in use).
    Disable(Duration),
}

/// Records `what` in the health hash at `key`.
pub async fn mark(mut conn: RedisConn, key: &str, what: HealthMark) -> RedisResult<()> {
    let (field, duration) = match what {
        HealthMark::CoolDown(d) => ("c", d),
        HealthMark::Disable(d) => ("d", d),
    };
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1);
    MARK_SCRIPT
        .key(key)
        .arg(field)
        .arg(millis)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::coordination::scripts::{reserve, KeyHealth, Reservation, ReserveArgs};
    use crate::core::coordination::test_redis::TestRedis;
    use crate::core::coordination::{CoordinationConfig, CoordinationOptions, Coordinator, SharedLimiter};
    use crate::core::limits::RateLimitConfig;

    fn process(url: &str) -> Arc<Coordinator> {
        let cfg = CoordinationConfig::build(CoordinationOptions {
            url: url.into(),
            key_prefix: Some("h".into()),
            operation_timeout_ms: Some(2_000),
            ..Default::default()
        })
        .unwrap();
        Arc::new(Coordinator::new(cfg))
    }

    const UNLIMITED: RateLimitConfig = RateLimitConfig {
        requests_per_minute: None,
        tokens_per_minute: None,
    };

    /// What a reservation of `model` with `api_key` answers in `process`.
    async fn reservation(process: &Arc<Coordinator>, api_key: &str, model: &str, check: bool) -> Reservation {
        let limiter = SharedLimiter::new(Arc::clone(process), None, api_key, UNLIMITED);
        let bucket = limiter.bucket(model);
        let (key, health) = (bucket.key().to_owned(), bucket.health_key().to_owned());
        process
            .run(|conn| async move {
                let args = ReserveArgs {
                    bucket: &key,
                    health: &health,
                    check_health: check,
                    limits: UNLIMITED,
                    tokens: 1,
                };
                reserve(conn, &args).await
            })
            .await
            .unwrap()
    }

    async fn marked(process: &Arc<Coordinator>, api_key: &str, what: HealthMark) {
        let limiter = SharedLimiter::new(Arc::clone(process), None, api_key, UNLIMITED);
        let health = limiter.bucket("any").health_key().to_owned();
        process
            .run(|conn| async move { mark(conn, &health, what).await })
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cool_down_of_one_process_is_what_the_others_reservations_see_for_every_model() {
        let redis = TestRedis::start();
        let (a, b) = (process(&redis.url()), process(&redis.url()));
        marked(&a, "sk-one", HealthMark::CoolDown(Duration::from_secs(20))).await;
        for model in ["m", "other-model"] {
            match reservation(&b, "sk-one", model, true).await {
                Reservation::Unhealthy(KeyHealth {
                    disabled: false,
                    remaining,
                }) => assert!(
                    remaining > Duration::from_secs(18) && remaining <= Duration::from_secs(20),
                    "{remaining:?}"
                ),
                other => panic!("{other:?}"),
            }
        }
        // Another key, and a pool of one key (which does not check), are not held.
        assert_eq!(reservation(&b, "sk-two", "m", true).await, Reservation::Granted);
        assert_eq!(reservation(&b, "sk-one", "m", false).await, Reservation::Granted);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disable_outranks_a_cool_down_and_ends_when_its_time_is_up() {
        let redis = TestRedis::start();
        let (a, b) = (process(&redis.url()), process(&redis.url()));
        marked(&a, "sk-one", HealthMark::CoolDown(Duration::from_millis(100))).await;
        marked(&a, "sk-one", HealthMark::Disable(Duration::from_millis(600))).await;
        // A shorter disable later never shortens what is recorded.
        marked(&b, "sk-one", HealthMark::Disable(Duration::from_millis(50))).await;
        match reservation(&b, "sk-one", "m", true).await {
            Reservation::Unhealthy(KeyHealth {
                disabled: true,
                remaining,
            }) => assert!(remaining > Duration::from_millis(300), "{remaining:?}"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(reservation(&b, "sk-one", "m", true).await, Reservation::Granted);
        // The hash is gone with its last time: nothing lingers in Redis.
        let health = SharedLimiter::new(Arc::clone(&b), None, "sk-one", UNLIMITED)
            .bucket("m")
            .health_key()
            .to_owned();
        let exists: i64 = b
            .run(|mut conn| async move { redis::cmd("EXISTS").arg(&health).query_async(&mut conn).await })
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_health_hash_expires_with_the_later_of_its_times() {
        let redis = TestRedis::start();
        let a = process(&redis.url());
        marked(&a, "sk-one", HealthMark::Disable(SHARED_DISABLE)).await;
        marked(&a, "sk-one", HealthMark::CoolDown(Duration::from_secs(5))).await;
        let health = SharedLimiter::new(Arc::clone(&a), None, "sk-one", UNLIMITED)
            .bucket("m")
            .health_key()
            .to_owned();
        let ttl_ms: i64 = a
            .run(|mut conn| async move { redis::cmd("PTTL").arg(&health).query_async(&mut conn).await })
            .await
            .unwrap();
        let shared = SHARED_DISABLE.as_millis() as i64;
        assert!(ttl_ms > shared - 5_000 && ttl_ms <= shared, "{ttl_ms}");
    }
}
