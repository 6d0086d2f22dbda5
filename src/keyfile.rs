//! DKIM private key files: reading one for signing (with the permission
//! check) and writing a freshly generated one (`authgate keygen`).
//!
//! Owns: the file system side of keys: refusing a key file readable or
//! writable by group or others unless `allow_insecure`, creating a new key
//! file with mode 0600 in one step and never overwriting one, and the error
//! messages that tell the admin what to do. It sits above the pure cores
//! (`dkim`, `keygen`), which only parse and generate bytes, and is used by
//! `config` and `cli`. Must not: parse or generate keys itself, or log or
//! `Debug`-print private key material.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::dkim::key::SigningKey;
use crate::keygen::{DnsRecord, KeygenError, KeygenOptions, PrivateKey, key_file_name};

/// Why a private key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {}", io_reason(.error))]
    Io {
        /// The file.
        path: String,
        /// The cause (in the text, so not a `source()`: said once).
        error: std::io::Error,
    },
    /// The file is readable or writable by group or others.
    /// The text gives the fix (`chmod 600`); the caller adds its own way
    /// around the check (a setting, a flag).
    #[error(
        "key file {path} has mode {mode:04o}, readable by group or others; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a supported private key.
    #[error("key file {0} is not an RSA or Ed25519 private key (PKCS#1 or PKCS#8, PEM or DER)")]
    Format(String),
}

/// The OS's reason without Rust's ` (os error N)` suffix: "No such file or
/// directory" is what the admin acts on; the number only repeats it.
pub fn io_reason(e: &std::io::Error) -> String {
    without_errno(&e.to_string()).to_string()
}

/// `text` without a trailing ` (os error N)`.
pub fn without_errno(text: &str) -> &str {
    let trimmed = text.trim_end();
    match trimmed.rfind(" (os error ") {
        Some(i) if trimmed.ends_with(')') => &trimmed[..i],
        _ => trimmed,
    }
}

/// Reads a key file, refusing group/other-accessible files unless allowed.
pub fn load_signing_key(path: &Path, allow_insecure: bool) -> Result<SigningKey, KeyFileError> {
    let shown = path.display().to_string();
    let io = |error| KeyFileError::Io {
        path: shown.clone(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && !allow_insecure {
        return Err(KeyFileError::Permissions { path: shown, mode });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    SigningKey::parse(&bytes).ok_or(KeyFileError::Format(shown))
}

/// Why a new key could not be generated and written.
#[derive(Debug, thiserror::Error)]
pub enum KeyWriteError {
    /// Bad size or name, or the crypto library failed.
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// The key file already exists; it is never overwritten.
    #[error("{0} already exists; refusing to overwrite a key file (move it away first)")]
    Exists(PathBuf),
    /// Creating or writing the key file failed.
    #[error("cannot write {}: {}", path.display(), io_reason(.error))]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error (in the text, so not a `source()`: said once).
        error: std::io::Error,
    },
}

/// Writes `pem` to a new file at `path` with mode 0600.
///
/// The file is created with `O_CREAT|O_EXCL` and the final mode in one step,
/// so it never exists with wider permissions and an existing file (or
/// symlink) is never overwritten. On a write error the partial file is removed.
pub fn write_private_key(path: &Path, pem: &str) -> Result<(), KeyWriteError> {
    let io = |error| KeyWriteError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyWriteError::Exists(path.to_owned()),
            _ => io(e),
        })?;
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Best effort: the error we report is the write error.
        let _ = std::fs::remove_file(path);
        return Err(io(e));
    }
    Ok(())
}

/// Result of [`keygen`]: where the key went and what to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenOutput {
    /// The private key file that was written (mode 0600).
    pub key_path: PathBuf,
    /// The key record to publish in DNS.
    pub record: DnsRecord,
}

/// Generates a key, writes it to `<out_dir>/<selector>.<domain>.key` (mode
/// 0600, never overwriting) and returns the file path and the DNS record.
pub fn keygen(opts: &KeygenOptions, out_dir: &Path) -> Result<KeygenOutput, KeyWriteError> {
    let key_path = out_dir.join(key_file_name(&opts.selector, &opts.domain)?);
    if key_path.exists() {
        // Checked again atomically by create_new; this just avoids a slow RSA
        // generation that would be thrown away.
        return Err(KeyWriteError::Exists(key_path));
    }
    let key = PrivateKey::generate(opts.algorithm)?;
    let record = DnsRecord::new(opts, key.public_key())?;
    write_private_key(&key_path, key.pem())?;
    Ok(KeygenOutput { key_path, record })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::KeyAlgorithm;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};

    fn opts(algorithm: KeyAlgorithm) -> KeygenOptions {
        KeygenOptions {
            domain: "example.com".into(),
            selector: "sel1".into(),
            algorithm,
            testing: false,
        }
    }

    /// Parses `v=DKIM1; k=..; p=..` into (k, p bytes, has t=y).
    fn parse_record(value: &str) -> (String, Vec<u8>, bool) {
        let mut k = String::new();
        let mut p = Vec::new();
        let mut t = false;
        for tag in value.split(';') {
            let (n, v) = tag.trim().split_once('=').expect("tag=value");
            match n {
                "k" => k = v.to_owned(),
                "p" => p = BASE64.decode(v).expect("base64"),
                "t" => t = v == "y",
                _ => {}
            }
        }
        (k, p, t)
    }

    #[test]
    fn rsa_key_loads_back_and_matches_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = keygen(&opts(KeyAlgorithm::Rsa { bits: 1024 }), dir.path()).expect("keygen");
        let pem = std::fs::read_to_string(&out.key_path).expect("read");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("pkcs8");
        let (k, p, t) = parse_record(&out.record.value);
        assert_eq!((k.as_str(), t), ("rsa", false));
        let public = rsa::RsaPublicKey::from_public_key_der(&p).expect("spki");
        assert_eq!(public, key.to_public_key());
        assert_eq!(out.record.public_key, BASE64.encode(&p));
    }

    #[test]
    fn ed25519_key_loads_back_and_matches_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = opts(KeyAlgorithm::Ed25519);
        o.testing = true;
        let out = keygen(&o, dir.path()).expect("keygen");
        let pem = std::fs::read(&out.key_path).expect("read");
        let (label, der) = rsa::pkcs8::der::pem::decode_vec(&pem).expect("pem");
        assert_eq!(label, "PRIVATE KEY");
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).expect("pkcs8");
        let (k, p, t) = parse_record(&out.record.value);
        assert_eq!((k.as_str(), t), ("ed25519", true));
        assert_eq!(p.len(), 32);
        assert_eq!(p, pair.public_key().as_ref());
    }

    #[test]
    fn key_file_is_mode_0600_and_named_selector_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = keygen(&opts(KeyAlgorithm::Ed25519), dir.path()).expect("keygen");
        assert_eq!(out.key_path, dir.path().join("sel1.example.com.key"));
        let mode = std::fs::metadata(&out.key_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_to_overwrite_existing_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sel1.example.com.key");
        std::fs::write(&path, "precious").expect("write");
        let err = keygen(&opts(KeyAlgorithm::Ed25519), dir.path()).expect_err("must refuse");
        assert!(matches!(err, KeyWriteError::Exists(_)), "{err}");
        let err = write_private_key(&path, "new").expect_err("must refuse");
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
    }

    #[test]
    fn refuses_world_readable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&path, false).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(matches!(
            load_signing_key(&path, true),
            Err(KeyFileError::Format(_))
        ));
    }
}
