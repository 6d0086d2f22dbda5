//! Interop oracle: Stalwart `mail-auth` behind the uniform oracle command line
//! shared with `dkimpy_oracle.py` and `opendkim_oracle.py`.
//!
//! ```text
//! mailauth-oracle sign --domain D --selector S --key PEM [--algorithm rsa-sha256|ed25519-sha256]
//!                      [--canon relaxed/simple] [--headers a:b:c]  < msg > signed
//! mailauth-oracle verify --zone ZONEFILE [--now UNIX]             < msg
//! ```
//!
//! `sign` writes the DKIM-Signature header followed by the unchanged message; the
//! header uses the message's line ending (CRLF if the message has any CRLF, else LF).
//! `verify` prints one line per DKIM-Signature header: `pass` or `fail <reason>`,
//! and exits 0. DNS is answered only from the zone file: every TXT lookup hits a
//! pre-filled cache, and a name not in the zone is answered NXDOMAIN by the cache
//! itself, so the resolver (built with no name servers) is never queried.
//!
//! Line endings: mail-auth hashes a bare-LF message as is, so under `simple`
//! header canonicalization it disagrees with dkimpy and OpenDKIM, which treat LF
//! as the local form of CRLF (as an MTA does when it puts the message on the wire;
//! an Exim transport filter sees LF). This oracle therefore converts bare LF to
//! CRLF before signing and verifying; the signed output keeps the input's bytes.
//!
//! Limitation: mail-auth reads the clock itself (its `now` parameter is
//! crate-private), so `--now` is accepted for interface compatibility but ignored.
//! Order: mail-auth reports signatures whose header it rejects (unsupported
//! algorithm/version) first, then the parsed ones in header order; a header it
//! cannot parse at all gets a trailing `fail unparsable` line so the count matches.

use mail_auth::{
    crypto::{Ed25519Key, RsaKey, Sha256, SigningKey},
    dkim::{Canonicalization, DkimSigner, DomainKey},
    dns::TxtRecordParser,
    headers::HeaderWriter,
    hickory_resolver::{
        config::{ResolverConfig, ResolverOpts},
        proto::op::ResponseCode,
    },
    AuthenticatedMessage, DkimResult, DnsCache, DnsError, Error, MessageAuthenticator, Mx,
    Negative, Parameters, RecordSet, ResolverCache, TxtRecord,
};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::Instant,
};

const DEFAULT_HEADERS: &str = "From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailauth-oracle: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, rest) = args
        .split_first()
        .ok_or("usage: mailauth-oracle sign|verify ...")?;
    let opts = parse_opts(rest)?;
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(|e| format!("stdin: {e}"))?;
    match op.as_str() {
        "sign" => sign(&opts, &raw),
        "verify" => verify(&opts, &to_crlf(&raw)),
        other => Err(format!("unknown operation {other:?}")),
    }
}

fn parse_opts(rest: &[String]) -> Result<HashMap<String, String>, String> {
    let mut opts = HashMap::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        opts.insert(name.to_string(), value.clone());
    }
    Ok(opts)
}

fn need<'a>(opts: &'a HashMap<String, String>, k: &str) -> Result<&'a str, String> {
    opts.get(k)
        .map(String::as_str)
        .ok_or_else(|| format!("--{k} is required"))
}

fn canon(s: &str) -> Result<Canonicalization, String> {
    match s {
        "relaxed" => Ok(Canonicalization::Relaxed),
        "simple" => Ok(Canonicalization::Simple),
        _ => Err(format!("bad canonicalization {s:?}")),
    }
}

fn sign(opts: &HashMap<String, String>, raw: &[u8]) -> Result<(), String> {
    let pem = std::fs::read(need(opts, "key")?).map_err(|e| format!("key: {e}"))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("key PEM: {e}"))?;
    let alg = opts.get("algorithm").map_or("rsa-sha256", String::as_str);
    let header = match alg {
        "rsa-sha256" => {
            let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| format!("RSA key: {e}"))?;
            sign_with(key, opts, &to_crlf(raw))?
        }
        "ed25519-sha256" => {
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_der())
                .map_err(|e| format!("Ed25519 key: {e}"))?;
            sign_with(key, opts, &to_crlf(raw))?
        }
        _ => return Err(format!("unsupported algorithm {alg:?}")),
    };
    let header = if raw.windows(2).any(|w| w == b"\r\n") {
        header
    } else {
        header.replace("\r\n", "\n")
    };
    let mut out = std::io::stdout().lock();
    out.write_all(header.as_bytes())
        .and_then(|()| out.write_all(raw))
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn sign_with<T: SigningKey>(
    key: T,
    opts: &HashMap<String, String>,
    raw: &[u8],
) -> Result<String, String> {
    let c = opts.get("canon").map_or("relaxed/relaxed", String::as_str);
    let (ch, cb) = c.split_once('/').unwrap_or((c, "simple"));
    let headers = opts.get("headers").map_or(DEFAULT_HEADERS, String::as_str);
    let sig = DkimSigner::from_key(key)
        .domain(need(opts, "domain")?)
        .selector(need(opts, "selector")?)
        .headers(headers.split(':').filter(|h| !h.is_empty()))
        .header_canonicalization(canon(ch)?)
        .body_canonicalization(canon(cb)?)
        .sign(raw)
        .map_err(|e| format!("sign: {e}"))?;
    Ok(sig.to_header())
}

fn verify(opts: &HashMap<String, String>, raw: &[u8]) -> Result<(), String> {
    let zone = std::fs::read_to_string(need(opts, "zone")?).map_err(|e| format!("zone: {e}"))?;
    let caches = ZoneCaches::from_zone(&zone)?;
    let msg = AuthenticatedMessage::parse(raw).ok_or("message does not parse")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let lines: Vec<String> = rt.block_on(async {
        let auth = MessageAuthenticator::new(
            ResolverConfig::from_parts(None, vec![], vec![]),
            ResolverOpts::default(),
        )
        .map_err(|e| format!("resolver: {e}"))?;
        let res = auth
            .verify_dkim(Parameters::new(&msg).with_cache(&caches))
            .await;
        Ok::<_, String>(
            res.iter()
                .map(|r| line(r.result(), r.signature()))
                .collect(),
        )
    })?;
    let count = count_dkim_headers(raw);
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}").map_err(|e| e.to_string())?;
    }
    for _ in lines.len()..count {
        writeln!(out, "fail unparsable (mail-auth gave no result)").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn line(r: &DkimResult, sig: Option<&mail_auth::dkim::Signature>) -> String {
    let who = sig.map_or(String::new(), |s| format!(" (d={} s={})", s.d, s.s));
    match r {
        DkimResult::Pass => "pass".to_string(),
        DkimResult::Neutral(e) => format!("fail neutral: {e}{who}"),
        DkimResult::Fail(e) => format!("fail {e}{who}"),
        DkimResult::PermError(e) => format!("fail permerror: {e}{who}"),
        DkimResult::TempError(e) => format!("fail temperror: {e}{who}"),
        DkimResult::None => format!("fail none{who}"),
    }
}

/// Bare LF -> CRLF (wire form); existing CRLF pairs are kept.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Number of header fields named DKIM-Signature in the header block.
fn count_dkim_headers(raw: &[u8]) -> usize {
    let mut n = 0;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"dkim-signature:") {
            n += 1;
        }
    }
    n
}

/// Minimal RFC 1035 master-file reader for TXT records: `name [ttl] [IN] TXT "a" "b"`,
/// parentheses spanning lines, `;` comments, `$ORIGIN`, `@`. Other types are skipped.
fn parse_zone(text: &str) -> Result<HashMap<String, Vec<Vec<u8>>>, String> {
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut origin = String::new();
    let mut last_name = String::new();
    for rec in logical_lines(text)? {
        let Some(first) = rec.first() else { continue };
        if first.0.eq_ignore_ascii_case("$ORIGIN") {
            origin = rec.get(1).map(|t| fqdn(&t.0, "")).unwrap_or_default();
            continue;
        }
        if first.0.starts_with('$') {
            continue;
        }
        let mut i = 0;
        if !first.2 {
            // no leading blank: owner name present
            last_name = if first.0 == "@" {
                origin.clone()
            } else {
                fqdn(&first.0, &origin)
            };
            i = 1;
        }
        while let Some(t) = rec.get(i) {
            let u = t.0.to_ascii_uppercase();
            if !t.1 && (u == "IN" || u.bytes().all(|b| b.is_ascii_digit())) {
                i += 1;
            } else {
                break;
            }
        }
        if rec.get(i).is_some_and(|t| t.0.eq_ignore_ascii_case("TXT")) {
            let value: Vec<u8> = rec[i + 1..].iter().flat_map(|t| t.0.bytes()).collect();
            out.entry(last_name.to_ascii_lowercase())
                .or_default()
                .push(value);
        }
    }
    Ok(out)
}

fn fqdn(name: &str, origin: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else if origin.is_empty() {
        format!("{name}.")
    } else {
        format!("{name}.{origin}")
    }
}

/// Splits into records of tokens (text, was_quoted, line_started_with_blank).
fn logical_lines(text: &str) -> Result<Vec<Vec<(String, bool, bool)>>, String> {
    let mut recs = Vec::new();
    let mut cur: Vec<(String, bool, bool)> = Vec::new();
    let mut depth = 0;
    for line in text.lines() {
        let blank_start = line.starts_with([' ', '\t']);
        let mut chars = line.chars().peekable();
        let mut first_on_line = true;
        while let Some(c) = chars.next() {
            match c {
                ';' => break,
                '(' => depth += 1,
                ')' => depth -= 1,
                ' ' | '\t' => {}
                '"' => {
                    let mut s = String::new();
                    loop {
                        match chars.next() {
                            None => return Err("unterminated quoted string in zone".into()),
                            Some('"') => break,
                            Some('\\') => s.push(chars.next().ok_or("dangling backslash")?),
                            Some(x) => s.push(x),
                        }
                    }
                    cur.push((s, true, false));
                }
                _ => {
                    let mut s = String::from(c);
                    while let Some(&x) = chars.peek() {
                        if x.is_whitespace() || "();\"".contains(x) {
                            break;
                        }
                        s.push(x);
                        chars.next();
                    }
                    let starts = first_on_line && cur.is_empty() && blank_start;
                    cur.push((s, false, starts));
                }
            }
            first_on_line = false;
        }
        if depth == 0 && !cur.is_empty() {
            recs.push(std::mem::take(&mut cur));
        }
    }
    Ok(recs)
}

struct MapCache<K, V>(std::sync::Mutex<HashMap<K, V>>);

impl<K, V> Default for MapCache<K, V> {
    fn default() -> Self {
        MapCache(std::sync::Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for MapCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.remove(name)
    }
    fn insert(&self, key: K, value: V, _valid_until: Instant) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, value);
        }
    }
}

/// TXT answers from the zone; any other name is NXDOMAIN without a query.
#[derive(Default)]
struct ZoneTxt(MapCache<Box<str>, TxtRecord>);

impl ResolverCache<Box<str>, TxtRecord> for ZoneTxt {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(
            self.0
                .get(name)
                .unwrap_or(TxtRecord::Error(Error::Dns(DnsError::RecordNotFound(
                    ResponseCode::NXDomain,
                )))),
        )
    }
    fn remove<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(name)
    }
    fn insert(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        self.0.insert(key, value, valid_until)
    }
}

type Answer<T> = Result<RecordSet<T>, Negative>;

#[derive(Default)]
struct ZoneCaches {
    txt: ZoneTxt,
    mx: MapCache<Box<str>, Answer<Mx>>,
    ipv4: MapCache<Box<str>, Answer<Ipv4Addr>>,
    ipv6: MapCache<Box<str>, Answer<Ipv6Addr>>,
    ptr: MapCache<IpAddr, Answer<Box<str>>>,
}

impl ZoneCaches {
    fn from_zone(text: &str) -> Result<Self, String> {
        let caches = ZoneCaches::default();
        for (name, records) in parse_zone(text)? {
            let rec: TxtRecord = DomainKey::parse_records(&records).into();
            caches
                .txt
                .insert(name.into_boxed_str(), rec, Instant::now());
        }
        Ok(caches)
    }
}

impl DnsCache for ZoneCaches {
    type Txt = ZoneTxt;
    type Mx = MapCache<Box<str>, Answer<Mx>>;
    type Ipv4 = MapCache<Box<str>, Answer<Ipv4Addr>>;
    type Ipv6 = MapCache<Box<str>, Answer<Ipv6Addr>>;
    type Ptr = MapCache<IpAddr, Answer<Box<str>>>;
    fn txt(&self) -> Option<&Self::Txt> {
        Some(&self.txt)
    }
    fn mx(&self) -> Option<&Self::Mx> {
        Some(&self.mx)
    }
    fn ipv4(&self) -> Option<&Self::Ipv4> {
        Some(&self.ipv4)
    }
    fn ipv6(&self) -> Option<&Self::Ipv6> {
        Some(&self.ipv6)
    }
    fn ptr(&self) -> Option<&Self::Ptr> {
        Some(&self.ptr)
    }
}
