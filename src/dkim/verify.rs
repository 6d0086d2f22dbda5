//! DKIM verification (RFC 6376 §6, RFC 8301, RFC 8463).
//!
//! Owns: finding the signatures in a header block ([`find_signatures`]),
//! deciding which key lookups and body hashes they need, and turning a key
//! record plus body hash into a [`DkimOutcome`] ([`evaluate`]). Must not: do
//! DNS itself (the caller looks keys up, concurrently, and hands in answers)
//! or read the clock (`now` is an argument).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::canon::{BodyHash, BodySpec, canon_header};
use super::key::{KeyRecord, PreparedKey};
use super::signature::{Algorithm, Signature, SignatureError, SignatureSummary};
use super::tag::without_b_value;
use crate::dns::DnsError;
use crate::message::headers::Header;

/// The result of one signature (RFC 8601 §2.7.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimResult {
    /// The message was not signed.
    None,
    /// The signature verified.
    Pass,
    /// The signature or body hash did not verify.
    Fail,
    /// The signature was not evaluated (for example past the signature limit).
    Neutral,
    /// Valid syntax, refused by policy (rsa-sha1, RFC 8301).
    Policy,
    /// A temporary failure (key lookup): try again later.
    TempError,
    /// A permanent error: bad syntax, no key, expired, key too small.
    PermError,
}

impl DkimResult {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::None => "none",
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::Policy => "policy",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

/// What verification found for one signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DkimOutcome {
    /// The result.
    pub result: DkimResult,
    /// Human reason; empty on pass.
    pub reason: String,
    /// `d=`, if readable.
    pub domain: Option<String>,
    /// `s=`, if readable.
    pub selector: Option<String>,
    /// `a=`, if readable.
    pub algorithm: Option<String>,
    /// `i=`, if present.
    pub identity: Option<String>,
    /// The `b=` value (base64, no whitespace), for `header.b`.
    #[serde(skip)]
    pub b: Option<String>,
    /// The key record had `t=y`.
    pub testing: bool,
    /// The signature asks for failure reports (`r=y`, RFC 6651).
    #[serde(skip)]
    pub reports: bool,
}

impl DkimOutcome {
    fn new(summary: &SignatureSummary, result: DkimResult, reason: impl Into<String>) -> Self {
        DkimOutcome {
            result,
            reason: reason.into(),
            domain: summary.domain.clone(),
            selector: summary.selector.clone(),
            algorithm: summary.algorithm.clone(),
            identity: summary.identity.clone(),
            b: summary.b.clone(),
            testing: false,
            reports: summary.reports,
        }
    }
}

/// Verification policy knobs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Signatures evaluated per message; later ones are `neutral`.
    pub max_signatures: usize,
    /// Smallest RSA key accepted (RFC 8301: at least 1024).
    pub min_rsa_bits: usize,
    /// Tolerance for `t=` in the future, seconds.
    pub clock_skew: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_signatures: 8,
            min_rsa_bits: 1024,
            clock_skew: 300,
        }
    }
}

/// A DKIM-Signature found in the header block.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the DKIM-Signature field in the header list.
    pub header_index: usize,
    summary: SignatureSummary,
    state: Result<Signature, Box<DkimOutcome>>,
}

impl Candidate {
    /// The key record name to look up, when the signature needs one.
    pub fn key_name(&self) -> Option<String> {
        self.state.as_ref().ok().map(Signature::key_name)
    }

    /// The body hash this signature needs, if it gets that far.
    pub fn body_spec(&self) -> Option<BodySpec> {
        self.state.as_ref().ok().map(|s| BodySpec {
            canon: s.body_canon,
            limit: s.body_length,
        })
    }
}

/// Finds every DKIM-Signature (top to bottom) and pre-checks what needs no
/// DNS: syntax, algorithm policy, expiry, and the signature limit.
pub fn find_signatures(headers: &[Header], opts: &VerifyOptions, now: u64) -> Vec<Candidate> {
    headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is("DKIM-Signature"))
        .enumerate()
        .map(|(n, (header_index, h))| {
            let (mut summary, parsed) = Signature::parse_summarized(h.value());
            let state = if n >= opts.max_signatures {
                let why = format!("not checked: more than {} signatures", opts.max_signatures);
                Err(Box::new(DkimOutcome::new(
                    &summary,
                    DkimResult::Neutral,
                    why,
                )))
            } else {
                precheck(parsed, &summary, opts, now)
            };
            // i= is dkim-quoted-printable (RFC 6376 §3.5): results carry the
            // AUID it encodes (A-R header.i, RFC 6591 DKIM-Identity).
            if let Ok(Signature {
                identity: Some(i), ..
            }) = &state
            {
                summary.identity = Some(i.clone());
            }
            Candidate {
                header_index,
                summary,
                state,
            }
        })
        .collect()
}

fn precheck(
    parsed: Result<Signature, SignatureError>,
    summary: &SignatureSummary,
    opts: &VerifyOptions,
    now: u64,
) -> Result<Signature, Box<DkimOutcome>> {
    let perm = |why: String| Box::new(DkimOutcome::new(summary, DkimResult::PermError, why));
    let sig = parsed.map_err(|e| perm(e.to_string()))?;
    if sig.algorithm == Algorithm::RsaSha1 {
        let why = "rsa-sha1 is not accepted (RFC 8301)";
        return Err(Box::new(DkimOutcome::new(summary, DkimResult::Policy, why)));
    }
    if let Some(x) = sig.expiration
        && now > x
    {
        return Err(perm(format!("signature expired (x={x})")));
    }
    if let Some(t) = sig.timestamp
        && t > now.saturating_add(opts.clock_skew)
    {
        return Err(perm(format!("signature timestamp t={t} is in the future")));
    }
    Ok(sig)
}

/// Turns the key lookup answer and the body hashes into the final outcome.
pub fn evaluate(
    c: &Candidate,
    headers: &[Header],
    key: Option<&Result<Vec<Vec<u8>>, DnsError>>,
    bodies: &[(BodySpec, BodyHash)],
    opts: &VerifyOptions,
    keys: &KeyCache,
) -> DkimOutcome {
    let sig = match &c.state {
        Ok(sig) => sig,
        Err(done) => return (**done).clone(),
    };
    let out = |result, reason: &str| DkimOutcome::new(&c.summary, result, reason);
    let record = match key {
        None => return out(DkimResult::TempError, "key lookup did not complete"),
        Some(Err(DnsError::Temporary(e))) => {
            return out(DkimResult::TempError, &format!("key lookup failed: {e}"));
        }
        Some(Err(_)) => {
            return out(
                DkimResult::PermError,
                &format!("no key record at {}", sig.key_name()),
            );
        }
        Some(Ok(txts)) => keys.get(txts, opts.min_rsa_bits),
    };
    let prepared = match &*record {
        Ok(p) => p,
        Err(e) => return out(DkimResult::PermError, e),
    };
    let mut outcome = check(sig, c, headers, prepared, bodies);
    outcome.testing = prepared.record.testing;
    outcome
}

fn pick_record(txts: &[Vec<u8>]) -> Result<KeyRecord, String> {
    let mut first_err = None;
    for t in txts {
        match KeyRecord::parse(t) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.map_or_else(|| "empty key record".to_string(), |e| e.to_string()))
}

/// A key record answer parsed and prepared, or why it is unusable.
type KeyEntry = Arc<Result<PreparedKey, String>>;

/// TXT answer -> (`min_rsa_bits` it was prepared under, entry).
type KeyMap = HashMap<Vec<Vec<u8>>, (usize, KeyEntry)>;

/// Key records already parsed, with their keys prepared, keyed by the TXT
/// answer itself (so a changed record is simply a new entry) and the size
/// policy they were prepared under. Bounded: emptied when it reaches
/// [`KeyCache::MAX_ENTRIES`]. Clones share the entries.
#[derive(Clone, Default)]
pub struct KeyCache {
    entries: Arc<Mutex<KeyMap>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |m| m.len());
        write!(f, "KeyCache({n} entries)")
    }
}

impl KeyCache {
    /// Entries kept at most.
    pub const MAX_ENTRIES: usize = 1024;

    /// The prepared key for a TXT answer (the first record that parses), from
    /// the cache or parsed now.
    pub fn get(&self, txts: &[Vec<u8>], min_rsa_bits: usize) -> KeyEntry {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still consistent.
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((bits, entry)) = lock().get(txts)
            && *bits == min_rsa_bits
        {
            return Arc::clone(entry);
        }
        let entry = Arc::new(pick_record(txts).map(|r| PreparedKey::new(r, min_rsa_bits)));
        let mut map = lock();
        if map.len() >= Self::MAX_ENTRIES {
            map.clear();
        }
        map.insert(txts.to_vec(), (min_rsa_bits, Arc::clone(&entry)));
        entry
    }
}

fn check(
    sig: &Signature,
    c: &Candidate,
    headers: &[Header],
    prepared: &PreparedKey,
    bodies: &[(BodySpec, BodyHash)],
) -> DkimOutcome {
    let record = &prepared.record;
    let out = |result, reason: &str| DkimOutcome::new(&c.summary, result, reason);
    if record.strict_identity && !sig.identity_domain().eq_ignore_ascii_case(&sig.domain) {
        return out(
            DkimResult::PermError,
            "key has t=s but i= is a subdomain of d=",
        );
    }
    let key = match prepared.verifier(sig.algorithm.key_type()) {
        Ok(k) => k,
        Err(e) => return out(DkimResult::PermError, &e.to_string()),
    };
    let spec = BodySpec {
        canon: sig.body_canon,
        limit: sig.body_length,
    };
    let Some((_, body)) = bodies.iter().find(|(s, _)| *s == spec) else {
        return out(DkimResult::TempError, "body hash was not computed");
    };
    if sig.body_length.is_some_and(|l| l > body.canonical_len) {
        return out(DkimResult::Fail, "l= is longer than the body");
    }
    if body.digest[..] != sig.body_hash[..] {
        return out(DkimResult::Fail, "body hash did not verify");
    }
    let data = signed_data(
        headers,
        c.header_index,
        &sig.signed_headers,
        sig.header_canon,
    );
    if !key.verify(&data, &sig.signature) {
        return out(DkimResult::Fail, "signature did not verify");
    }
    out(DkimResult::Pass, "")
}

/// The header data a signature covers (RFC 6376 §3.7, §5.4.2): the fields
/// named in `h=`, each taken from the bottom up, then the signature field
/// itself with `b=` emptied and no trailing CRLF.
pub fn signed_data(
    headers: &[Header],
    sig_index: usize,
    names: &[String],
    canon: super::canon::Canon,
) -> Vec<u8> {
    let mut data = select_headers(headers, Some(sig_index), names, canon);
    let Some(sig) = headers.get(sig_index) else {
        return data;
    };
    let stripped = Header::from_raw(without_b_value(sig.raw()));
    canon_header(&stripped, canon, &mut data);
    data.truncate(data.len().saturating_sub(2));
    data
}

/// Canonicalizes the fields named in `names`, each instance chosen from the
/// bottom of the header block up; a missing instance contributes nothing.
pub fn select_headers(
    headers: &[Header],
    skip: Option<usize>,
    names: &[String],
    canon: super::canon::Canon,
) -> Vec<u8> {
    let mut data = Vec::with_capacity(1024);
    for i in header_instances(headers, skip, names).into_iter().flatten() {
        canon_header(&headers[i], canon, &mut data);
    }
    data
}

/// For each name of `names` in turn, the index of the bottom-most field of
/// that name not taken yet (RFC 6376 §5.4.2), or `None`. A plain scan
/// while that is small (the usual case: no map, no lowercased copies); a
/// map by name when an `h=` list or header block is large, so a hostile
/// `h=` with thousands of names stays linear.
fn header_instances(
    headers: &[Header],
    skip: Option<usize>,
    names: &[String],
) -> Vec<Option<usize>> {
    let usable = |i: usize, h: &Header| Some(i) != skip && h.is_well_formed();
    if names.len().saturating_mul(headers.len()) <= 4096 {
        let mut taken = vec![false; headers.len()];
        return names
            .iter()
            .map(|name| {
                let i = (0..headers.len()).rev().find(|&i| {
                    !taken[i]
                        && usable(i, &headers[i])
                        && headers[i].name().eq_ignore_ascii_case(name.as_bytes())
                })?;
                taken[i] = true;
                Some(i)
            })
            .collect();
    }
    let mut by_name: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if usable(i, h) {
            by_name
                .entry(h.name().to_ascii_lowercase())
                .or_default()
                .push(i);
        }
    }
    names
        .iter()
        .map(|name| {
            by_name
                .get_mut(name.as_bytes().to_ascii_lowercase().as_slice())
                .and_then(Vec::pop)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::canon::BodyHashes;
    use crate::dkim::key::SigningKey;
    use crate::message::headers::split_fields;
    use base64::Engine;

    const RFC8463: &[u8] = include_bytes!("../../tests/fixtures/dkim/rfc8463.eml");
    const ED_KEY: &[u8] = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const RSA_KEY: &[u8] = b"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

    #[test]
    fn header_instances_scan_and_map_agree() {
        let (headers, _) = split(
            b"From: a@x\r\nTo: b@x\r\nsubject: one\r\nSUBJECT: two\r\nbroken\r\nSubject: three\r\n\r\n",
        );
        let names: Vec<String> = [
            "subject", "from", "Subject", "x", "subject", "subject", "broken",
        ]
        .map(String::from)
        .to_vec();
        let small = header_instances(&headers, Some(1), &names);
        // Bottom-up per name; To (index 1) skipped; a line without a colon never taken.
        assert_eq!(
            small,
            vec![Some(5), Some(0), Some(3), None, Some(2), None, None]
        );
        // Past the scan limit the map gives the same picks for the same prefix.
        let mut many = names.clone();
        many.extend(std::iter::repeat_n("x-pad".to_string(), 5000));
        let big = header_instances(&headers, Some(1), &many);
        assert_eq!(big.len(), many.len());
        assert_eq!(&big[..names.len()], small.as_slice());
        assert!(big[names.len()..].iter().all(Option::is_none));
    }

    fn split(msg: &[u8]) -> (Vec<Header>, &[u8]) {
        let pos = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (split_fields(&msg[..pos + 2]), &msg[pos + 4..])
    }

    fn run(msg: &[u8], keys: &[&[u8]], now: u64) -> Vec<DkimOutcome> {
        let (headers, body) = split(msg);
        let opts = VerifyOptions::default();
        let cands = find_signatures(&headers, &opts, now);
        let mut h = BodyHashes::new(cands.iter().filter_map(Candidate::body_spec));
        h.update(body);
        let bodies = h.finish();
        cands
            .iter()
            .zip(keys)
            .map(|(c, k)| {
                evaluate(
                    c,
                    &headers,
                    Some(&Ok(vec![k.to_vec()])),
                    &bodies,
                    &opts,
                    &KeyCache::default(),
                )
            })
            .collect()
    }

    #[test]
    fn rfc8463_example_verifies_both_signatures() {
        let out = run(RFC8463, &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(out.len(), 2);
        for o in &out {
            assert_eq!(o.result, DkimResult::Pass, "{o:?}");
        }
        assert_eq!(out[0].algorithm.as_deref(), Some("ed25519-sha256"));
    }

    #[test]
    fn rfc8463_signatures_are_reproduced_byte_for_byte() {
        let (headers, _) = split(RFC8463);
        let seed = base64::engine::general_purpose::STANDARD
            .decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap();
        let ed = SigningKey::ed25519_from_seed(&seed).unwrap();
        let rsa =
            SigningKey::parse(include_bytes!("../../tests/fixtures/dkim/rfc8463-rsa.pem")).unwrap();
        for (index, key) in [(0usize, ed), (1, rsa)] {
            let sig = Signature::parse(headers[index].value()).unwrap();
            let data = signed_data(&headers, index, &sig.signed_headers, sig.header_canon);
            assert_eq!(key.sign(&data).unwrap(), sig.signature, "signature {index}");
        }
    }

    #[test]
    fn tampering_fails_for_the_right_reason() {
        let text = String::from_utf8(RFC8463.to_vec()).unwrap();
        let body = text.replace("hungry yet?", "hungry yet!");
        let out = run(body.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(
            (out[0].result, out[0].reason.as_str()),
            (DkimResult::Fail, "body hash did not verify")
        );
        let subject = text.replace("Is dinner ready?", "Is lunch ready?");
        let out = run(subject.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(
            (out[1].result, out[1].reason.as_str()),
            (DkimResult::Fail, "signature did not verify")
        );
        let added_from = text.replace("To: Suzie", "From: evil@example.org\r\nTo: Suzie");
        let out = run(added_from.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(out[0].result, DkimResult::Fail);
        // Relaxed body canonicalization tolerates whitespace changes.
        let spaces = text.replace("the game.  Are", "the game.   Are");
        let out = run(spaces.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(out[0].result, DkimResult::Pass);
    }

    #[test]
    fn key_problems_are_permerrors_with_reasons() {
        let cases: [(&[u8], &str); 4] = [
            (b"v=DKIM1; k=ed25519; p=", "key revoked (empty p=)"),
            (
                b"v=DKIM1; k=rsa; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                "key type k=rsa does not match the signature algorithm",
            ),
            (
                b"v=DKIM1; k=ed25519; t=s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                "",
            ),
            (
                b"v=DKIM1; k=ed25519; t=y; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                "",
            ),
        ];
        for (key, reason) in cases {
            let out = run(RFC8463, &[key], 1_528_637_909);
            assert_eq!(out[0].reason, reason);
        }
        let out = run(RFC8463, &[cases[3].0], 1_528_637_909);
        assert!(out[0].testing && out[0].result == DkimResult::Pass);
    }

    #[test]
    fn expiry_and_future_timestamps_use_the_given_clock() {
        let text = String::from_utf8(RFC8463.to_vec()).unwrap();
        let out = run(text.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909 - 301);
        assert_eq!(out[0].result, DkimResult::PermError);
        assert!(out[0].reason.contains("in the future"), "{}", out[0].reason);
    }

    #[test]
    fn dns_errors_map_to_temperror_and_permerror() {
        let (headers, body) = split(RFC8463);
        let opts = VerifyOptions::default();
        let cands = find_signatures(&headers, &opts, 1_528_637_909);
        let mut h = BodyHashes::new(cands.iter().filter_map(Candidate::body_spec));
        h.update(body);
        let bodies = h.finish();
        for (answer, want) in [
            (Err(DnsError::NxDomain), DkimResult::PermError),
            (Err(DnsError::NoData), DkimResult::PermError),
            (
                Err(DnsError::Temporary("SERVFAIL".into())),
                DkimResult::TempError,
            ),
            (Ok(vec![b"garbage".to_vec()]), DkimResult::PermError),
        ] {
            assert_eq!(
                evaluate(
                    &cands[0],
                    &headers,
                    Some(&answer),
                    &bodies,
                    &opts,
                    &KeyCache::default()
                )
                .result,
                want
            );
        }
    }

    #[test]
    fn signature_limit_and_rsa_sha1() {
        let text = String::from_utf8(RFC8463.to_vec()).unwrap();
        let (headers, _) = split(text.as_bytes());
        let opts = VerifyOptions {
            max_signatures: 1,
            ..VerifyOptions::default()
        };
        let cands = find_signatures(&headers, &opts, 1_528_637_909);
        let second = evaluate(&cands[1], &headers, None, &[], &opts, &KeyCache::default());
        assert_eq!(second.result, DkimResult::Neutral);
        let sha1 = text.replacen("a=rsa-sha256", "a=rsa-sha1", 1);
        let out = run(sha1.as_bytes(), &[ED_KEY, RSA_KEY], 1_528_637_909);
        assert_eq!(
            (out[1].result, out[1].reason.as_str()),
            (DkimResult::Policy, "rsa-sha1 is not accepted (RFC 8301)")
        );
    }

    /// Signs `msg` with l= covering the first `l` canonical body bytes.
    fn sign_with_length(msg: &str, l: u64) -> String {
        use crate::dkim::canon::{BodySpec, Canon};
        let (headers, body) = split(msg.as_bytes());
        let mut h = BodyHashes::new([BodySpec {
            canon: Canon::Relaxed,
            limit: Some(l),
        }]);
        h.update(body);
        let (_, bh) = h.finish().remove(0);
        let key = SigningKey::ed25519_from_seed(&[3u8; 32]).unwrap();
        let mut sig = Signature {
            algorithm: crate::dkim::signature::Algorithm::Ed25519Sha256,
            signature: Vec::new(),
            body_hash: bh.digest.to_vec(),
            header_canon: Canon::Relaxed,
            body_canon: Canon::Relaxed,
            domain: "example.com".into(),
            signed_headers: vec!["from".into(), "subject".into()],
            identity: None,
            body_length: Some(l),
            selector: "len".into(),
            timestamp: None,
            expiration: None,
            copied_headers: None,
        };
        let unsigned = Header::new("DKIM-Signature", &sig.to_header_value(), b"\r\n");
        let mut all = vec![unsigned];
        all.extend(headers);
        let data = signed_data(&all, 0, &sig.signed_headers, Canon::Relaxed);
        sig.signature = key.sign(&data).unwrap();
        let signed = Header::new("DKIM-Signature", &sig.to_header_value(), b"\r\n");
        format!("{}{msg}", String::from_utf8_lossy(signed.raw()))
    }

    #[test]
    fn body_length_limit_allows_appended_text_but_not_truncation() {
        let key = SigningKey::ed25519_from_seed(&[3u8; 32]).unwrap();
        let record = format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(key.public_key_bytes())
        );
        let msg = "From: a@example.com\r\nSubject: s\r\n\r\nHello world\r\nmore\r\n";
        let signed = sign_with_length(msg, 13);
        let out = run(signed.as_bytes(), &[record.as_bytes()], 0);
        assert_eq!(out[0].result, DkimResult::Pass, "{out:?}");
        // RFC 6376 §8.2: content appended past l= is not covered.
        let appended = format!("{signed}Buy now!\r\n");
        assert_eq!(
            run(appended.as_bytes(), &[record.as_bytes()], 0)[0].result,
            DkimResult::Pass
        );
        // A body shorter than l= cannot verify.
        let truncated = signed.replace("Hello world\r\nmore\r\n", "Hello\r\n");
        let out = run(truncated.as_bytes(), &[record.as_bytes()], 0);
        assert_eq!(
            (out[0].result, out[0].reason.as_str()),
            (DkimResult::Fail, "l= is longer than the body")
        );
    }

    /// Signs `msg` (CRLF) with the seed-3 Ed25519 key as d=example.com,
    /// s=len, relaxed/relaxed, over `names`, t=`t`, x=`x`.
    fn sign_over(msg: &str, names: &[&str], t: u64, x: Option<u64>) -> String {
        use crate::dkim::canon::{BodySpec, Canon};
        use crate::dkim::sign::SignSpec;
        let (headers, body) = split(msg.as_bytes());
        let mut h = BodyHashes::new([BodySpec {
            canon: Canon::Relaxed,
            limit: None,
        }]);
        h.update(body);
        let (_, bh) = h.finish().remove(0);
        let spec = SignSpec {
            key: Arc::new(SigningKey::ed25519_from_seed(&[3u8; 32]).unwrap()),
            domain: "example.com".into(),
            selector: "len".into(),
            header_canon: Canon::Relaxed,
            body_canon: Canon::Relaxed,
            signed_headers: names.iter().map(|n| n.to_string()).collect(),
            timestamp: t,
            expiration: x,
        };
        let sig = crate::dkim::sign::sign(&headers, &spec, &bh, b"\r\n").unwrap();
        format!("{}{msg}", String::from_utf8_lossy(sig.raw()))
    }

    fn seed3_record() -> String {
        let key = SigningKey::ed25519_from_seed(&[3u8; 32]).unwrap();
        format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(key.public_key_bytes())
        )
    }

    /// RFC 6376 §3.5 x=: "Signatures MAY be considered invalid if the
    /// verification time at the Verifier is past the expiration date";
    /// §6.1.1: "Verifiers MAY ignore the DKIM-Signature header field and
    /// return PERMFAIL (signature expired)". Up to x= itself it is valid.
    #[test]
    fn signature_past_its_expiry_is_a_permerror() {
        let msg = "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n";
        let signed = sign_over(msg, &["from", "subject"], 1_000, Some(2_000));
        let record = seed3_record();
        for (now, want) in [
            (1_500, DkimResult::Pass),
            (2_000, DkimResult::Pass),
            (2_001, DkimResult::PermError),
        ] {
            let out = run(signed.as_bytes(), &[record.as_bytes()], now);
            assert_eq!(out[0].result, want, "now={now}: {:?}", out[0]);
        }
        let out = run(signed.as_bytes(), &[record.as_bytes()], 2_001);
        assert_eq!(out[0].reason, "signature expired (x=2000)");
    }

    /// RFC 6376 §3.5 h= / §5.4: a name in h= that the message lacks is the
    /// null string, so the signature verifies, and adding such a field (or
    /// one more instance of a field signed once more than present: what
    /// oversigning is) breaks it. Names compare case-insensitively.
    #[test]
    fn absent_and_oversigned_fields_in_h_are_null_until_added() {
        let msg = "from: a@example.com\r\nSubject: s\r\n\r\nbody\r\n";
        let signed = sign_over(msg, &["From", "SUBJECT", "reply-to", "from"], 1, None);
        let record = seed3_record();
        let check = |m: &str| run(m.as_bytes(), &[record.as_bytes()], 10)[0].result;
        assert_eq!(check(&signed), DkimResult::Pass);
        for (what, added) in [
            ("absent Reply-To", "Reply-To: x@evil.example\r\n"),
            ("second From", "From: x@evil.example\r\n"),
        ] {
            let tampered = signed.replacen("from: a@", &format!("{added}from: a@"), 1);
            assert_eq!(check(&tampered), DkimResult::Fail, "{what}");
        }
        // A field not in h= may be added freely.
        let tampered = signed.replacen("from: a@", "X-Extra: 1\r\nfrom: a@", 1);
        assert_eq!(check(&tampered), DkimResult::Pass);
    }

    /// RFC 6376 §3.5 h=: "The field MUST NOT include the DKIM-Signature
    /// header field that is being created or verified but may include
    /// others": a `dkim-signature` in h= never selects the field being
    /// verified (it is hashed once, last, with b= emptied, §3.7), only
    /// other signatures, so adding one of those afterwards breaks it.
    #[test]
    fn h_naming_dkim_signature_never_takes_the_one_being_verified() {
        let msg = "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n";
        let signed = sign_over(msg, &["from", "dkim-signature"], 1, None);
        let record = seed3_record();
        let out = run(signed.as_bytes(), &[record.as_bytes()], 10);
        assert_eq!(out[0].result, DkimResult::Pass, "{:?}", out[0]);
        let other =
            "DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=t; h=from; bh=AA==; b=AA==\r\n";
        let tampered = signed.replacen("From: a@", &format!("{other}From: a@"), 1);
        let out = run(tampered.as_bytes(), &[record.as_bytes()], 10);
        assert_eq!(out[0].result, DkimResult::Fail);
    }

    /// RFC 6376 §3.5 i= is dkim-quoted-printable: the identity reported is
    /// the decoded AUID; without i= the default is "@" d= (§6.1.1).
    #[test]
    fn identity_is_reported_decoded() {
        let base =
            "DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=s; h=from; bh=AA==; b=AA==";
        for (extra, want) in [
            ("; i=j=3Bo=20x@example.com", Some("j;o x@example.com")),
            ("", None),
        ] {
            let headers =
                split_fields(format!("{base}{extra}\r\nFrom: a@example.com\r\n").as_bytes());
            let opts = VerifyOptions::default();
            let c = &find_signatures(&headers, &opts, 0)[0];
            let o = evaluate(c, &headers, None, &[], &opts, &KeyCache::default());
            assert_eq!(o.identity.as_deref(), want);
        }
    }

    #[test]
    fn bare_pkcs1_public_key_and_minimum_size() {
        let pkcs1 = b"v=DKIM1; k=rsa; p=MIGJAoGBAOQeU5CgFPNZGIazlXo2k/eJ1jpaTTxrmqF1HrDLlt04pvaMtCJj8nXoliLRC/H9vJjMI1vdb3XLcW60AIN/PBD8EL97/y4GwJH7LPUvGP48vqUe+owqszesbiGy1PlCO8c70/OjFnJVgvMF87YR4Lcincb7aSvI5MgpP6X8rjDdAgMBAAE=";
        let out = run(RFC8463, &[ED_KEY, pkcs1], 1_528_637_909);
        assert_eq!(out[1].result, DkimResult::Pass, "{:?}", out[1]);
        let (headers, body) = split(RFC8463);
        let opts = VerifyOptions {
            min_rsa_bits: 2048,
            ..VerifyOptions::default()
        };
        let cands = find_signatures(&headers, &opts, 1_528_637_909);
        let mut h = BodyHashes::new(cands.iter().filter_map(Candidate::body_spec));
        h.update(body);
        let bodies = h.finish();
        let o = evaluate(
            &cands[1],
            &headers,
            Some(&Ok(vec![RSA_KEY.to_vec()])),
            &bodies,
            &opts,
            &KeyCache::default(),
        );
        assert_eq!(
            (o.result, o.reason.as_str()),
            (
                DkimResult::PermError,
                "RSA key of 1024 bits is below the minimum of 2048"
            )
        );
    }

    #[test]
    fn key_cache_reuses_keys_but_honours_each_size_policy() {
        let (headers, body) = split(RFC8463);
        let keys = KeyCache::default();
        let answer = Ok(vec![RSA_KEY.to_vec()]);
        for (min_rsa_bits, want) in [
            (1024, DkimResult::Pass),
            (1024, DkimResult::Pass),
            (2048, DkimResult::PermError),
            (1024, DkimResult::Pass),
        ] {
            let opts = VerifyOptions {
                min_rsa_bits,
                ..VerifyOptions::default()
            };
            let cands = find_signatures(&headers, &opts, 1_528_637_909);
            let mut h = BodyHashes::new(cands.iter().filter_map(Candidate::body_spec));
            h.update(body);
            let o = evaluate(
                &cands[1],
                &headers,
                Some(&answer),
                &h.finish(),
                &opts,
                &keys,
            );
            assert_eq!(o.result, want, "{min_rsa_bits}: {o:?}");
        }
        let first = keys.get(&[RSA_KEY.to_vec()], 1024);
        assert!(Arc::ptr_eq(&first, &keys.get(&[RSA_KEY.to_vec()], 1024)));
    }

    #[test]
    fn rfc6376_appendix_a_body_hash() {
        use crate::dkim::canon::{BodySpec, Canon};
        let mut h = BodyHashes::new([BodySpec {
            canon: Canon::Simple,
            limit: None,
        }]);
        h.update(b"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n");
        let (_, bh) = h.finish().remove(0);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(bh.digest),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
    }
}
