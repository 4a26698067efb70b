//! A pool of API keys with failover: spread load, cool a key down on 429, disable it on 401/403.
//!
//! Each request leases the healthy key with the fewest requests in flight (ties go to the key
//! used least recently, so load spreads evenly). A 429 cools that key down for the server's
//! `retry-after` and the retry leases another key at once, without waiting (LiteLLM's router
//! does the same per deployment). A 401 or 403 disables the key for the life of the client. When
//! every key is cooling, callers wait for the earliest to come back; when every key is disabled,
//! the call fails.
//!
//! With `coordination`, what another process learned about a key reaches the pool too (see
//! `coordination/health.rs`): a key it cooled down is skipped here until the same time, and a key
//! it disabled is skipped for as long as the shared disable lasts (not for the client's life,
//! since this process has no 401/403 of its own to go on). Such states are marked `from_peer`.
//!
//! Keys are never logged or reported in clear: they are identified by index and a fingerprint
//! that shows only the last four characters (`sk-…abcd`).

#![warn(clippy::arithmetic_side_effects)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::config::ApiKey;
use super::redact::fingerprint;
use super::time::{cap_server_wait, instant_after};

/// Longest a 429 without a usable `retry-after` cools a key down.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct KeyState {
    key: ApiKey,
    in_flight: u32,
    cooling_until: Option<Instant>,
    /// The cool-down running was learned from another process.
    cooling_from_peer: bool,
    disabled: bool,
    /// Disabled until then because another process got a 401/403 with the key.
    peer_disabled_until: Option<Instant>,
    last_used: u64,
    requests: u64,
    cool_downs: u64,
}

impl KeyState {
    /// Disabled by this process (for good) or, until a time still to come, by another.
    fn disabled_at(&self, now: Instant) -> bool {
        self.disabled || self.peer_disabled_until.is_some_and(|u| u > now)
    }
}

/// How long a 429 with `retry_after` cools a key down: the server's `retry-after` (or
/// [`DEFAULT_COOL_DOWN`]), at most [`super::time::SERVER_WAIT_CAP`].
pub fn cool_down_wait(retry_after: Option<Duration>) -> Duration {
    cap_server_wait(retry_after.unwrap_or(DEFAULT_COOL_DOWN))
}

/// Public view of one key (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub index: usize,
    /// `sk-…abcd`: enough to tell keys apart in a dashboard, useless to an attacker.
    pub fingerprint: String,
    pub in_flight: u32,
    pub cooling: bool,
    pub disabled: bool,
    pub requests: u64,
    pub cool_downs: u64,
    /// `cooling` or `disabled` holds because another process sharing the same Redis said so
    /// (`coordination`), not because of a 429/401/403 this process received.
    pub from_peer: bool,
}

/// Why no key could be leased right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// All usable keys are cooling down; the first is back at this instant.
    CoolingUntil(Instant),
    /// Every key has been disabled (401/403).
    AllDisabled,
}

/// The pool. Cheap to share: all methods take `&self`.
#[derive(Debug)]
pub struct KeyPool {
    keys: Mutex<Vec<KeyState>>,
    clock: AtomicU64,
}

/// One request's use of a key. Releases the in-flight count on drop.
#[derive(Debug)]
pub struct KeyLease {
    pool: Arc<KeyPool>,
    pub index: usize,
    pub key: ApiKey,
}

impl Drop for KeyLease {
    fn drop(&mut self) {
        let mut keys = self.pool.lock();
        if let Some(k) = keys.get_mut(self.index) {
            k.in_flight = k.in_flight.saturating_sub(1);
        }
    }
}

impl KeyPool {
    pub fn new(keys: Vec<ApiKey>) -> Arc<Self> {
        let keys = keys
            .into_iter()
            .map(|key| KeyState {
                key,
                in_flight: 0,
                cooling_until: None,
                cooling_from_peer: false,
                disabled: false,
                peer_disabled_until: None,
                last_used: 0,
                requests: 0,
                cool_downs: 0,
            })
            .collect();
        Arc::new(KeyPool {
            keys: Mutex::new(keys),
            clock: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<KeyState>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Lease the healthy key with the fewest requests in flight.
    pub fn acquire(self: &Arc<Self>) -> Result<KeyLease, NoKey> {
        let now = Instant::now();
        let tick = self.clock.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut keys = self.lock();
        // Expired cool-downs end here; the earliest still running is what a caller waits for.
        let mut earliest: Option<Instant> = None;
        for k in keys.iter_mut() {
            if k.peer_disabled_until.is_some_and(|u| u <= now) {
                k.peer_disabled_until = None;
            }
            if k.disabled_at(now) {
                continue;
            }
            match k.cooling_until {
                Some(until) if until > now => earliest = Some(earliest.map_or(until, |e| e.min(until))),
                Some(_) => k.cooling_until = None,
                None => {}
            }
        }
        let pick = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.disabled_at(now) && k.cooling_until.is_none())
            .min_by_key(|(_, k)| (k.in_flight, k.last_used))
            .map(|(i, _)| i);
        match pick {
            Some(i) => {
                let Some(k) = keys.get_mut(i) else {
                    return Err(NoKey::AllDisabled);
                };
                k.in_flight = k.in_flight.saturating_add(1);
                k.last_used = tick;
                k.requests = k.requests.saturating_add(1);
                Ok(KeyLease {
                    pool: self.clone(),
                    index: i,
                    key: k.key.clone(),
                })
            }
            None => match earliest {
                Some(until) => Err(NoKey::CoolingUntil(until)),
                None => Err(NoKey::AllDisabled),
            },
        }
    }

    /// A 429 on this key: rest it for `retry_after` (or [`DEFAULT_COOL_DOWN`]), at most
    /// [`super::time::SERVER_WAIT_CAP`]: a server asking for an hour must not take the key out of
    /// the pool for that long.
    pub fn cool_down(&self, index: usize, retry_after: Option<Duration>) {
        let until = instant_after(Instant::now(), cool_down_wait(retry_after));
        let mut keys = self.lock();
        if let Some(k) = keys.get_mut(index) {
            k.cooling_until = Some(k.cooling_until.map_or(until, |u| u.max(until)));
            k.cooling_from_peer = false;
            k.cool_downs = k.cool_downs.saturating_add(1);
        }
    }

    /// Another process cooled this key down for `remaining` more (capped like
    /// [`cool_down`](Self::cool_down)): skip it until then. Returns true when that extends what
    /// this pool knew.
    pub fn cool_down_from_peer(&self, index: usize, remaining: Duration) -> bool {
        let until = instant_after(Instant::now(), cap_server_wait(remaining));
        let mut keys = self.lock();
        match keys.get_mut(index) {
            Some(k) if k.cooling_until.is_none_or(|u| u < until) => {
                k.cooling_until = Some(until);
                k.cooling_from_peer = true;
                true
            }
            _ => false,
        }
    }

    /// Another process got a 401/403 with this key: skip it for `remaining` more (the shared
    /// disable's time left). Returns true when that extends what this pool knew.
    pub fn disable_from_peer(&self, index: usize, remaining: Duration) -> bool {
        let now = Instant::now();
        let until = instant_after(now, remaining);
        let mut keys = self.lock();
        match keys.get_mut(index) {
            Some(k) if !k.disabled && k.peer_disabled_until.is_none_or(|u| u < until) => {
                k.peer_disabled_until = Some(until);
                true
            }
            _ => false,
        }
    }

    /// `lease` was never sent (its key turned out unhealthy): it is not counted in the key's
    /// `requests`.
    pub fn unsent(&self, lease: KeyLease) {
        let index = lease.index;
        drop(lease);
        if let Some(k) = self.lock().get_mut(index) {
            k.requests = k.requests.saturating_sub(1);
        }
    }

    /// A 401/403 on this key: never use it again. Returns true the first time.
    pub fn disable(&self, index: usize) -> bool {
        let mut keys = self.lock();
        match keys.get_mut(index) {
            Some(k) if !k.disabled => {
                k.disabled = true;
                true
            }
            _ => false,
        }
    }

    /// Whether some key could be leased right now (enabled and not cooling). Unlike `acquire`,
    /// this changes nothing: no lease, no request counted, no round-robin step.
    pub fn has_usable(&self) -> bool {
        let now = Instant::now();
        self.lock()
            .iter()
            .any(|k| !k.disabled_at(now) && k.cooling_until.is_none_or(|u| u <= now))
    }

    /// Keys cooling down right now.
    pub fn cooling(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|k| !k.disabled_at(now) && k.cooling_until.is_some_and(|u| u > now))
            .count()
    }

    pub fn status(&self) -> Vec<KeyStatus> {
        let now = Instant::now();
        self.lock()
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let disabled = k.disabled_at(now);
                let cooling = k.cooling_until.is_some_and(|u| u > now);
                KeyStatus {
                    index,
                    fingerprint: fingerprint(k.key.expose()),
                    in_flight: k.in_flight,
                    cooling,
                    disabled,
                    requests: k.requests,
                    cool_downs: k.cool_downs,
                    from_peer: if disabled {
                        !k.disabled
                    } else {
                        cooling && k.cooling_from_peer
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Arc<KeyPool> {
        KeyPool::new(
            (0..n)
                .map(|i| ApiKey::new(format!("sk-test-key-number-{i:04}")))
                .collect(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn load_spreads_to_the_least_busy_key() {
        let p = pool(3);
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        let c = p.acquire().unwrap();
        let mut used = [a.index, b.index, c.index];
        used.sort();
        assert_eq!(used, [0, 1, 2]);
        let freed = b.index;
        drop(b);
        // The only key with nothing in flight gets the next request.
        let again = p.acquire().unwrap();
        assert_eq!(again.index, freed);
        assert_eq!(p.status().iter().map(|s| s.in_flight).sum::<u32>(), 3);
        drop((a, c, again));
        // Idle keys are used round-robin (least recently used first).
        let order: Vec<usize> = (0..6).map(|_| p.acquire().unwrap().index).collect();
        assert_eq!(&order[..3], &order[3..]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cooling_key_is_skipped_until_its_retry_after() {
        let p = pool(2);
        let first = p.acquire().unwrap();
        p.cool_down(first.index, Some(Duration::from_secs(5)));
        drop(first);
        let cooled = p.status().iter().find(|s| s.cooling).unwrap().index;
        for _ in 0..3 {
            assert_ne!(p.acquire().unwrap().index, cooled);
        }
        assert_eq!(p.cooling(), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(p.cooling(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn all_cooling_reports_the_earliest_return() {
        let p = pool(2);
        p.cool_down(0, Some(Duration::from_secs(5)));
        p.cool_down(1, Some(Duration::from_secs(2)));
        let now = Instant::now();
        match p.acquire() {
            Err(NoKey::CoolingUntil(t)) => assert_eq!(t - now, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_retry_after_cools_a_key_for_a_minute_at_most() {
        let p = pool(2);
        let now = Instant::now();
        // `retry-after: 1e19` parses to about 317 billion years; adding it to an instant panicked.
        p.cool_down(0, Some(Duration::from_secs(10_000_000_000_000_000_000)));
        p.cool_down(1, Some(Duration::MAX));
        match p.acquire() {
            Err(NoKey::CoolingUntil(t)) => assert_eq!(t - now, Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(p.has_usable());
    }

    #[tokio::test(start_paused = true)]
    async fn asking_for_a_usable_key_leases_nothing() {
        let p = pool(2);
        assert!(p.has_usable());
        assert_eq!(p.status().iter().map(|s| s.requests).sum::<u64>(), 0);
        p.disable(0);
        p.cool_down(1, Some(Duration::from_secs(5)));
        assert!(!p.has_usable());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(p.has_usable());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peers_cool_down_is_skipped_until_it_ends_and_shows_as_from_peer() {
        let p = pool(2);
        assert!(p.cool_down_from_peer(0, Duration::from_secs(5)));
        // Learning the same again (or less) changes nothing.
        assert!(!p.cool_down_from_peer(0, Duration::from_secs(3)));
        for _ in 0..3 {
            assert_eq!(p.acquire().unwrap().index, 1);
        }
        let status = p.status();
        assert!(status[0].cooling && status[0].from_peer && !status[0].disabled);
        assert!(!status[1].from_peer);
        // This process's own 429 on the key makes it its own.
        p.cool_down(0, Some(Duration::from_secs(1)));
        assert!(p.status()[0].cooling && !p.status()[0].from_peer);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(p.cooling(), 0);
        assert!(!p.status()[0].from_peer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peers_disable_lasts_its_time_and_then_the_key_is_tried_again() {
        let p = pool(2);
        assert!(p.disable_from_peer(0, Duration::from_secs(600)));
        assert_eq!(p.acquire().unwrap().index, 1);
        let status = p.status();
        assert!(status[0].disabled && status[0].from_peer);
        // With the other key disabled too, nothing is left to wait for.
        assert!(p.disable_from_peer(1, Duration::from_secs(600)));
        assert_eq!(p.acquire().unwrap_err(), NoKey::AllDisabled);
        assert!(!p.has_usable());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(p.has_usable());
        assert!(!p.status()[0].disabled);
        // A key this process disabled itself stays disabled whatever peers say.
        assert!(p.disable(0));
        assert!(!p.disable_from_peer(0, Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(p.status()[0].disabled && !p.status()[0].from_peer);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_keys_are_never_used_again() {
        let p = pool(2);
        assert!(p.disable(0));
        assert!(!p.disable(0));
        for _ in 0..5 {
            assert_eq!(p.acquire().unwrap().index, 1);
        }
        p.disable(1);
        assert_eq!(p.acquire().unwrap_err(), NoKey::AllDisabled);
    }
}
