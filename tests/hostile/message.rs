//! Message cases: the input (signed first with the fixture key when the
//! case says `sign`, then its DKIM-Signature edited) goes through the
//! pipeline as `authgate pipe` drives it ([`authgate::pipe::check`]), with
//! DNS from `base.zone` plus the case's zone text. Observed: the DKIM result
//! of every signature, SPF (MAIL FROM), DMARC, the disposition, the
//! Authentication-Results field, all the fields added (`added`), whether
//! the header block was parsed, and the DNS queries made.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use authgate::config::{Config, KeySettings, TableSettings};
use authgate::dns::zone::ZoneResolver;
use authgate::outcome::{Front, InFlight, Origin, plan};
use authgate::pipe::{SpoolSettings, filter};
use authgate::pipeline::{Context, Envelope};
use authgate::role::Role;
use toml::Value;

use crate::manifest::Case;
use crate::{Observed, template};

/// The message clock: fixed, so `t=` and `x=` cases do not age.
pub const NOW: u64 = 1_700_000_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn verify_context() -> Arc<Context> {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    Arc::clone(CTX.get_or_init(|| {
        let mut config = Config {
            authserv_id: "mx.hostile.test".into(),
            ..Config::default()
        };
        config.iprev.enabled = false;
        config.spf.helo = false;
        Arc::new(config.context().unwrap())
    }))
}

/// A signing context per (`d=`, `s=`), all with rsa2048.pem.
fn sign_context(domain: &str, selector: &str) -> Arc<Context> {
    type Cache = Mutex<HashMap<(String, String), Arc<Context>>>;
    static CTX: OnceLock<Cache> = OnceLock::new();
    let mut map = CTX.get_or_init(Cache::default).lock().unwrap();
    let key = (domain.to_string(), selector.to_string());
    Arc::clone(map.entry(key).or_insert_with(|| {
        let mut config = Config {
            authserv_id: "mx.hostile.test".into(),
            ..Config::default()
        };
        config.dkim.sign.allow_insecure_key_permissions = true;
        config.dkim.keys.push(KeySettings {
            name: "rsa".into(),
            domain: domain.into(),
            selector: selector.into(),
            file: root().join("tests/fixtures/dkim/rsa2048.pem"),
        });
        config.dkim.signing_table.push(TableSettings {
            pattern: "*".into(),
            keys: vec!["rsa".into()],
        });
        Arc::new(config.context().unwrap())
    }))
}

fn zone(case: &Case, scale: usize) -> ZoneResolver {
    let base = std::fs::read_to_string(root().join("tests/hostile/base.zone")).unwrap();
    let extra = String::from_utf8(template::expand(&case.zone, scale)).unwrap();
    ZoneResolver::parse(&format!("{base}\n{extra}\n"), None)
        .unwrap_or_else(|e| panic!("{}: zone: {e}", case.name))
}

fn envelope(case: &Case, scale: usize) -> Envelope {
    let e = case.envelope.clone().unwrap_or_default();
    let from = e.mail_from.as_deref().unwrap_or("a@example.com");
    let from = String::from_utf8(template::expand(from, scale)).unwrap();
    let ip: IpAddr = e.ip.as_deref().unwrap_or("192.0.2.1").parse().unwrap();
    Envelope {
        client_ip: Some(ip),
        helo: Some(e.helo.unwrap_or_else(|| "mx.example.com".into())),
        mail_from: Some(from),
        authenticated: false,
    }
}

/// The message signed by the pipeline's own signer (rsa2048, d=example.com).
fn signed(
    rt: &tokio::runtime::Runtime,
    case: &Case,
    scale: usize,
    input: &[u8],
    dns: ZoneResolver,
) -> Vec<u8> {
    let plan = plan(Role::Outbound, &Origin::default());
    let msg = InFlight::start(
        Front::Pipe,
        sign_context(
            case.sign_domain.as_deref().unwrap_or("example.com"),
            case.sign_selector.as_deref().unwrap_or("rsa2048"),
        ),
        dns,
        plan,
        envelope(case, scale),
        Some(NOW),
    );
    let mut out = Vec::new();
    let fate = filter(
        rt,
        msg,
        &SpoolSettings::default(),
        &mut &input[..],
        &mut out,
    )
    .unwrap();
    assert!(fate.delivers(), "{}: signing: {:?}", case.name, fate.reason);
    out
}

/// Applies the case's tag edits to the first DKIM-Signature field: the
/// field is unfolded (which relaxed canonicalization does not see), its
/// tags edited, and written back on one line.
fn edit_signature(case: &Case, scale: usize, msg: Vec<u8>) -> Vec<u8> {
    let expand = |t: &str| String::from_utf8(template::expand(t, scale)).unwrap();
    let edits = !case.tag_set.is_empty()
        || !case.tag_drop.is_empty()
        || !case.tag_dup.is_empty()
        || !case.tag_add.is_empty()
        || case.mangle_b.is_some()
        || case.mangle_bh.is_some();
    if !edits {
        return msg;
    }
    let start = find(&msg, b"DKIM-Signature:").expect("a DKIM-Signature to edit");
    let mut end = start;
    loop {
        match find(&msg[end..], b"\n") {
            Some(p) => end += p + 1,
            None => {
                end = msg.len();
                break;
            }
        }
        if !matches!(msg.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    let field = String::from_utf8(msg[start..end].to_vec()).unwrap();
    let eol = if field.ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let value = field["DKIM-Signature:".len()..]
        .replace("\r\n", "")
        .replace('\n', "");
    let mut tags: Vec<(String, String)> = value
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap_or((t, ""));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    for (k, v) in &case.tag_set {
        let v = expand(&crate::value_text(v));
        match tags.iter_mut().find(|(tk, _)| tk == k) {
            Some(t) => t.1 = v,
            None => tags.push((k.clone(), v)),
        }
    }
    tags.retain(|(k, _)| !case.tag_drop.contains(k));
    for k in &case.tag_dup {
        let copy = tags
            .iter()
            .find(|(tk, _)| tk == k)
            .cloned()
            .expect("tag to dup");
        tags.insert(0, copy);
    }
    for (tag, how) in [("b", &case.mangle_b), ("bh", &case.mangle_bh)] {
        if let (Some(how), Some(t)) = (how, tags.iter_mut().find(|(k, _)| k == tag)) {
            t.1 = mangle(&t.1, how);
        }
    }
    let mut text: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    text.extend(case.tag_add.iter().map(|t| expand(t)));
    let new = format!("DKIM-Signature: {}{eol}", text.join("; "));
    let mut out = msg[..start].to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&msg[end..]);
    out
}

fn mangle(v: &str, how: &str) -> String {
    match how {
        "spaces" => {
            let chunks: Vec<String> = v
                .as_bytes()
                .chunks(10)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            chunks.join(" \t ")
        }
        "garbage" => format!("{}*{}", &v[..v.len() / 2], &v[v.len() / 2..]),
        "truncate" => v[..v.len().saturating_sub(8)].to_string(),
        other => panic!("unknown mangle {other}"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs the case at `scale`; what it did.
pub fn run(case: &Case, scale: usize, rt: &tokio::runtime::Runtime) -> Observed {
    let mut input = template::expand(&case.input, scale);
    if case.sign {
        input = edit_signature(
            case,
            scale,
            signed(rt, case, scale, &input, zone(case, scale)),
        );
    }
    let plan = plan(Role::Inbound, &Origin::default());
    let msg = InFlight::start(
        Front::Verify,
        verify_context(),
        zone(case, scale),
        plan,
        envelope(case, scale),
        Some(NOW),
    );
    let mut out = Vec::new();
    let spool = SpoolSettings {
        threshold: 1 << 24,
        dir: None,
    };
    let fate = filter(rt, msg, &spool, &mut &input[..], &mut out).unwrap();
    let mut o = Observed::new();
    let s = |v: &str| Value::String(v.to_string());
    o.insert("disposition".into(), s(fate.disposition.as_str()));
    o.insert("output_bytes".into(), Value::Integer(out.len() as i64));
    o.insert(
        "dns_queries".into(),
        Value::Integer(fate.dns.queries as i64),
    );
    if let Some(a) = &fate.answer {
        o.insert("answer".into(), Value::Integer(i64::from(a.code)));
    }
    let Some(v) = fate.verdict() else {
        o.insert("refused".into(), s(fate.reason.as_deref().unwrap_or("")));
        return o;
    };
    o.insert("unparsed".into(), Value::Boolean(v.unparsed.is_some()));
    let dkim = v.dkim.iter().map(|d| s(d.result.as_str())).collect();
    o.insert("dkim".into(), Value::Array(dkim));
    let reasons: Vec<String> = v.dkim.iter().map(|d| d.reason.clone()).collect();
    o.insert("dkim_reason".into(), s(&reasons.join(" | ")));
    if let Some(spf) = &v.spf_mailfrom {
        o.insert("spf".into(), s(spf.result.as_str()));
        o.insert("spf_reason".into(), s(&spf.reason));
    }
    if let Some(d) = &v.dmarc {
        o.insert("dmarc".into(), s(d.result.as_str()));
        o.insert("dmarc_reason".into(), s(&d.reason));
    }
    let added: Vec<u8> = fate
        .edits()
        .add
        .iter()
        .flat_map(|h| h.raw().to_vec())
        .collect();
    o.insert("added".into(), s(&String::from_utf8_lossy(&added)));
    if let Some(ar) = fate.edits().authentication_results() {
        o.insert("ar".into(), s(&String::from_utf8_lossy(ar.raw())));
    }
    o
}
