//! DKIM key generation (`authgate keygen`): a new private key and the DNS
//! TXT record that publishes its public half.
//!
//! Owns: generating RSA (`rsa` crate) and Ed25519 (`aws-lc-rs`) keys,
//! encoding the private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`; v1 for
//! Ed25519, which OpenSSL 3.0 and so OpenDKIM require), the key file's name
//! (`<selector>.<domain>.key`, see [`key_file_name`]), and rendering the key
//! record (RFC 6376 §3.6.1; RFC 8463 for `k=ed25519`) three ways: a BIND
//! zone-file line, a single-line value for web DNS panels, and the bare `p=`
//! value.
//!
//! Must not: touch files (writing the key file, mode 0600 and never
//! overwriting, is `crate::keyfile`), parse command lines or print (that is
//! `cli.rs`), or ever format private key bytes through `Debug`/`Display`.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// Smallest RSA modulus accepted, in bits (RFC 8301 §3.2: signers MUST use at
/// least 1024 and SHOULD use 2048; aws-lc based signers refuse keys under 2048).
pub const MIN_RSA_BITS: usize = 1024;
/// Largest RSA modulus accepted, in bits (bigger keys sign too slowly to be useful).
pub const MAX_RSA_BITS: usize = 8192;
/// RSA modulus size used when none is given.
pub const DEFAULT_RSA_BITS: usize = 2048;
/// Longest DNS character-string (RFC 1035 §3.3): one length octet, so 255 bytes.
pub const MAX_CHARACTER_STRING: usize = 255;

/// Key type to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA with the given modulus size in bits, for `rsa-sha256` (`k=rsa`).
    Rsa {
        /// Modulus size, [`MIN_RSA_BITS`]`..=`[`MAX_RSA_BITS`].
        bits: usize,
    },
    /// Ed25519, for `ed25519-sha256` (`k=ed25519`, RFC 8463).
    Ed25519,
}

impl Default for KeyAlgorithm {
    fn default() -> Self {
        KeyAlgorithm::Rsa {
            bits: DEFAULT_RSA_BITS,
        }
    }
}

impl KeyAlgorithm {
    /// The `k=` tag value of the key record.
    pub fn key_type(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa { .. } => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// What to generate and under which name to publish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenOptions {
    /// Signing domain (`d=`), e.g. `example.com`; a trailing dot is dropped.
    pub domain: String,
    /// Selector (`s=`), e.g. `mail2025`; may contain dots (RFC 6376 §3.1).
    pub selector: String,
    /// Key type and size.
    pub algorithm: KeyAlgorithm,
    /// Publish `t=y` (RFC 6376 §3.6.1): verifiers must not treat failures as fatal.
    pub testing: bool,
}

/// Errors from key generation.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The RSA modulus size is outside [`MIN_RSA_BITS`]`..=`[`MAX_RSA_BITS`].
    #[error("RSA key size {0} is out of range ({MIN_RSA_BITS}..={MAX_RSA_BITS} bits)")]
    InvalidBits(usize),
    /// The domain or selector is not a usable DNS name.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        /// `"domain"` or `"selector"`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The crypto library failed to generate or encode the key.
    #[error("key generation failed: {0}")]
    Crypto(String),
}

/// A freshly generated private key, PKCS#8 PEM, plus its public half.
///
/// `Debug` prints the algorithm only, never key material.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pem: String,
    public_key: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a key; RSA takes a second or more, Ed25519 is instant.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeygenError> {
        match algorithm {
            KeyAlgorithm::Rsa { bits } => generate_rsa(bits),
            KeyAlgorithm::Ed25519 => generate_ed25519(),
        }
    }

    /// The key type and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Secret.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public key as published in `p=`: SubjectPublicKeyInfo DER for
    /// RSA (RFC 6376 §3.6.1), the raw 32 bytes for Ed25519 (RFC 8463 §4.2).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

fn generate_rsa(bits: usize) -> Result<PrivateKey, KeygenError> {
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeygenError::InvalidBits(bits));
    }
    let crypto = |e: &dyn fmt::Display| KeygenError::Crypto(e.to_string());
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| crypto(&e))?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| crypto(&e))?;
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| crypto(&e))?;
    Ok(PrivateKey {
        algorithm: KeyAlgorithm::Rsa { bits },
        pem: pem.as_str().to_owned(),
        public_key: spki.as_bytes().to_vec(),
    })
}

fn generate_ed25519() -> Result<PrivateKey, KeygenError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    // PKCS#8 v1 (RFC 5208), not v2: OpenSSL 3.0, and so OpenDKIM and the
    // openssl CLI, reject the v2 form with its [1] publicKey ("unsupported").
    let doc = Ed25519KeyPair::generate_pkcs8v1(&rng)
        .map_err(|_| KeygenError::Crypto("Ed25519 key generation failed".into()))?;
    let pair =
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| KeygenError::Crypto(e.to_string()))?;
    let pem = rsa::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, doc.as_ref())
        .map_err(|e| KeygenError::Crypto(e.to_string()))?;
    Ok(PrivateKey {
        algorithm: KeyAlgorithm::Ed25519,
        pem,
        public_key: pair.public_key().as_ref().to_vec(),
    })
}

/// The DKIM key record for one key, rendered for the places it gets pasted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner name, fully qualified: `<selector>._domainkey.<domain>.`
    pub name: String,
    /// (a) BIND zone-file line(s): `<name> IN TXT ( "..." "..." )`, the value
    /// split into character-strings of at most [`MAX_CHARACTER_STRING`] bytes.
    pub zone_line: String,
    /// (b) The whole value on one line, e.g. `v=DKIM1; k=rsa; p=MIIB...`, for
    /// web DNS panels that split long strings themselves.
    pub value: String,
    /// (c) The bare `p=` value (base64), for panels with a "public key" field.
    pub public_key: String,
}

impl DnsRecord {
    /// Builds the record for a public key (`p=` bytes as described at
    /// [`PrivateKey::public_key`]).
    pub fn new(opts: &KeygenOptions, public_key: &[u8]) -> Result<Self, KeygenError> {
        let domain = check_name("domain", &opts.domain)?;
        let selector = check_name("selector", &opts.selector)?;
        let name = format!("{selector}._domainkey.{domain}.");
        let p = BASE64.encode(public_key);
        let testing = if opts.testing { "t=y; " } else { "" };
        let value = format!("v=DKIM1; k={}; {testing}p={p}", opts.algorithm.key_type());
        let zone_line = zone_line(&name, &value);
        Ok(DnsRecord {
            name,
            zone_line,
            value,
            public_key: p,
        })
    }
}

/// `name IN TXT ( "chunk" ... )` with one character-string per line (one
/// quoted string when the value fits in one); `name` ends in a dot.
pub fn zone_line(name: &str, value: &str) -> String {
    let chunks = split_character_strings(value);
    if let [only] = chunks.as_slice() {
        return format!("{name} IN TXT \"{only}\"");
    }
    let body: Vec<String> = chunks.iter().map(|c| format!("\t\"{c}\"")).collect();
    format!("{name} IN TXT (\n{} )", body.join("\n"))
}

/// Splits an ASCII value into pieces of at most [`MAX_CHARACTER_STRING`] bytes.
/// Our values are ASCII (tags and base64) with no `"` or `\` to escape.
fn split_character_strings(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while rest.len() > MAX_CHARACTER_STRING {
        let cut = (1..=MAX_CHARACTER_STRING)
            .rev()
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(rest.len());
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Validates a domain or selector: dot-separated labels of letters, digits,
/// `-` and `_`, each 1..=63 bytes, at most 253 bytes in all. This also keeps
/// the key file name free of `/` and `..`.
fn check_name<'a>(what: &'static str, value: &'a str) -> Result<&'a str, KeygenError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    let bad = |why| KeygenError::InvalidName {
        what,
        value: value.to_owned(),
        why,
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1 to 253 bytes"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1 to 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
    }
    Ok(name)
}

/// Key file name for a selector and domain: `<selector>.<domain>.key`.
pub fn key_file_name(selector: &str, domain: &str) -> Result<String, KeygenError> {
    let selector = check_name("selector", selector)?;
    let domain = check_name("domain", domain)?;
    Ok(format!("{selector}.{domain}.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(algorithm: KeyAlgorithm) -> KeygenOptions {
        KeygenOptions {
            domain: "example.com".into(),
            selector: "sel1".into(),
            algorithm,
            testing: false,
        }
    }

    /// Re-joins the character-strings of a zone line.
    fn unzone(line: &str) -> String {
        line.split('"').skip(1).step_by(2).collect()
    }

    #[test]
    fn ed25519_key_is_pkcs8_v1_like_openssl_genpkey() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).expect("ed25519");
        let (_, der) = rsa::pkcs8::der::pem::decode_vec(key.pem().as_bytes()).expect("pem");
        // SEQUENCE(46) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING(32) } }
        let prefix = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], prefix);
    }

    #[test]
    fn zone_line_strings_fit_and_rejoin_to_value() {
        let key = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }).expect("rsa");
        let rec = DnsRecord::new(&opts(key.algorithm()), key.public_key()).expect("record");
        assert!(
            rec.zone_line
                .starts_with("sel1._domainkey.example.com. IN TXT (\n\t\"")
        );
        let strings: Vec<&str> = rec.zone_line.split('"').skip(1).step_by(2).collect();
        assert!(strings.len() >= 2);
        assert!(strings.iter().all(|s| s.len() <= MAX_CHARACTER_STRING));
        assert_eq!(unzone(&rec.zone_line), rec.value);
        assert!(!rec.value.contains('\n'));
    }

    #[test]
    fn short_value_is_one_string() {
        let rec = DnsRecord::new(&opts(KeyAlgorithm::Ed25519), &[7u8; 32]).expect("record");
        assert_eq!(
            rec.zone_line,
            format!("sel1._domainkey.example.com. IN TXT \"{}\"", rec.value)
        );
        assert_eq!(
            rec.value,
            format!("v=DKIM1; k=ed25519; p={}", rec.public_key)
        );
    }

    #[test]
    fn rejects_bad_sizes_and_names() {
        for bits in [512, 1023, 8193] {
            let err = PrivateKey::generate(KeyAlgorithm::Rsa { bits }).expect_err("bits");
            assert!(matches!(err, KeygenError::InvalidBits(b) if b == bits));
        }
        for (sel, dom) in [
            ("../x", "example.com"),
            ("s", ""),
            ("s", "a..b"),
            ("a/b", "c"),
        ] {
            assert!(key_file_name(sel, dom).is_err(), "{sel} {dom}");
        }
        assert_eq!(
            key_file_name("s.2025", "Example.COM.").expect("ok"),
            "s.2025.Example.COM.key"
        );
    }

    #[test]
    fn debug_does_not_print_key_material() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).expect("ed25519");
        let body: String = key
            .pem()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&body[..20]), "{dbg}");
        assert!(dbg.contains("redacted"));
    }
}
