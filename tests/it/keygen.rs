//! `authgate::keygen` output checked by the independent implementations: a key
//! it writes signs with each oracle, and the BIND line it renders, used as the
//! zone file, lets every oracle verify the result.

use super::oracles::{Alg, ORACLES, fixture_message, oracle_sign, oracle_verify};
use authgate::keyfile::keygen;
use authgate::keygen::{KeyAlgorithm, KeygenOptions};

fn generated_key_interoperates(algorithm: KeyAlgorithm, alg: Alg) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = KeygenOptions {
        domain: "example.net".into(),
        selector: "gen2026".into(),
        algorithm,
        testing: false,
    };
    let out = keygen(&opts, dir.path()).expect("keygen");
    let zone = dir.path().join("gen.zone");
    std::fs::write(&zone, format!("$TTL 60\n{}\n", out.record.zone_line)).expect("zone");
    let msg = fixture_message("basic.eml");
    for signer in ORACLES {
        let signed = oracle_sign(
            signer,
            &msg,
            "example.net",
            "gen2026",
            &out.key_path,
            alg,
            "relaxed/relaxed",
        );
        for verifier in ORACLES {
            let got = oracle_verify(verifier, &signed, &zone);
            assert_eq!(got, ["pass"], "{signer:?} signs, {verifier:?} verifies");
        }
    }
}

#[test]
fn generated_rsa_key_and_zone_line_work_with_every_oracle() {
    // 2048, not 1024: mail-auth's aws-lc backend refuses to sign with smaller keys.
    generated_key_interoperates(KeyAlgorithm::Rsa { bits: 2048 }, Alg::RsaSha256);
}

#[test]
fn generated_ed25519_key_and_zone_line_work_with_every_oracle() {
    generated_key_interoperates(KeyAlgorithm::Ed25519, Alg::Ed25519Sha256);
}
