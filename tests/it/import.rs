//! `authgate import opendkim`: the guides' opendkim.conf, opendmarc.conf,
//! KeyTable, SigningTable and TrustedHosts (tests/fixtures/opendkim/), with
//! their /etc paths rewritten into a temp dir, into a config that
//! `authgate config check` accepts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{authgate, fixtures};

/// Copies the guide files into `dir`, /etc/opendkim/ and /etc/opendmarc/
/// rewritten to `dir`, then `changes` (file name, new contents, also
/// rewritten); puts a mode 0600 key where the KeyTable points.
fn guide(dir: &Path, changes: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let root = format!("{}/", dir.display());
    let rewrite = |s: &str| {
        s.replace("/etc/opendkim/", &root)
            .replace("/etc/opendmarc/", &root)
    };
    for entry in std::fs::read_dir(fixtures().join("opendkim")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(dir.join(path.file_name().unwrap()), rewrite(&text)).unwrap();
    }
    for (name, text) in changes {
        std::fs::write(dir.join(name), rewrite(text)).unwrap();
    }
    let key = dir.join("keys/example.com/mail.private");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join("dkim/rsa2048.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir.join("opendkim.conf"), dir.join("opendmarc.conf"))
}

/// Runs the import; returns (exit code, stdout, stderr).
fn import(args: &[&Path]) -> (i32, String, String) {
    let out = authgate()
        .args(["import", "opendkim"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `authgate config check` on `toml` must pass.
fn config_check(dir: &Path, toml: &str) {
    let path = dir.join("authgate.toml");
    std::fs::write(&path, toml).unwrap();
    authgate()
        .args(["config", "check", "--config"])
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn guide_files_import_into_a_config_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (dkim, dmarc) = guide(dir.path(), &[]);
    let (code, toml, err) = import(&[&dkim, Path::new("--opendmarc"), &dmarc]);
    assert_eq!(code, 0, "{err}\n{toml}");
    let key = dir.path().join("keys/example.com/mail.private");
    for want in [
        "authserv_id = \"mail.example.com\"".to_string(),
        "canonicalization = \"relaxed/simple\"".into(),
        format!(
            "[[dkim.keys]]\nname = \"mail._domainkey.example.com\"\ndomain = \"example.com\"\nselector = \"mail\"\nfile = \"{}\"",
            key.display()
        ),
        "[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"mail._domainkey.example.com\"]".into(),
        "internal_hosts = [\"127.0.0.1/32\", \"192.168.0.0/24\", \"::1/128\"]".into(),
        "trusted_authserv_ids = [\"mail.example.com\"]".into(),
        "reject_action = \"reject\"".into(),
        "require_valid_from = true".into(),
        "listen = \"inet:8891@localhost\"".into(),
        "role = \"auto\"".into(),
        "line 2: localhost\n#   not mapped: a host name".into(),
        "line 4: *.example.com\n#   not mapped: a host name pattern".into(),
        "# OpenDMARC SoftwareHeader true\n#   not mapped".into(),
    ] {
        assert!(toml.contains(&want), "missing {want}\n{toml}");
    }
    assert!(err.contains("0 problems"), "{err}");
    config_check(dir.path(), &toml);

    // The in-place alternative is offered as comments, and checks too.
    let root = dir.path().display();
    let in_place: Vec<&str> = toml
        .lines()
        .skip_while(|l| !l.starts_with("# Or read OpenDKIM's files in place"))
        .skip(1)
        .map_while(|l| l.strip_prefix("#   "))
        .collect();
    assert_eq!(
        in_place,
        [
            "[dkim]".to_string(),
            format!("opendkim_key_table = \"refile:{root}/KeyTable\""),
            format!("opendkim_signing_table = \"refile:{root}/SigningTable\""),
            format!("opendkim_trusted_hosts = \"refile:{root}/TrustedHosts\""),
        ],
        "{toml}"
    );
    config_check(
        dir.path(),
        &format!(
            "authserv_id = \"mail.example.com\"\n{}\n",
            in_place.join("\n")
        ),
    );
}

#[test]
fn unix_socket_and_opendkim_alone() {
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(fixtures().join("opendkim/opendkim.conf"))
        .unwrap()
        .replace(
            "inet:8891@localhost",
            "local:/var/spool/postfix/opendkim/opendkim.sock",
        );
    let (dkim, _) = guide(dir.path(), &[("opendkim.conf", &conf)]);
    let (code, toml, err) = import(&[&dkim]);
    assert_eq!(code, 0, "{err}");
    assert!(
        toml.contains("listen = \"local:/var/spool/postfix/opendkim/opendkim.sock\""),
        "{toml}"
    );
    assert!(!toml.contains("reject_action"), "{toml}");
    config_check(dir.path(), &toml);
}

#[test]
fn tables_with_comments_blank_lines_crlf_and_tabs() {
    let dir = tempfile::tempdir().unwrap();
    let (dkim, _) = guide(
        dir.path(),
        &[
            (
                "KeyTable",
                "# key table\r\n\r\nmail._domainkey.example.com\texample.com:mail:/etc/opendkim/keys/example.com/mail.private\r\n   \r\n",
            ),
            (
                "SigningTable",
                "# who signs\n\n*@example.com \t mail._domainkey.example.com   # main\n",
            ),
            (
                "TrustedHosts",
                "127.0.0.1\r\n\t\r\n# office\r\n10.1.0.0/16\r\n",
            ),
        ],
    );
    let (code, toml, err) = import(&[&dkim]);
    assert_eq!(code, 0, "{err}");
    assert!(
        toml.contains("internal_hosts = [\"127.0.0.1/32\", \"10.1.0.0/16\"]"),
        "{toml}"
    );
    assert!(toml.contains("selector = \"mail\"\nfile = "), "{toml}");
    config_check(dir.path(), &toml);
}

#[test]
fn bad_key_table_line_names_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (dkim, _) = guide(
        dir.path(),
        &[(
            "KeyTable",
            "# keys\n\nmail._domainkey.example.com example.com/mail/keyfile\n",
        )],
    );
    let (code, toml, err) = import(&[&dkim]);
    assert_eq!(code, 1, "{err}");
    let file = dir.path().join("KeyTable");
    assert!(
        err.contains(&format!("KeyTable line 3: expected NAME DOMAIN:SELECTOR:KEYPATH, found \"mail._domainkey.example.com example.com/mail/keyfile\" ({})", file.display())),
        "{err}"
    );
    assert!(toml.contains("#   NOT MAPPED: KeyTable line 3"), "{toml}");
    assert!(
        err.contains("names key \"mail._domainkey.example.com\", which the KeyTable does not have"),
        "{err}"
    );
}

#[test]
fn host_list_of_names_only_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (dkim, _) = guide(
        dir.path(),
        &[("TrustedHosts", "localhost\n*.example.com\n")],
    );
    let (code, _, err) = import(&[&dkim]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no entry is an address or CIDR"), "{err}");
}

#[test]
fn missing_table_exits_1_and_missing_conf_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let (dkim, _) = guide(dir.path(), &[]);
    std::fs::remove_file(dir.path().join("SigningTable")).unwrap();
    let (code, _, err) = import(&[&dkim]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read SigningTable"), "{err}");

    let (code, _, err) = import(&[&dir.path().join("nope.conf")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read") && err.contains("nope.conf"),
        "{err}"
    );
}

#[test]
fn help_has_examples() {
    let out = authgate()
        .args(["import", "opendkim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("--opendmarc") && help.contains("Examples:"),
        "{help}"
    );
    assert!(help.contains("/etc/opendkim.conf"), "{help}");
}
