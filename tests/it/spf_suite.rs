//! The openspf RFC 7208 test suite (release 2014.04, shipped in the pyspf
//! 2.0.14 sdist as `test/rfc7208-tests.yml`; BSD licence in
//! `tests/fixtures/spf/rfc7208-tests.LICENSE`) run through `check_host`.
//!
//! The YAML is converted to JSON by `tests/fixtures/spf/yaml_to_json.py`.
//! Its `zonedata` is served by [`SuiteDns`], which follows the suite's
//! driver (pyspf `test/testspf.py`): `TIMEOUT` entries are temporary
//! failures (unless a record of the asked type came first), `SPF` records
//! stand in for TXT when a name has no TXT records, `NONE` means no records,
//! names under `error.` that are absent time out, and labels longer than 63
//! octets fail like pydns does.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use authgate::dns::{DnsError, Mx, Resolver, reverse_name};
use authgate::spf::{SpfOptions, SpfResult, verify_mail_from};
use serde_json::Value;

use crate::support::fixtures;

/// One zonedata entry.
#[derive(Debug, Clone)]
enum Entry {
    /// The whole name times out.
    Timeout,
    /// A record of `rtype`; `None` data means `TIMEOUT` for that type.
    Record(String, Option<Value>),
}

/// The suite's zonedata as a resolver.
pub struct SuiteDns {
    zone: HashMap<String, Vec<Entry>>,
}

impl SuiteDns {
    /// Builds the resolver from one scenario's `zonedata` object.
    pub fn new(zonedata: &Value) -> Self {
        let mut zone = HashMap::new();
        for (name, entries) in zonedata.as_object().into_iter().flatten() {
            let entries = entries.as_array().cloned().unwrap_or_default();
            zone.insert(name.to_ascii_lowercase(), parse_entries(&entries));
        }
        Self { zone }
    }

    /// Records of `rtype` at `name`, following CNAMEs (testspf.py's
    /// `DNSLookup` plus pyspf's CNAME chasing).
    fn lookup(&self, name: &str, rtype: &str, depth: usize) -> Result<Vec<Value>, DnsError> {
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        if labels.iter().any(|l| l.len() > 63) {
            return Err(DnsError::Temporary("DNS label too long".into()));
        }
        let name = labels.join(".").to_ascii_lowercase();
        let Some(entries) = self.zone.get(&name) else {
            if name.starts_with("error.") {
                return Err(DnsError::Temporary("timeout".into()));
            }
            return Err(DnsError::NxDomain);
        };
        let mut found = Vec::new();
        let mut cname = None;
        for entry in entries {
            match entry {
                Entry::Timeout if found.is_empty() => {
                    return Err(DnsError::Temporary("timeout".into()));
                }
                Entry::Timeout => break,
                Entry::Record(t, None) if t == rtype => {
                    return Err(DnsError::Temporary("timeout".into()));
                }
                Entry::Record(t, Some(v)) if t == rtype => found.push(v.clone()),
                Entry::Record(t, Some(Value::String(target))) if t == "CNAME" => {
                    cname = Some(target.clone());
                }
                Entry::Record(..) => {}
            }
        }
        match (found.is_empty(), cname) {
            (true, Some(target)) if depth < 10 => self.lookup(&target, rtype, depth + 1),
            (true, _) => Err(DnsError::NoData),
            (false, _) => Ok(found),
        }
    }

    fn txt_now(&self, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
        let values = self.lookup(name, "TXT", 0)?;
        let mut out = Vec::new();
        for v in values {
            let strings = match v {
                Value::String(s) => vec![s],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect(),
                _ => continue,
            };
            out.push(strings.concat().into_bytes());
        }
        if out.is_empty() {
            return Err(DnsError::NoData);
        }
        Ok(out)
    }

    fn strings(&self, name: &str, rtype: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .lookup(name, rtype, 0)?
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect())
    }
}

/// testspf.py `getrdata`: SPF records are copied to TXT unless the name
/// has TXT records of its own.
fn parse_entries(entries: &[Value]) -> Vec<Entry> {
    let has_txt = entries.iter().any(|e| e.get("TXT").is_some());
    let mut out = Vec::new();
    for e in entries {
        let Some(map) = e.as_object() else {
            out.push(Entry::Timeout);
            continue;
        };
        for (t, v) in map {
            if v.as_str() == Some("NONE") {
                continue; // suppresses generated TXT records, yields nothing
            }
            let data = (v.as_str() != Some("TIMEOUT")).then(|| v.clone());
            out.push(Entry::Record(t.clone(), data.clone()));
            if t == "SPF" && !has_txt {
                out.push(Entry::Record("TXT".into(), data));
            }
        }
    }
    out
}

impl Resolver for SuiteDns {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<Vec<u8>>, DnsError>> + Send {
        ready(self.txt_now(name))
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv4Addr>, DnsError>> + Send {
        ready(
            self.strings(name, "A")
                .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect()),
        )
    }
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv6Addr>, DnsError>> + Send {
        ready(
            self.strings(name, "AAAA")
                .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect()),
        )
    }
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send {
        let mx = self.lookup(name, "MX", 0).map(|values| {
            values
                .iter()
                .filter_map(|v| {
                    let pref = u16::try_from(v.get(0)?.as_u64()?).ok()?;
                    let exchange = v.get(1)?.as_str()?.trim_end_matches('.').to_lowercase();
                    Some(Mx {
                        preference: pref,
                        exchange,
                    })
                })
                .collect()
        });
        ready(mx)
    }
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send {
        ready(self.strings(&reverse_name(ip), "PTR"))
    }
}

/// One suite case and what we got.
struct Run {
    id: String,
    spec: String,
    want: Vec<String>,
    want_exp: Option<String>,
    got: SpfResult,
    got_exp: Option<String>,
}

impl Run {
    fn ok(&self) -> bool {
        let result_ok = self.want.iter().any(|w| w == self.got.as_str());
        // The driver sets the default explanation to "DEFAULT".
        let exp = self.got_exp.clone().unwrap_or_else(|| "DEFAULT".into());
        result_ok && self.want_exp.as_ref().is_none_or(|w| *w == exp)
    }
}

fn want_results(test: &Value) -> Vec<String> {
    match &test["result"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

async fn run_case(dns: &SuiteDns, id: &str, test: &Value) -> Run {
    let s = |k: &str| test[k].as_str().unwrap_or_default().to_string();
    let ip: IpAddr = s("host").parse().expect("host is an IP");
    let opts = SpfOptions {
        receiver: "receiver.example".into(),
        now: 1_700_000_000,
        ..SpfOptions::default()
    };
    let outcome = verify_mail_from(dns, ip, &s("mailfrom"), &s("helo"), &opts).await;
    Run {
        id: id.to_string(),
        spec: s("spec"),
        want: want_results(test),
        want_exp: test
            .get("explanation")
            .and_then(|e| e.as_str())
            .map(String::from),
        got: outcome.result,
        got_exp: outcome.explanation,
    }
}

/// Every case of the suite, run.
async fn run_suite() -> Vec<Run> {
    let path = fixtures().join("spf/rfc7208-tests.json");
    let text = std::fs::read_to_string(path).expect("suite JSON");
    let scenarios: Vec<Value> = serde_json::from_str(&text).expect("valid JSON");
    let mut runs = Vec::new();
    for scenario in &scenarios {
        let dns = SuiteDns::new(&scenario["zonedata"]);
        for (id, test) in scenario["tests"].as_object().into_iter().flatten() {
            runs.push(run_case(&dns, id, test).await);
        }
    }
    runs
}

/// Cases where authgate deliberately differs from the suite, with the RFC
/// section that justifies it.
///
/// - `v-macro-ip6`: the suite writes the client as `CAFE:BABE::1` and
///   expects `%{ir}` to keep that case (`...E.B.A.B.E.F.A.C.ip6.arpa`).
///   authgate takes an `IpAddr`, so the spelling is gone, and writes
///   lower-case nibbles as the RFC 7208 §7.4 example does
///   (`1.0.b.c.0.0...`); the result (`fail`) agrees, only the explanation
///   text differs in case.
const KNOWN_DIFFERENCES: &[&str] = &["v-macro-ip6"];

#[tokio::test]
async fn rfc7208_test_suite_passes() {
    let runs = run_suite().await;
    let failed: Vec<&Run> = runs
        .iter()
        .filter(|r| !r.ok() && !KNOWN_DIFFERENCES.contains(&r.id.as_str()))
        .collect();
    let passed = runs.iter().filter(|r| r.ok()).count();
    eprintln!("RFC 7208 suite: {passed}/{} cases pass", runs.len());
    for r in &failed {
        eprintln!(
            "FAIL {} (§{}): want {:?} exp {:?}, got {} exp {:?}",
            r.id, r.spec, r.want, r.want_exp, r.got, r.got_exp
        );
    }
    assert_eq!(runs.len(), 203, "the 2014.04 suite has 203 cases");
    assert!(failed.is_empty(), "{} suite cases failed", failed.len());
}
