//! DKIM keys: the DNS key record (RFC 6376 §3.6.1, RFC 8463) and private
//! signing keys parsed from their bytes.
//!
//! Owns: parsing `v=DKIM1; k=...; p=...` records into a usable public key with
//! its flags, key-size policy, and parsing PEM/DER private keys
//! ([`SigningKey::parse`]). Must not: read files (reading a key file and its
//! permission check are `crate::keyfile`), log, or `Debug`-print private
//! key material.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::tag::{TagError, TagList, strip_fws};

/// Why a key record is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRecordError {
    /// The tag list is malformed.
    #[error("malformed key record: {0}")]
    Tags(#[from] TagError),
    /// `v=` present but not `DKIM1`, or not the first tag.
    #[error("key record version is not DKIM1")]
    Version,
    /// No `p=` tag.
    #[error("key record has no p= tag")]
    MissingKey,
    /// `p=` is empty: the key was revoked (RFC 6376 §3.6.1).
    #[error("key revoked (empty p=)")]
    Revoked,
    /// `k=` names a key type we do not know.
    #[error("unknown key type k={0}")]
    UnknownKeyType(String),
    /// `p=` is not valid base64 or not a valid key of its type.
    #[error("invalid public key data in p=")]
    BadKey,
    /// `h=` excludes sha256.
    #[error("key record h= does not allow sha256")]
    HashNotAllowed,
    /// `s=` excludes email.
    #[error("key record s= does not cover email")]
    ServiceNotAllowed,
    /// The key type does not match the signature algorithm.
    #[error("key type k={0} does not match the signature algorithm")]
    TypeMismatch(String),
    /// The RSA key is smaller than the configured minimum.
    #[error("RSA key of {0} bits is below the minimum of {1}")]
    TooSmall(usize, usize),
    /// The RSA key is larger than we verify (DoS protection).
    #[error("RSA key of {0} bits is above the maximum of {1}")]
    TooLarge(usize, usize),
}

/// The key type (`k=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `k=rsa`: `p=` is a SubjectPublicKeyInfo or a bare RSAPublicKey (DER).
    Rsa,
    /// `k=ed25519`: `p=` is the raw 32-byte public key (RFC 8463).
    Ed25519,
}

/// A parsed key record.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key type (`k=`).
    pub key_type: KeyType,
    /// Public key bytes (`p=`), decoded.
    pub public_key: Vec<u8>,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
    /// `t=s`: `i=` must not be a subdomain of `d=`.
    pub strict_identity: bool,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_type", &self.key_type)
            .field("public_key_len", &self.public_key.len())
            .field("testing", &self.testing)
            .field("strict_identity", &self.strict_identity)
            .finish()
    }
}

fn colon_list_has(value: Option<&str>, want: &[&str]) -> bool {
    value.is_none_or(|v| {
        v.split(':')
            .map(strip_fws)
            .any(|x| want.iter().any(|w| x.eq_ignore_ascii_case(w)))
    })
}

impl KeyRecord {
    /// Parses a TXT record value (strings already joined).
    pub fn parse(txt: &[u8]) -> Result<KeyRecord, KeyRecordError> {
        let tags = TagList::parse(txt)?;
        if let Some(v) = tags.get("v")
            && (v != "DKIM1" || tags.first_name() != Some("v"))
        {
            return Err(KeyRecordError::Version);
        }
        let key_type = match tags.get("k").map(str::to_ascii_lowercase).as_deref() {
            None | Some("rsa") => KeyType::Rsa,
            Some("ed25519") => KeyType::Ed25519,
            Some(other) => return Err(KeyRecordError::UnknownKeyType(other.to_string())),
        };
        if !colon_list_has(tags.get("h"), &["sha256"]) {
            return Err(KeyRecordError::HashNotAllowed);
        }
        if !colon_list_has(tags.get("s"), &["*", "email"]) {
            return Err(KeyRecordError::ServiceNotAllowed);
        }
        let flags: Vec<_> = tags
            .get("t")
            .map(|t| t.split(':').map(strip_fws).collect())
            .unwrap_or_default();
        let p = strip_fws(tags.get("p").ok_or(KeyRecordError::MissingKey)?);
        if p.is_empty() {
            return Err(KeyRecordError::Revoked);
        }
        let public_key = STANDARD
            .decode(p.as_bytes())
            .map_err(|_| KeyRecordError::BadKey)?;
        Ok(KeyRecord {
            key_type,
            public_key,
            testing: flags.iter().any(|f| f == "y"),
            strict_identity: flags.iter().any(|f| f == "s"),
        })
    }

    /// The key type as written in `k=` and in the signature's `a=`.
    pub fn key_type_name(&self) -> &'static str {
        match self.key_type {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Checks the key against the signature's algorithm and the size policy,
    /// returning a verifier.
    pub fn verifier(
        &self,
        key_type: &str,
        min_rsa_bits: usize,
    ) -> Result<PublicKey, KeyRecordError> {
        let k = self.key_type_name();
        if k != key_type {
            return Err(KeyRecordError::TypeMismatch(k.to_string()));
        }
        match self.key_type {
            KeyType::Ed25519 if self.public_key.len() == 32 => {
                Ok(PublicKey::Ed25519(self.public_key.clone()))
            }
            KeyType::Ed25519 => Err(KeyRecordError::BadKey),
            KeyType::Rsa => rsa_public_key(&self.public_key, min_rsa_bits),
        }
    }
}

/// A key record with its public key checked and prepared once (for RSA the
/// aws-lc key, whose Montgomery context is then reused), so that a cache can
/// keep it across messages signed with the same key.
#[derive(Debug)]
pub struct PreparedKey {
    /// The record.
    pub record: KeyRecord,
    /// The key for the record's own type under the size policy it was built with.
    key: Result<PublicKey, KeyRecordError>,
}

impl PreparedKey {
    /// Prepares the record's key under `min_rsa_bits`.
    pub fn new(record: KeyRecord, min_rsa_bits: usize) -> Self {
        let key = record.verifier(record.key_type_name(), min_rsa_bits);
        PreparedKey { record, key }
    }

    /// The same answer as [`KeyRecord::verifier`] with the `min_rsa_bits`
    /// given to [`PreparedKey::new`], without rebuilding the key.
    pub fn verifier(&self, key_type: &str) -> Result<&PublicKey, KeyRecordError> {
        let k = self.record.key_type_name();
        if k != key_type {
            return Err(KeyRecordError::TypeMismatch(k.to_string()));
        }
        self.key.as_ref().map_err(Clone::clone)
    }
}

/// Largest RSA modulus we verify with (RFC 8301 asks for up to 4096; 8192 is
/// the DoS bound).
pub const MAX_RSA_BITS: usize = 8192;

fn rsa_public_key(der: &[u8], min_bits: usize) -> Result<PublicKey, KeyRecordError> {
    let key = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| KeyRecordError::BadKey)?;
    let modulus = key.modulus();
    let n = modulus.big_endian_without_leading_zero();
    let bits = n.first().map_or(0, |&top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < min_bits {
        return Err(KeyRecordError::TooSmall(bits, min_bits));
    }
    if bits > MAX_RSA_BITS {
        return Err(KeyRecordError::TooLarge(bits, MAX_RSA_BITS));
    }
    let components = aws_lc_rs::signature::RsaPublicKeyComponents {
        n,
        e: key.exponent().big_endian_without_leading_zero(),
    };
    components
        .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY)
        .map(PublicKey::Rsa)
        .map_err(|_| KeyRecordError::BadKey)
}

/// A public key ready to verify signatures.
#[derive(Clone)]
pub enum PublicKey {
    /// RSA key, parsed by aws-lc for PKCS#1 v1.5 with SHA-256 (1024 to 8192
    /// bits; the minimum size is checked before).
    Rsa(aws_lc_rs::signature::ParsedPublicKey),
    /// Raw Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PublicKey::Rsa(a), PublicKey::Rsa(b)) => a.as_ref() == b.as_ref(),
            (PublicKey::Ed25519(a), PublicKey::Ed25519(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKey::Rsa(k) => write!(f, "PublicKey::Rsa({} bytes SPKI)", k.as_ref().len()),
            PublicKey::Ed25519(_) => write!(f, "PublicKey::Ed25519"),
        }
    }
}

impl PublicKey {
    /// Verifies `signature` over `data` (the canonical header data). RSA is
    /// PKCS#1 v1.5 with SHA-256; Ed25519 signs the SHA-256 of `data`
    /// (RFC 8463 §3).
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature;
        match self {
            PublicKey::Rsa(key) => key.verify_sig(data, signature).is_ok(),
            PublicKey::Ed25519(raw) => {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(data);
                signature::UnparsedPublicKey::new(&signature::ED25519, raw)
                    .verify(&digest, signature)
                    .is_ok()
            }
        }
    }
}

/// A private signing key. `Debug` shows the type and size only.
pub enum SigningKey {
    /// RSA key pair of 2048 to 8192 bits (signs rsa-sha256 with aws-lc).
    Rsa(aws_lc_rs::rsa::KeyPair),
    /// RSA key of 1024 to 2047 bits, which aws-lc refuses to sign with; kept
    /// for admins migrating old OpenDKIM keys. Signed with the `rsa` crate,
    /// blinded (`sign_with_rng`).
    RsaLegacy(Box<rsa::RsaPrivateKey>),
    /// Ed25519 key pair (signs ed25519-sha256).
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::Rsa(k) => write!(f, "SigningKey::Rsa({} bits)", k.public_modulus_len() * 8),
            SigningKey::RsaLegacy(k) => {
                use rsa::traits::PublicKeyParts;
                write!(f, "SigningKey::Rsa({} bits)", k.size() * 8)
            }
            SigningKey::Ed25519(_) => write!(f, "SigningKey::Ed25519"),
        }
    }
}

impl SigningKey {
    /// Parses PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) or DER.
    pub fn parse(bytes: &[u8]) -> Option<SigningKey> {
        use rsa::pkcs8::der::pem;
        let (label, der) = match pem::decode_vec(bytes) {
            Ok((label, der)) => (Some(label.to_string()), der),
            Err(_) => (None, bytes.to_vec()),
        };
        let pkcs8 = || {
            aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
                .map(SigningKey::Rsa)
                .ok()
                .or_else(|| {
                    aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                        .map(SigningKey::Ed25519)
                        .ok()
                })
        };
        let pkcs1 = || {
            aws_lc_rs::rsa::KeyPair::from_der(&der)
                .map(SigningKey::Rsa)
                .ok()
        };
        let key = match label.as_deref() {
            Some("RSA PRIVATE KEY") => pkcs1(),
            Some("PRIVATE KEY") => pkcs8(),
            Some(_) => return None,
            None => pkcs8().or_else(pkcs1),
        };
        key.or_else(|| legacy_rsa(&der))
    }

    /// Builds an Ed25519 key from its 32-byte seed (RFC 8463 test vectors).
    pub fn ed25519_from_seed(seed: &[u8]) -> Option<SigningKey> {
        aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .ok()
            .map(SigningKey::Ed25519)
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> super::signature::Algorithm {
        match self {
            SigningKey::Rsa(_) | SigningKey::RsaLegacy(_) => super::signature::Algorithm::RsaSha256,
            SigningKey::Ed25519(_) => super::signature::Algorithm::Ed25519Sha256,
        }
    }

    /// Signs the canonical header data.
    pub fn sign(&self, data: &[u8]) -> Option<Vec<u8>> {
        match self {
            SigningKey::Rsa(k) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    data,
                    &mut sig,
                )
                .ok()?;
                Some(sig)
            }
            SigningKey::RsaLegacy(k) => {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(data);
                let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
                k.sign_with_rng(&mut rsa::rand_core::OsRng, scheme, &digest)
                    .ok()
            }
            SigningKey::Ed25519(k) => {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(data);
                Some(k.sign(&digest).as_ref().to_vec())
            }
        }
    }

    /// The public half as a DKIM `p=` value (SPKI for RSA, raw for Ed25519).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        match self {
            SigningKey::Rsa(k) => {
                use aws_lc_rs::encoding::AsDer;
                k.public_key()
                    .as_der()
                    .map(|d| d.as_ref().to_vec())
                    .unwrap_or_default()
            }
            SigningKey::RsaLegacy(k) => {
                use rsa::pkcs8::EncodePublicKey;
                k.to_public_key()
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }
            SigningKey::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }
}

/// An RSA key of 1024..2048 bits (PKCS#8 or PKCS#1 DER), for legacy keys.
fn legacy_rsa(der: &[u8]) -> Option<SigningKey> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_der(der))
        .ok()?;
    (1024..2048)
        .contains(&(key.size() * 8))
        .then(|| SigningKey::RsaLegacy(Box::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_record_variants() {
        let r = KeyRecord::parse(
            b"v=DKIM1; k=ed25519; t=y:s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=; x=unknown",
        )
        .unwrap();
        assert_eq!(r.key_type, KeyType::Ed25519);
        assert!(r.testing && r.strict_identity);
        assert!(r.verifier("ed25519", 1024).is_ok());
        assert_eq!(
            r.verifier("rsa", 1024),
            Err(KeyRecordError::TypeMismatch("ed25519".into()))
        );
    }

    #[test]
    fn rejects_bad_key_records() {
        for (input, want) in [
            (&b"v=DKIM1; p="[..], KeyRecordError::Revoked),
            (b"k=rsa; v=DKIM1; p=AA==", KeyRecordError::Version),
            (b"v=DKIM2; p=AA==", KeyRecordError::Version),
            (
                b"k=dsa; p=AA==",
                KeyRecordError::UnknownKeyType("dsa".into()),
            ),
            (b"h=sha1; p=AA==", KeyRecordError::HashNotAllowed),
            (b"s=tlsrpt; p=AA==", KeyRecordError::ServiceNotAllowed),
            (b"v=DKIM1; k=rsa", KeyRecordError::MissingKey),
            (b"p=!!!", KeyRecordError::BadKey),
        ] {
            assert_eq!(
                KeyRecord::parse(input),
                Err(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let ok = KeyRecord::parse(b"h=sha1:SHA256; s=email:*; p=AA  ==").unwrap();
        assert_eq!(ok.public_key, vec![0]);
        assert_eq!(ok.verifier("rsa", 1024), Err(KeyRecordError::BadKey));
    }

    #[test]
    fn debug_hides_private_key() {
        let key = SigningKey::ed25519_from_seed(&[1u8; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey::Ed25519");
    }
}
