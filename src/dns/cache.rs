//! One shared answer cache in front of every lookup.
//!
//! Owns: positive and negative caching (RFC 2308 §5: NXDOMAIN and NODATA are
//! cached by their negative TTL, SERVFAIL and timeouts are not, §7.1 allows
//! at most 5 minutes and we choose none), TTL clamping to configured bounds,
//! the entry bound (least recently used entry evicted first), and
//! coalescing of concurrent identical queries into one upstream query.
//!
//! Time comes from [`tokio::time::Instant`], so tests run with paused time
//! and advance it instead of sleeping. The cache never logs; upstream
//! adapters do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Answer, DnsError, DnsSettings, Lookup, RecordType, Records, normalize_name};

/// Cache bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Maximum number of entries; 0 disables storing (coalescing remains).
    pub max_entries: usize,
    /// Floor for every cached TTL, seconds.
    pub min_ttl: u32,
    /// Ceiling for positive TTLs, seconds.
    pub max_ttl: u32,
    /// Ceiling for negative TTLs, seconds.
    pub negative_max_ttl: u32,
}

impl From<&DnsSettings> for CacheConfig {
    fn from(s: &DnsSettings) -> Self {
        Self {
            max_entries: s.cache_entries,
            min_ttl: s.cache_min_ttl_secs,
            max_ttl: s.cache_max_ttl_secs,
            negative_max_ttl: s.negative_max_ttl_secs,
        }
    }
}

impl CacheConfig {
    /// The lifetime of `answer` in the cache; `None` when it must not be
    /// cached (temporary errors, TTL 0 after clamping).
    fn lifetime(&self, answer: &Answer) -> Option<Duration> {
        let ceiling = match &answer.result {
            Ok(_) => self.max_ttl,
            Err(DnsError::NxDomain | DnsError::NoData) => self.negative_max_ttl,
            Err(DnsError::Temporary(_)) => return None,
        };
        let ttl = answer.ttl.max(self.min_ttl).min(ceiling);
        (ttl > 0 && self.max_entries > 0).then(|| Duration::from_secs(ttl.into()))
    }
}

type Key = (String, RecordType);
type Pending = watch::Receiver<Option<Answer>>;

struct Entry {
    result: Result<Records, DnsError>,
    expires: Instant,
    /// Last use.
    stamp: u64,
    /// The stamp this entry is filed under in `State::order`: its last use
    /// when it was filed. A hit only moves `stamp`; eviction refiles entries
    /// whose `listed` is stale (lazy LRU: no map update, no key copy per hit).
    listed: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Filing stamp to key, oldest first: the LRU order, refreshed lazily
    /// (see [`Entry::listed`]).
    order: BTreeMap<u64, Key>,
    inflight: HashMap<Key, Pending>,
    next_stamp: u64,
}

/// What a lookup must do after consulting the state.
enum Begin {
    Hit(Answer),
    Wait(Pending),
    Lead(watch::Sender<Option<Answer>>),
}

/// A caching, coalescing [`Lookup`] around an inner one.
pub struct Cache<L> {
    inner: L,
    config: CacheConfig,
    state: Mutex<State>,
}

impl<L: Lookup> Cache<L> {
    /// Wraps `inner`.
    pub fn new(inner: L, config: CacheConfig) -> Self {
        Self {
            inner,
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The wrapped lookup.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Number of stored entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn cached_lookup(&self, key: Key) -> Answer {
        loop {
            let begin = self.begin(&key);
            match begin {
                Begin::Hit(answer) => return answer,
                Begin::Wait(mut rx) => {
                    if let Ok(shared) = rx.wait_for(Option::is_some).await
                        && let Some(answer) = shared.clone()
                    {
                        return Answer {
                            cached: true,
                            ..answer
                        };
                    }
                    // The leading query was cancelled: try again, maybe leading.
                }
                Begin::Lead(tx) => return self.lead(&key, tx).await,
            }
        }
    }

    fn begin(&self, key: &Key) -> Begin {
        let mut state = self.state();
        let now = Instant::now();
        if let Some(answer) = state.hit(key, now) {
            return Begin::Hit(answer);
        }
        if let Some(rx) = state.inflight.get(key) {
            return Begin::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        state.inflight.insert(key.clone(), rx);
        Begin::Lead(tx)
    }

    async fn lead(&self, key: &Key, tx: watch::Sender<Option<Answer>>) -> Answer {
        let mut guard = InflightGuard {
            cache: self,
            key,
            armed: true,
        };
        let answer = self.inner.lookup(&key.0, key.1).await;
        {
            let mut state = self.state();
            state.inflight.remove(key);
            if let Some(life) = self.config.lifetime(&answer) {
                state.insert(
                    key.clone(),
                    answer.result.clone(),
                    Instant::now() + life,
                    self.config.max_entries,
                );
            }
        }
        guard.armed = false;
        tx.send_replace(Some(answer.clone()));
        answer
    }
}

/// Removes the in-flight marker when a leading query is cancelled, so the
/// waiters retry instead of waiting forever.
struct InflightGuard<'a, L> {
    cache: &'a Cache<L>,
    key: &'a Key,
    armed: bool,
}

impl<L> Drop for InflightGuard<'_, L> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self
                .cache
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.inflight.remove(self.key);
        }
    }
}

impl State {
    fn hit(&mut self, key: &Key, now: Instant) -> Option<Answer> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.remove(key);
            return None;
        }
        let remaining = u32::try_from((entry.expires - now).as_secs()).unwrap_or(u32::MAX);
        let answer = Answer {
            result: entry.result.clone(),
            ttl: remaining,
            cached: true,
        };
        self.touch(key);
        Some(answer)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp = self.next_stamp.wrapping_add(1);
        self.next_stamp
    }

    fn touch(&mut self, key: &Key) {
        let stamp = self.stamp();
        if let Some(entry) = self.entries.get_mut(key) {
            entry.stamp = stamp;
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.listed);
        }
    }

    /// Removes the least recently used entry; entries used since they were
    /// filed are refiled under their last use on the way.
    fn evict_oldest(&mut self) -> bool {
        while let Some((listed, key)) = self.order.pop_first() {
            match self.entries.get_mut(&key) {
                Some(entry) if entry.stamp != listed => {
                    entry.listed = entry.stamp;
                    self.order.insert(entry.stamp, key);
                }
                Some(_) => {
                    self.entries.remove(&key);
                    return true;
                }
                None => {}
            }
        }
        false
    }

    fn insert(
        &mut self,
        key: Key,
        result: Result<Records, DnsError>,
        expires: Instant,
        max: usize,
    ) {
        self.remove(&key);
        while self.entries.len() >= max {
            if !self.evict_oldest() {
                break;
            }
        }
        let stamp = self.stamp();
        self.order.insert(stamp, key.clone());
        self.entries.insert(
            key,
            Entry {
                result,
                expires,
                stamp,
                listed: stamp,
            },
        );
    }
}

impl<L: Lookup> Lookup for Cache<L> {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        self.cached_lookup((normalize_name(name), rtype)).await
    }
}

super::resolver_via_lookup!(impl<L: Lookup> for Cache<L>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Resolver;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// A fake upstream: answers from a function, counts queries, and can be
    /// held until the test releases permits.
    struct Fake {
        calls: AtomicUsize,
        gate: Option<Arc<Semaphore>>,
        answer: fn(&str) -> Answer,
    }

    impl Lookup for Fake {
        async fn lookup(&self, name: &str, _rtype: RecordType) -> Answer {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            (self.answer)(name)
        }
    }

    fn fake(answer: fn(&str) -> Answer) -> Fake {
        Fake {
            calls: AtomicUsize::new(0),
            gate: None,
            answer,
        }
    }

    fn a_record(_: &str) -> Answer {
        Answer::new(Ok(Records::A(vec![Ipv4Addr::LOCALHOST])), 60)
    }

    const CONFIG: CacheConfig = CacheConfig {
        max_entries: 100,
        min_ttl: 5,
        max_ttl: 3600,
        negative_max_ttl: 600,
    };

    fn calls(c: &Cache<Fake>) -> usize {
        c.inner.calls.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn positive_answers_are_cached_until_their_ttl_expires() {
        let cache = Cache::new(fake(a_record), CONFIG);
        assert!(!cache.lookup("a.example", RecordType::A).await.cached);
        let hit = cache.lookup("A.Example.", RecordType::A).await;
        assert!(hit.cached);
        assert_eq!(calls(&cache), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.lookup("a.example", RecordType::A).await.ttl, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!cache.lookup("a.example", RecordType::A).await.cached);
        assert_eq!(calls(&cache), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn names_that_are_no_names_stay_so_through_the_cache() {
        // RFC 1035 §3.1: only the root label is empty. `x.example..` once
        // became the key `x.example.`, which the upstream took for
        // `x.example`; an escape-spelled name shares its octets' entry.
        let zone = crate::dns::zone::ZoneResolver::parse(
            "x.example. A 192.0.2.1\na\\ b.example. A 192.0.2.2\n",
            None,
        )
        .unwrap();
        let cache = Cache::new(zone, CONFIG);
        for name in ["x.example..", "x.example\\", "x..example"] {
            assert_eq!(cache.a(name).await, Err(DnsError::NxDomain), "{name}");
        }
        assert_eq!(
            cache.a("x.example.").await,
            Ok(vec![Ipv4Addr::new(192, 0, 2, 1)])
        );
        assert!(!cache.lookup("A B.example", RecordType::A).await.cached);
        assert!(cache.lookup("a\\032b.example", RecordType::A).await.cached);
    }

    #[tokio::test(start_paused = true)]
    async fn types_are_cached_separately() {
        let cache = Cache::new(fake(a_record), CONFIG);
        cache.lookup("a.example", RecordType::A).await;
        cache.lookup("a.example", RecordType::Txt).await;
        assert_eq!(calls(&cache), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn negative_answers_use_clamped_negative_ttl() {
        let cache = Cache::new(
            fake(|_| Answer::new(Err(DnsError::NxDomain), 86_400)),
            CONFIG,
        );
        assert_eq!(cache.a("x.example").await, Err(DnsError::NxDomain));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(cache.a("x.example").await, Err(DnsError::NxDomain));
        assert_eq!(calls(&cache), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.a("x.example").await.unwrap_err();
        assert_eq!(calls(&cache), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_floor_applies_to_zero_ttl_nodata() {
        let cache = Cache::new(fake(|_| Answer::new(Err(DnsError::NoData), 0)), CONFIG);
        cache.a("x.example").await.unwrap_err();
        tokio::time::advance(Duration::from_secs(4)).await;
        cache.a("x.example").await.unwrap_err();
        assert_eq!(calls(&cache), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_errors_are_not_cached() {
        let cache = Cache::new(fake(|_| Answer::temporary("SERVFAIL")), CONFIG);
        for _ in 0..3 {
            assert!(matches!(
                cache.a("x.example").await,
                Err(DnsError::Temporary(_))
            ));
        }
        assert_eq!(calls(&cache), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_queries_share_one_upstream_query() {
        let gate = Arc::new(Semaphore::new(0));
        let cache = Arc::new(Cache::new(
            Fake {
                gate: Some(gate.clone()),
                ..fake(a_record)
            },
            CacheConfig {
                max_entries: 0,
                ..CONFIG
            },
        ));
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.lookup("a.example", RecordType::A).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(1);
        let mut shared = 0;
        for t in tasks {
            let answer = t.await.unwrap();
            assert!(answer.result.is_ok());
            shared += usize::from(answer.cached);
        }
        assert_eq!((calls(&cache), shared), (1, 4));
        assert!(cache.is_empty(), "max_entries 0 stores nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_leader_lets_a_waiter_take_over() {
        let gate = Arc::new(Semaphore::new(0));
        let cache = Arc::new(Cache::new(
            Fake {
                gate: Some(gate.clone()),
                ..fake(a_record)
            },
            CONFIG,
        ));
        let c = cache.clone();
        let leader = tokio::spawn(async move { c.lookup("a.example", RecordType::A).await });
        tokio::task::yield_now().await;
        let c = cache.clone();
        let waiter = tokio::spawn(async move { c.lookup("a.example", RecordType::A).await });
        tokio::task::yield_now().await;
        leader.abort();
        gate.add_permits(1);
        assert!(waiter.await.unwrap().result.is_ok());
        assert_eq!(calls(&cache), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn lazy_lru_evicts_exactly_as_a_plain_lru_list() {
        let cache = Cache::new(
            fake(a_record),
            CacheConfig {
                max_entries: 4,
                ..CONFIG
            },
        );
        // Reference: most recent last.
        let mut lru: Vec<String> = Vec::new();
        let mut seed = 7u32;
        for _ in 0..3000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let name = format!("n{}", (seed >> 16) % 9);
            let known = lru.iter().position(|n| *n == name);
            let got = cache.lookup(&name, RecordType::A).await.cached;
            assert_eq!(got, known.is_some(), "{name} with {lru:?}");
            match known {
                Some(i) => {
                    let n = lru.remove(i);
                    lru.push(n);
                }
                None => {
                    if lru.len() == 4 {
                        lru.remove(0);
                    }
                    lru.push(name);
                }
            }
            assert_eq!(cache.len(), lru.len());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_bounded_and_least_recently_used_goes_first() {
        let cache = Cache::new(
            fake(a_record),
            CacheConfig {
                max_entries: 3,
                ..CONFIG
            },
        );
        for name in ["a", "b", "c"] {
            cache.lookup(name, RecordType::A).await;
        }
        cache.lookup("a", RecordType::A).await; // a is now the most recent
        for i in 0..50 {
            cache.lookup(&format!("flood{i}"), RecordType::A).await;
            assert!(cache.len() <= 3);
        }
        let cache2 = Cache::new(
            fake(a_record),
            CacheConfig {
                max_entries: 3,
                ..CONFIG
            },
        );
        for name in ["a", "b", "c"] {
            cache2.lookup(name, RecordType::A).await;
        }
        cache2.lookup("a", RecordType::A).await;
        cache2.lookup("d", RecordType::A).await; // evicts b, the least recent
        assert!(cache2.lookup("a", RecordType::A).await.cached);
        assert!(!cache2.lookup("b", RecordType::A).await.cached);
    }
}
