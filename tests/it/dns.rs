//! DNS integration tests: `dns::build` against the loopback server of
//! [`crate::dns_server`], which serves `tests/fixtures/dns/example.zone`.
//! Nothing leaves 127.0.0.1; every test passes explicit servers.

// clippy's allow-*-in-tests does not cover helpers outside #[test] fns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use authgate::dns::zone::ZoneResolver;
use authgate::dns::{DnsError, DnsSettings, Metered, Mx, Resolver, SystemResolver, build};

use crate::dns_server::{DnsServer, Mode, Transport, fixture};

fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dns")
        .join(file)
}

async fn live() -> (DnsServer, SystemResolver) {
    let server = DnsServer::start_fixture("example.zone").await;
    let resolver = build(&server.settings()).expect("resolver builds");
    assert_eq!(resolver.mode(), "live");
    (server, resolver)
}

fn is_temporary<T: std::fmt::Debug>(result: &Result<T, DnsError>) -> bool {
    matches!(result, Err(DnsError::Temporary(_)))
}

#[tokio::test]
async fn nxdomain_nodata_and_answers_are_told_apart() {
    let (_server, r) = live().await;
    assert_eq!(r.txt("nope.example.com").await, Err(DnsError::NxDomain));
    assert_eq!(r.txt("mail.example.com").await, Err(DnsError::NoData));
    assert_eq!(
        r.txt("deep.example.com").await,
        Err(DnsError::NoData),
        "empty non-terminal"
    );
    assert_eq!(
        r.a("mail.example.com").await,
        Ok(vec![Ipv4Addr::new(192, 0, 2, 25)])
    );
}

#[tokio::test]
async fn servfail_and_refused_are_temporary_and_not_cached() {
    let (server, r) = live().await;
    for name in ["broken.example.com", "refused.example.com"] {
        assert!(is_temporary(&r.txt(name).await), "{name}");
        assert_eq!(
            server.queries_for(name),
            1,
            "{name}: attempts = 1 means one try"
        );
        assert!(is_temporary(&r.txt(name).await), "{name}");
        assert_eq!(
            server.queries_for(name),
            2,
            "{name}: temporary errors must not be cached"
        );
    }
}

#[tokio::test]
async fn failure_modes_switch_at_run_time() {
    let (server, r) = live().await;
    server.set_mode("_dmarc.example.com", Mode::ServFail);
    assert!(is_temporary(&r.txt("_dmarc.example.com").await));
    server.set_mode("_dmarc.example.com", Mode::Refused);
    assert!(is_temporary(&r.txt("_dmarc.example.com").await));
    server.set_mode("_dmarc.example.com", Mode::Normal);
    assert!(r.txt("_dmarc.example.com").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn no_answer_times_out_as_temporary() {
    let server = DnsServer::start_fixture("example.zone").await;
    let settings = DnsSettings {
        attempts: 2,
        ..server.settings()
    };
    let r = build(&settings).unwrap();
    let result = r.txt("blackhole.example.com").await;
    assert!(is_temporary(&result), "{result:?}");
    assert!(
        server.queries_for("blackhole.example.com") >= 2,
        "both attempts sent"
    );
    server.set_mode("ns1.example.com", Mode::Drop);
    assert!(is_temporary(&r.a("ns1.example.com").await));
}

#[tokio::test]
async fn truncated_udp_answer_is_retried_over_tcp() {
    let (server, r) = live().await;
    let txt = r.txt("big._domainkey.example.com").await.unwrap();
    assert_eq!(txt.len(), 1);
    assert!(
        txt[0].len() > 1232,
        "record must exceed the EDNS payload size"
    );
    assert!(txt[0].starts_with(b"v=DKIM1; k=rsa; n=padding"));
    let offline = ZoneResolver::parse(&fixture("example.zone"), None).unwrap();
    assert_eq!(
        offline.txt("big._domainkey.example.com").await.unwrap(),
        txt
    );
    assert_eq!(server.queries_over(Transport::Udp), 1);
    assert_eq!(server.queries_over(Transport::Tcp), 1);
}

#[tokio::test]
async fn txt_strings_concatenate_and_records_stay_separate() {
    let (_server, r) = live().await;
    let mut multi = r.txt("multi.example.com").await.unwrap();
    multi.sort();
    let want: Vec<Vec<u8>> = vec![
        b"first record".to_vec(),
        b"second record".to_vec(),
        br#"third "quoted" \ A"#.to_vec(),
    ];
    assert_eq!(multi, want);
    assert_eq!(
        r.txt("example.com").await.unwrap(),
        [b"v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all".to_vec()]
    );
}

#[tokio::test]
async fn cname_chains_are_followed() {
    let (_server, r) = live().await;
    assert_eq!(
        r.txt("alias.example.com").await.unwrap(),
        [b"v=DMARC1; p=reject; rua=mailto:dmarc@example.com".to_vec()]
    );
    assert_eq!(r.txt("dangling.example.com").await, Err(DnsError::NxDomain));
    assert!(is_temporary(&r.txt("loop1.example.com").await));
}

#[tokio::test]
async fn mx_aaaa_and_ptr() {
    let (_server, r) = live().await;
    let mut mx = r.mx("example.com").await.unwrap();
    mx.sort_by_key(|m| m.preference);
    let want = [
        Mx {
            preference: 10,
            exchange: "mail.example.com".into(),
        },
        Mx {
            preference: 20,
            exchange: "backup.example.net".into(),
        },
    ];
    assert_eq!(mx, want);
    assert_eq!(
        r.aaaa("example.com").await,
        Ok(vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()])
    );
    let ip: IpAddr = "192.0.2.25".parse().unwrap();
    assert_eq!(r.ptr(ip).await, Ok(vec!["mail.example.com".to_owned()]));
    assert_eq!(
        r.ptr("192.0.2.99".parse().unwrap()).await,
        Err(DnsError::NxDomain)
    );
}

/// The same fixture answers the same through the network and offline.
#[tokio::test]
async fn live_and_offline_agree_on_the_fixture() {
    let (_server, live) = live().await;
    let offline = build(&DnsSettings {
        zone_files: vec![fixture_path("example.zone")],
        ..DnsSettings::default()
    })
    .unwrap();
    assert_eq!(offline.mode(), "offline");
    for name in [
        "example.com",
        "_dmarc.example.com",
        "alias.example.com",
        "nope.example.com",
        "mail.example.com",
        "a.b.deep.example.com",
        "b.deep.example.com",
        "dangling.example.com",
    ] {
        assert_eq!(live.txt(name).await, offline.txt(name).await, "TXT {name}");
        assert_eq!(live.a(name).await, offline.a(name).await, "A {name}");
    }
}

#[tokio::test]
async fn overlay_answers_its_names_and_forwards_the_rest() {
    let server = DnsServer::start_fixture("example.zone").await;
    let r = build(&DnsSettings {
        zone_files: vec![fixture_path("overlay.zone")],
        ..server.settings()
    })
    .unwrap();
    assert_eq!(r.mode(), "overlay");
    assert_eq!(
        r.txt("_dmarc.example.com").await.unwrap(),
        [b"v=DMARC1; p=none; testing".to_vec()]
    );
    assert_eq!(
        server.queries_for("_dmarc.example.com"),
        0,
        "shadowed name never asked"
    );
    assert_eq!(
        r.a("mail.example.com").await,
        Ok(vec![Ipv4Addr::new(192, 0, 2, 25)])
    );
    assert_eq!(r.txt("nope.example.com").await, Err(DnsError::NxDomain));
    let key = r.txt("sel1._domainkey.example.com").await.unwrap();
    assert!(
        key[0].starts_with(b"v=DKIM1"),
        "zone CNAME followed upstream"
    );
    assert_eq!(
        server.queries_for("big._domainkey.example.com"),
        2,
        "UDP then TCP"
    );
}

#[tokio::test]
async fn repeated_lookups_hit_the_cache() {
    let (server, r) = live().await;
    let per_message = Metered::new(&r);
    for _ in 0..3 {
        per_message.txt("_dmarc.example.com").await.unwrap();
        assert_eq!(
            per_message.txt("nope.example.com").await,
            Err(DnsError::NxDomain)
        );
    }
    assert_eq!(server.queries_for("_dmarc.example.com"), 1);
    assert_eq!(
        server.queries_for("nope.example.com"),
        1,
        "NXDOMAIN is cached"
    );
    let stats = per_message.stats();
    assert_eq!((stats.queries, stats.cache_hits), (6, 4));
}

#[tokio::test]
async fn concurrent_identical_lookups_send_one_query() {
    let (server, r) = live().await;
    let (a, b, c) = tokio::join!(
        r.txt("_dmarc.example.com"),
        r.txt("_dmarc.example.com"),
        r.txt("_DMARC.Example.COM.")
    );
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(server.queries_for("_dmarc.example.com"), 1);
}

#[tokio::test(start_paused = true)]
async fn cached_answers_expire_with_their_ttl() {
    let (server, r) = live().await;
    r.a("mail.example.com").await.unwrap(); // TTL 30
    tokio::time::advance(Duration::from_secs(29)).await;
    r.a("mail.example.com").await.unwrap();
    assert_eq!(server.queries_for("mail.example.com"), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    r.a("mail.example.com").await.unwrap();
    assert_eq!(server.queries_for("mail.example.com"), 2);
}

#[tokio::test(start_paused = true)]
async fn negative_answers_expire_with_the_soa_minimum() {
    let (server, r) = live().await;
    assert_eq!(r.txt("nope.example.com").await, Err(DnsError::NxDomain));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(r.txt("nope.example.com").await, Err(DnsError::NxDomain));
    assert_eq!(server.queries_for("nope.example.com"), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(r.txt("nope.example.com").await, Err(DnsError::NxDomain));
    assert_eq!(server.queries_for("nope.example.com"), 2);
}

/// A `tracing` writer that appends to one process-wide buffer.
#[derive(Clone)]
struct Captured;

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global subscriber once. A scoped (`set_default`) one is
/// unreliable here: tests on other threads race it for tracing's
/// per-callsite interest cache.
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("authgate::dns=debug")
            .with_writer(|| Captured)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

#[tokio::test]
async fn upstream_queries_are_logged_at_debug() {
    capture_logs();
    let (_server, r) = live().await;
    r.txt("log-probe.example.com").await.unwrap_err();
    r.txt("log-probe.example.com").await.unwrap_err(); // cached: no second line
    let text = String::from_utf8(LOGS.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("upstream query") && l.contains("log-probe"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    for field in [
        "name=\"log-probe.example.com\"",
        "rtype=TXT",
        "outcome=NXDOMAIN",
        "latency_ms=",
    ] {
        assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
    }
}
