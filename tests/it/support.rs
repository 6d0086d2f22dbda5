//! Shared helpers for the integration tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The repository's fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A command running the authgate binary under test.
pub fn authgate() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("authgate").expect("authgate binary")
}

/// Copies a fixture key into `dir` with mode 0600 (git does not keep modes).
pub fn private_key(dir: &Path, fixture: &str) -> PathBuf {
    let dest = dir.join(Path::new(fixture).file_name().expect("file name"));
    std::fs::copy(fixtures().join(fixture), &dest).expect("copy key");
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    dest
}

/// Writes a zone file publishing `key`'s public half at `selector._domainkey.domain`.
pub fn zone_for_key(dir: &Path, key: &Path, selector: &str, domain: &str) -> PathBuf {
    let bytes = std::fs::read(key).expect("read key");
    let sk = authgate::dkim::key::SigningKey::parse(&bytes).expect("key parses");
    let p = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sk.public_key_bytes(),
    );
    let k = match sk.algorithm() {
        authgate::dkim::signature::Algorithm::Ed25519Sha256 => "ed25519",
        _ => "rsa",
    };
    let value = format!("v=DKIM1; k={k}; p={p}");
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    let path = dir.join(format!("{selector}.{domain}.zone"));
    let line = format!(
        "{selector}._domainkey.{domain}. 300 IN TXT ( {} )\n",
        strings.join(" ")
    );
    let mut existing = std::fs::read_to_string(&path).unwrap_or_default();
    existing.push_str(&line);
    std::fs::write(&path, existing).expect("write zone");
    path
}
