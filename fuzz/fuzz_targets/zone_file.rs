//! The zone-file loader (`--dns-zone`, `[dns] zone_files`): arbitrary text
//! through [`ZoneResolver::parse`], then lookups of the owner names the text
//! seems to write, of their ancestors, and of a few fixed names, for every
//! record type; and the zone merged with a copy of itself.
//!
//! Input: byte 0 picks the default origin (bit 0) and whether the merge
//! runs (bit 1); the rest is the master-file text (lossily UTF-8).
//! Asserts: no panic; a name that owns records exists; a found answer is
//! non-empty, of the asked type (a CNAME chain may rename it), owned by
//! the name resolution ended at, and no more than `MAX_CNAME_HOPS`
//! aliases were followed; an answer's TTL never exceeds a record's.
#![no_main]

use authgate::dns::zone::{MAX_CNAME_HOPS, Outcome, ZoneData, ZoneResolver};
use authgate::dns::{RecordType, Records};
use libfuzzer_sys::fuzz_target;

const TYPES: [RecordType; 5] = [
    RecordType::A,
    RecordType::Aaaa,
    RecordType::Mx,
    RecordType::Txt,
    RecordType::Ptr,
];

/// Owner-looking words: the first word of each line that starts one.
fn owner_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', ';', '$', '(']))
        .filter_map(|l| l.split_ascii_whitespace().next())
        .take(16)
        .map(str::to_owned)
        .collect();
    names.extend(
        [
            "example.com",
            "www.example.com",
            "",
            ".",
            "com",
            "*.example.com",
        ]
        .map(String::from),
    );
    names
}

fn check(zone: &ZoneResolver, name: &str) {
    if zone.owns(name) {
        assert!(
            zone.exists(name),
            "{name:?} owns records but does not exist"
        );
    }
    let _ = zone.soa_for(name);
    for rtype in TYPES {
        let res = zone.resolve(name, rtype);
        assert!(res.aliases.len() <= MAX_CNAME_HOPS + 1, "{res:?}");
        if let Outcome::Found(records) = &res.outcome {
            assert!(!records.is_empty());
            for r in records {
                assert_eq!(r.name, res.name, "{name:?} {rtype}");
                assert!(!matches!(r.data, ZoneData::Cname(_)), "{res:?}");
            }
        }
        let answer = zone.answer(&res, rtype);
        if let Ok(records) = &answer.result {
            let min = match &res.outcome {
                Outcome::Found(r) => r.iter().map(|r| r.ttl).min().unwrap_or(0),
                other => panic!("records from {other:?}"),
            };
            assert!(answer.ttl <= min);
            let same_type = matches!(
                (records, rtype),
                (Records::A(_), RecordType::A)
                    | (Records::Aaaa(_), RecordType::Aaaa)
                    | (Records::Mx(_), RecordType::Mx)
                    | (Records::Txt(_), RecordType::Txt)
                    | (Records::Ptr(_), RecordType::Ptr)
            );
            assert!(same_type, "{rtype} answered {records:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let origin = (flags & 1 == 1).then_some("example.com.");
    let Ok(mut zone) = ZoneResolver::parse(&text, origin) else {
        return;
    };
    let names = owner_names(&text);
    for name in &names {
        check(&zone, name);
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            check(&zone, parent);
            rest = parent;
        }
    }
    if flags & 2 == 2 {
        let copy = zone.clone();
        let len = zone.len();
        if zone.merge(copy).is_ok() {
            assert_eq!(zone.len(), len);
            names.iter().for_each(|n| check(&zone, n));
        }
    }
});
