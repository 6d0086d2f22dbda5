//! What an admin reads when the configuration is wrong: one test per
//! message, run through the binary. Each message is said once, names the
//! key as written (no figment `default.` profile), gives the file and line
//! where they are known and suggests the key that was probably meant.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{authgate, private_key};

/// Writes `text` as `c.toml` in `dir`.
fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// stderr of `authgate config check --config PATH`, which must fail.
fn check(path: &Path) -> String {
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(path)
        .assert()
        .failure();
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

/// What every message must be: one line (plus a caret for syntax errors),
/// without figment's profile or Rust's errno suffix.
fn assert_clean(err: &str) {
    assert!(!err.contains("default."), "{err}");
    assert!(!err.contains("os error"), "{err}");
    assert_eq!(err.matches("authgate:").count(), 1, "{err}");
}

fn key_config(dir: &Path, key: &Path) -> PathBuf {
    config(
        dir,
        &format!(
            "authserv_id = \"mx.test\"\n\n[[dkim.keys]]\nname = \"k\"\ndomain = \"example.com\"\n\
             selector = \"s\"\nfile = \"{}\"\n\n[[dkim.signing_table]]\npattern = \"*\"\nkeys = [\"k\"]\n",
            key.display()
        ),
    )
}

#[test]
fn unknown_key_in_a_table_names_key_line_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[server]\nthreads = 1\nmax_sesions = 5\n");
    let err = check(&path);
    assert_eq!(
        err,
        format!(
            "authgate: {} line 3: unknown key `server.max_sesions`; did you mean `max_sessions`?\n",
            path.display()
        )
    );
    assert_clean(&err);
}

#[test]
fn unknown_top_level_key_suggests_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "authserv_idd = \"x\"\n");
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 1: unknown key `authserv_idd`; did you mean `authserv_id`?\n",
            path.display()
        )
    );
}

#[test]
fn unknown_key_in_a_nested_table_suggests_the_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "[dkim.verify]\nmax_signatures = 3\n\n[dkim.sign]\ncanonicalisation = \"relaxed\"\n",
    );
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 5: unknown key `dkim.sign.canonicalisation`; \
             did you mean `canonicalization`?\n",
            path.display()
        )
    );
}

#[test]
fn unknown_key_in_an_array_of_tables_names_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "[[dkim.keys]]\nname = \"a\"\ndomain = \"x.org\"\nselector = \"s\"\nfile = \"k\"\n\n\
         [[dkim.keys]]\nname = \"b\"\ndomain = \"x.org\"\nselectr = \"t\"\nfile = \"k\"\n",
    );
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 10: unknown key `dkim.keys[1].selectr`; did you mean `selector`?\n",
            path.display()
        )
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_valid_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[server]\nlisten = \"127.0.0.1:25\"\n");
    let err = check(&path);
    assert!(
        err.starts_with(&format!(
            "authgate: {} line 2: unknown key `server.listen`; valid keys under `server`: \
             `threads`, `max_sessions`, ",
            path.display()
        )),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "{err}");
    assert_clean(&err);
}

#[test]
fn wrong_type_names_key_line_and_the_type_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[server]\nmax_sessions = \"five\"\n");
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 2: `server.max_sessions` is the string \"five\", \
             expected a whole number (0 or more)\n",
            path.display()
        )
    );
    let path = config(dir.path(), "never_block = \"yes\"\n");
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 1: `never_block` is the string \"yes\", expected true or false\n",
            path.display()
        )
    );
}

#[test]
fn missing_key_in_a_table_points_at_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "authserv_id = \"x\"\n[[dkim.keys]]\nname = \"k\"\ndomain = \"x.org\"\nselector = \"s\"\n",
    );
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 2: `dkim.keys[0]` needs `file`\n",
            path.display()
        )
    );
}

#[test]
fn syntax_errors_give_line_column_and_a_caret_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[server]\nhostname = \"mx\n");
    let err = check(&path);
    assert_eq!(
        err,
        format!(
            "authgate: {} line 2, column 15: TOML syntax error: invalid basic string\n    \
             hostname = \"mx\n                  ^\n",
            path.display()
        )
    );
    assert_clean(&err);
    let path = config(dir.path(), "authserv_id = \"x\"\n[server\nthreads = 1\n");
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 2, column 8: TOML syntax error: invalid table header; \
             expected `.`, `]`\n    [server\n           ^\n",
            path.display()
        )
    );
}

#[test]
fn unknown_value_lists_the_choices_and_suggests_a_near_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[dmarc]\nreject_action = \"bounce\"\n");
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 2: `dmarc.reject_action` cannot be \"bounce\": \
             expected one of `reject`, `quarantine`, `header`\n",
            path.display()
        )
    );
    let path = config(dir.path(), "[dmarc]\nreject_action = \"rejct\"\n");
    assert!(
        check(&path).ends_with("`header`; did you mean `reject`?\n"),
        "{}",
        check(&path)
    );
}

#[test]
fn missing_config_file_is_named_with_the_os_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    assert_eq!(
        check(&path),
        format!(
            "authgate: cannot read {}: No such file or directory\n",
            path.display()
        )
    );
}

#[test]
fn missing_key_file_is_named_once_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("missing.key");
    let path = key_config(dir.path(), &key);
    let err = check(&path);
    assert_eq!(
        err,
        format!(
            "authgate: {} line 7: dkim.keys[0].file: cannot read key file {}: \
             No such file or directory\n",
            path.display(),
            key.display()
        )
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert_clean(&err);
}

#[test]
fn group_readable_key_file_gives_the_chmod_fix() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = key_config(dir.path(), &key);
    assert_eq!(
        check(&path),
        format!(
            "authgate: {p} line 7: dkim.keys[0].file: key file {k} has mode 0644, readable by \
             group or others; run `chmod 600 {k}` (or set \
             dkim.sign.allow_insecure_key_permissions = true)\n",
            p = path.display(),
            k = key.display()
        )
    );
}

#[test]
fn key_file_that_is_not_a_key_says_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("notakey.key");
    std::fs::write(&key, "hello\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = key_config(dir.path(), &key);
    assert_eq!(
        check(&path),
        format!(
            "authgate: {} line 7: dkim.keys[0].file: key file {} is not an RSA or Ed25519 \
             private key (PKCS#1 or PKCS#8, PEM or DER)\n",
            path.display(),
            key.display()
        )
    );
}

#[test]
fn environment_typo_names_the_variable_and_the_one_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(&path)
        .env("AUTHGATE_SERVER__MAX_SESIONS", "5")
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(
        err,
        "authgate: environment variable AUTHGATE_SERVER__MAX_SESIONS: unknown key \
         `server.max_sesions`; did you mean AUTHGATE_SERVER__MAX_SESSIONS?\n"
    );
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(&path)
        .env("AUTHGATE_SERVER__MAX_SESSIONS", "five")
        .assert()
        .failure();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        "authgate: environment variable AUTHGATE_SERVER__MAX_SESSIONS: `server.max_sessions` \
         is the string \"five\", expected a whole number (0 or more)\n"
    );
}

#[test]
fn every_command_that_reads_the_config_says_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[server]\nmax_sesions = 5\n").unwrap();
    let key = dir.path().join("missing.key");
    let bad_key = key_config(dir.path(), &key);
    for path in [typo, bad_key] {
        let want = check(&path);
        for args in [
            &["serve", "--listen", "127.0.0.1:0"][..],
            &["milter", "--listen", "127.0.0.1:0"],
            &["pipe"],
            &["verify"],
        ] {
            let out = authgate()
                .args(args)
                .arg("--config")
                .arg(&path)
                .write_stdin("From: a@example.com\n\nx\n")
                .assert()
                .failure();
            assert_eq!(
                String::from_utf8_lossy(&out.get_output().stderr),
                want,
                "{args:?}"
            );
        }
    }
}

#[test]
fn sign_key_file_errors_say_the_os_reason_once_and_the_flag_fix() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("missing.key");
    let out = authgate()
        .args(["sign", "-d", "example.com", "-s", "s", "--key"])
        .arg(&key)
        .write_stdin("From: a@example.com\n\nx\n")
        .assert()
        .failure();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        format!(
            "authgate: cannot read key file {}: No such file or directory\n",
            key.display()
        )
    );
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = authgate()
        .args(["sign", "-d", "example.com", "-s", "s", "--key"])
        .arg(&key)
        .write_stdin("From: a@example.com\n\nx\n")
        .assert()
        .failure();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        format!(
            "authgate: key file {k} has mode 0644, readable by group or others; \
             run `chmod 600 {k}` (or pass --allow-insecure-key)\n",
            k = key.display()
        )
    );
}
