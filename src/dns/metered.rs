//! Per-message DNS metering.
//!
//! Owns [`Metered`], a cheap wrapper a pipeline creates per message around
//! the shared resolver, so the per-message log line can report how many
//! queries the message cost, how many the cache answered, how many timed
//! out, and how long it waited. It counts; it does not log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{Answer, Lookup, RecordType};

/// What one [`Metered`] has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Lookups made (cached or not).
    pub queries: u64,
    /// Lookups answered by the cache or shared with an identical query.
    pub cache_hits: u64,
    /// Lookups that timed out ([`super::Answer::is_timeout`]).
    pub timeouts: u64,
    /// Sum of the time each lookup took (concurrent lookups add up).
    pub waited: Duration,
}

/// Counts the lookups made through it; wraps `&SystemResolver`,
/// `Arc<SystemResolver>` or any other [`Lookup`].
pub struct Metered<L> {
    inner: L,
    queries: AtomicU64,
    cache_hits: AtomicU64,
    timeouts: AtomicU64,
    waited_micros: AtomicU64,
}

impl<L: Lookup> Metered<L> {
    /// Starts counting from zero.
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            queries: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> DnsStats {
        DnsStats {
            queries: self.queries.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.waited_micros.load(Ordering::Relaxed)),
        }
    }

    /// The wrapped resolver.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    async fn metered_lookup(&self, name: &str, rtype: RecordType) -> Answer {
        let start = Instant::now();
        let answer = self.inner.lookup(name, rtype).await;
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.cache_hits
            .fetch_add(u64::from(answer.cached), Ordering::Relaxed);
        self.timeouts
            .fetch_add(u64::from(answer.is_timeout()), Ordering::Relaxed);
        self.waited_micros.fetch_add(micros, Ordering::Relaxed);
        answer
    }
}

impl<L: Lookup> Lookup for Metered<L> {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        self.metered_lookup(name, rtype).await
    }
}

super::resolver_via_lookup!(impl<L: Lookup> for Metered<L>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Resolver;
    use crate::dns::cache::{Cache, CacheConfig};
    use crate::dns::zone::ZoneResolver;

    #[tokio::test(start_paused = true)]
    async fn counts_queries_and_cache_hits() {
        let zone = ZoneResolver::parse("a.example. 300 TXT \"x\"\n", None).unwrap();
        let config = CacheConfig {
            max_entries: 10,
            min_ttl: 0,
            max_ttl: 3600,
            negative_max_ttl: 60,
        };
        let shared = Cache::new(zone, config);
        let per_message = Metered::new(&shared);
        per_message.txt("a.example").await.unwrap();
        per_message.txt("a.example").await.unwrap();
        per_message.txt("b.example").await.unwrap_err();
        let stats = per_message.stats();
        assert_eq!((stats.queries, stats.cache_hits), (3, 1));
    }

    struct Slow;

    impl Lookup for Slow {
        async fn lookup(&self, name: &str, _: RecordType) -> Answer {
            if name.starts_with("slow") {
                Answer::timed_out()
            } else {
                Answer::temporary("response code SERVFAIL")
            }
        }
    }

    #[tokio::test]
    async fn counts_timeouts_apart_from_other_temporary_failures() {
        let m = Metered::new(Slow);
        m.txt("slow.example").await.unwrap_err();
        m.txt("broken.example").await.unwrap_err();
        let stats = m.stats();
        assert_eq!((stats.queries, stats.timeouts), (2, 1));
    }
}
