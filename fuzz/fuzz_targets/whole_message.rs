//! A whole message through the full pipeline, as `authgate pipe` runs it
//! ([`authgate::pipe::filter`]): header split, DKIM (signatures, key
//! lookups, body hashes), SPF for MAIL FROM and HELO, iprev, a DNSBL,
//! DMARC, local policy, then the Authentication-Results and other header
//! edits written in front of the message. DNS comes from fixed zone text
//! in memory (`tests/hostile/base.zone`, the RFC 8463 keys and
//! `fuzz/zones/whole_message.zone`); no network, no files.
//!
//! Input: byte 0 picks the envelope (client IP, HELO, MAIL FROM, whether
//! the client authenticated), the rest is the message. Asserts: the filter
//! never fails on in-memory I/O; a delivered message is written as the
//! added fields followed by the original header block (the body is the
//! input's); every field we add is one field (continuation lines only
//! after CR LF or LF and then blank space, no bare CR); our A-R names our
//! authserv-id.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use authgate::authres::authserv_id;
use authgate::config::Config;
use authgate::dns::zone::ZoneResolver;
use authgate::dnsbl::{DnsblAction, DnsblZone};
use authgate::outcome::{Front, InFlight, Origin, plan};
use authgate::pipe::{SpoolSettings, filter};
use authgate::pipeline::{Context, Envelope};
use authgate::role::Role;
use libfuzzer_sys::fuzz_target;

/// The message clock (2027-01-15): after the `t=` of every seed.
const NOW: u64 = 1_800_000_000;
const AUTHSERV_ID: &str = "mx.fuzz.example";

const ZONES: [&str; 3] = [
    include_str!("../../tests/hostile/base.zone"),
    include_str!("../../tests/fixtures/dkim/rfc8463.zone"),
    include_str!("../zones/whole_message.zone"),
];

const IPS: [Option<IpAddr>; 4] = [
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
    Some(IpAddr::V6(Ipv6Addr::new(
        0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x25,
    ))),
    None,
];
const HELOS: [Option<&str>; 4] = [
    Some("mx.example.com"),
    Some("mail.football.example.com"),
    Some("[192.0.2.1]"),
    None,
];
const SENDERS: [Option<&str>; 8] = [
    Some("a@example.com"),
    Some("joe@football.example.com"),
    Some(""),
    None,
    Some("x@example.net"),
    Some("bounce+x=y@void.fuzz.example"),
    Some("a@loop.fuzz.example"),
    Some("a@tempfail.fuzz.example"),
];

struct World {
    rt: tokio::runtime::Runtime,
    ctx: Arc<Context>,
    dns: Arc<ZoneResolver>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = Config {
            authserv_id: AUTHSERV_ID.into(),
            ..Config::default()
        };
        config.dnsbl.zones.push(DnsblZone {
            zone: "bl.fuzz.example".into(),
            action: DnsblAction::Header,
        });
        config.trust.trusted_received_by = vec![AUTHSERV_ID.into()];
        config.trust.trusted_authserv_ids = vec!["upstream.fuzz.example".into()];
        let ctx = Arc::new(config.context().expect("context"));
        let mut dns = ZoneResolver::default();
        for text in ZONES {
            dns.merge(ZoneResolver::parse(text, None).expect("zone"))
                .expect("merge");
        }
        World {
            rt,
            ctx,
            dns: Arc::new(dns),
        }
    })
}

fn envelope(pick: u8) -> Envelope {
    let p = usize::from(pick);
    Envelope {
        client_ip: IPS[p & 3],
        helo: HELOS[(p >> 2) & 3].map(String::from),
        mail_from: SENDERS[(p >> 4) & 7].map(String::from),
        authenticated: pick & 0x80 != 0,
    }
}

/// One header field: continuation lines only after a line break followed
/// by blank space; no CR that does not start a CRLF.
fn assert_one_field(raw: &[u8]) {
    assert!(raw.ends_with(b"\n"), "{:?}", String::from_utf8_lossy(raw));
    let body = &raw[..raw.len() - 1];
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR in {raw:?}"),
            b'\n' => assert!(
                matches!(raw.get(i + 1), Some(b' ' | b'\t')),
                "unfolded line in {:?}",
                String::from_utf8_lossy(raw)
            ),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, message)) = data.split_first() else {
        return;
    };
    let w = world();
    let msg = InFlight::start(
        Front::Verify,
        Arc::clone(&w.ctx),
        Arc::clone(&w.dns),
        plan(Role::Inbound, &Origin::default()),
        envelope(pick),
        Some(NOW),
    );
    let spool = SpoolSettings {
        threshold: usize::MAX,
        dir: None,
    };
    let mut out = Vec::new();
    let fate =
        filter(&w.rt, msg, &spool, &mut &message[..], &mut out).expect("in-memory I/O cannot fail");
    let added: Vec<u8> = fate
        .edits()
        .add
        .iter()
        .flat_map(|h| h.raw().to_vec())
        .collect();
    fate.edits()
        .add
        .iter()
        .for_each(|h| assert_one_field(h.raw()));
    if let Some(ar) = fate.edits().authentication_results() {
        assert_eq!(authserv_id(ar.value()).as_deref(), Some(AUTHSERV_ID));
    }
    if fate.delivers() && fate.message.is_some() {
        assert!(out.starts_with(&added), "added fields first");
        assert!(out.len() >= added.len());
    } else {
        assert!(out.is_empty(), "nothing written for {:?}", fate.disposition);
    }
});
