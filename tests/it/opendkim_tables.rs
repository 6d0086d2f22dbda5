//! OpenDKIM's KeyTable, SigningTable and TrustedHosts read in place
//! (`dkim.opendkim_key_table` and friends): the guides' files, signing
//! with the keys they name (checked by dkimpy), OpenDKIM's lookup order,
//! bad lines named by file and line, SIGHUP, and key files owned by
//! another user (the `opendkim` user's keys).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::oracles::{Oracle, dkim_fixtures, oracle_verify};
use crate::serve::{Daemon, Sink, SinkMode, hello, start_data, write_config};
use crate::support::authgate;

/// The keys.zone fixture publishes these selectors for example.com/org.
const ZONE_SELECTORS: [(&str, &str); 2] = [("rsa2048", "rsa2048.pem"), ("ed25519", "ed25519.pem")];

/// An OpenDKIM layout under `dir`: keys/example.com/SELECTOR.private (mode
/// 0600), KeyTable, SigningTable and TrustedHosts as the DigitalOcean and
/// Linuxbabe guides write them (with `refile:` for the SigningTable), plus
/// dual signing (two lines for one pattern) and the guides' comments.
fn opendkim_dir(dir: &Path) -> PathBuf {
    let keys = dir.join("keys/example.com");
    std::fs::create_dir_all(&keys).unwrap();
    for (selector, fixture) in ZONE_SELECTORS {
        let key = keys.join(format!("{selector}.private"));
        std::fs::copy(dkim_fixtures().join(fixture), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let d = dir.display();
    write(
        dir,
        "KeyTable",
        &format!(
            "# KeyTable: NAME DOMAIN:SELECTOR:KEYPATH\r\n\r\n\
             rsa2048._domainkey.example.com example.com:rsa2048:{d}/keys/example.com/rsa2048.private\r\n\
             ed25519._domainkey.example.com\texample.com:ed25519:{d}/keys/example.com/ed25519.private\r\n\
             \t\r\n"
        ),
    );
    write(
        dir,
        "SigningTable",
        "# Signing table\n\
         *@example.com    rsa2048._domainkey.example.com\n\
         *@example.com\ted25519._domainkey.example.com   # dual signing\n\
         \n\
         *@*.example.com  rsa2048._domainkey.example.com\n",
    );
    write(
        dir,
        "TrustedHosts",
        "127.0.0.1\nlocalhost\n10.0.0.0/8\n*.example.com\n",
    );
    dir.to_path_buf()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// authgate.toml naming the tables in `od` (`refile:` for the SigningTable
/// unless `plain`), then `extra`.
fn in_place_config(dir: &Path, od: &Path, plain: bool, extra: &str) -> PathBuf {
    let refile = if plain { "" } else { "refile:" };
    write(
        dir,
        "authgate.toml",
        &format!(
            "authserv_id = \"mx.test\"\n{extra}\n[dkim]\n\
             opendkim_key_table = \"refile:{od}/KeyTable\"\n\
             opendkim_signing_table = \"{refile}{od}/SigningTable\"\n\
             opendkim_trusted_hosts = \"{od}/TrustedHosts\"\n",
            od = od.display()
        ),
    )
}

const MSG: &str = "From: Joe <joe@example.com>\r\nTo: ann@example.org\r\nSubject: tables\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <t1@example.com>\r\n\r\nHello from the tables.\r\n";

fn pipe_sign(config: &Path, msg: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authgate"));
    cmd.args(["pipe", "--sign", "--config"]).arg(config);
    run(cmd, msg)
}

fn run(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `(d, s, a)` of each DKIM-Signature in `signed`, top to bottom.
fn signatures(signed: &[u8]) -> Vec<(String, String, String)> {
    let text = String::from_utf8_lossy(signed)
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    text.lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .map(|l| {
            let tag = |t: &str| {
                l.split(';')
                    .map(str::trim)
                    .find_map(|x| x.strip_prefix(&format!("{t}=")))
                    .unwrap_or("")
                    .to_string()
            };
            (tag("d"), tag("s"), tag("a"))
        })
        .collect()
}

#[test]
fn guide_tables_sign_in_place_and_dkimpy_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    let config = in_place_config(dir.path(), &od, false, "");
    let out = pipe_sign(&config, MSG);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        signatures(&out.stdout),
        [
            ("example.com".into(), "rsa2048".into(), "rsa-sha256".into()),
            (
                "example.com".into(),
                "ed25519".into(),
                "ed25519-sha256".into()
            ),
        ]
    );
    let zone = dkim_fixtures().join("keys.zone");
    assert_eq!(
        oracle_verify(Oracle::Dkimpy, &out.stdout, &zone),
        ["pass", "pass"]
    );

    // *@*.example.com: the second pattern, RSA only.
    let sub = MSG.replace("joe@example.com", "joe@lists.example.com");
    let out = pipe_sign(&config, &sub);
    assert_eq!(
        signatures(&out.stdout),
        [("example.com".into(), "rsa2048".into(), "rsa-sha256".into())]
    );
    assert_eq!(oracle_verify(Oracle::Dkimpy, &out.stdout, &zone), ["pass"]);

    // Not in the table: no signature.
    let other = MSG.replace("joe@example.com", "joe@example.net");
    assert!(signatures(&pipe_sign(&config, &other).stdout).is_empty());

    // config check passes, counts the rows and says which hosts it skipped.
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(&config)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("2 signing table rows, 3 key uses"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for want in [
        format!(
            "{}/TrustedHosts line 2: \"localhost\" skipped: a host name",
            od.display()
        ),
        format!(
            "{}/TrustedHosts line 4: \"*.example.com\" skipped: a host name pattern",
            od.display()
        ),
    ] {
        assert!(stderr.contains(&want), "{want}\n{stderr}");
    }
}

#[test]
fn toml_rows_win_over_the_signing_table_and_may_use_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    // The TOML's row comes first and names a KeyTable key; the TOML's key
    // of the same name as a KeyTable key replaces it.
    let extra = format!(
        "[[dkim.keys]]\nname = \"rsa2048._domainkey.example.com\"\ndomain = \"example.org\"\n\
         selector = \"rsa2048\"\nfile = \"{}/keys/example.com/rsa2048.private\"\n\
         [[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"ed25519._domainkey.example.com\"]\n",
        od.display()
    );
    let config = in_place_config(dir.path(), &od, false, &extra);
    let out = pipe_sign(&config, MSG);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        signatures(&out.stdout),
        [(
            "example.com".into(),
            "ed25519".into(),
            "ed25519-sha256".into()
        )]
    );
    let sub = MSG.replace("joe@example.com", "joe@lists.example.com");
    assert_eq!(
        signatures(&pipe_sign(&config, &sub).stdout),
        [("example.org".into(), "rsa2048".into(), "rsa-sha256".into())]
    );
}

#[test]
fn plain_signing_table_uses_opendkims_lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    // `*` first in the file, yet OpenDKIM tries the address, then the
    // domain, then .parent, then *; `%` signs as the author's domain.
    let d = od.display();
    write(
        &od,
        "KeyTable",
        &format!(
            "any %:rsa2048:{d}/keys/example.com/rsa2048.private\n\
             ed example.com:ed25519:{d}/keys/example.com/ed25519.private\n\
             joe example.com:joe:{d}/keys/example.com/rsa2048.private\n"
        ),
    );
    write(
        &od,
        "SigningTable",
        "*\tany\n.example.com ed\nexample.com ed\njoe@example.com joe\n",
    );
    let config = in_place_config(dir.path(), &od, true, "");
    for (from, want) in [
        ("joe@example.com", ("example.com", "joe")),
        ("ann@example.com", ("example.com", "ed25519")),
        ("ann@a.b.example.com", ("example.com", "ed25519")),
        ("ann@example.org", ("example.org", "rsa2048")),
    ] {
        let out = pipe_sign(&config, &MSG.replace("joe@example.com", from));
        let got = signatures(&out.stdout);
        assert_eq!(
            got.len(),
            1,
            "{from}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!((got[0].0.as_str(), got[0].1.as_str()), want, "{from}");
    }
}

/// stderr of a failing `config check`.
fn check_fails(config: &Path) -> String {
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(config)
        .assert()
        .failure();
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

#[test]
fn bad_table_lines_are_named_by_file_and_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    let config = in_place_config(dir.path(), &od, false, "");
    let d = od.display();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "KeyTable",
            "# keys\r\n\r\nmail._domainkey.example.com example.com/mail/keyfile\r\n".into(),
            format!(
                "authgate: {d}/KeyTable line 3: expected NAME DOMAIN:SELECTOR:KEYPATH, \
                 found \"mail._domainkey.example.com example.com/mail/keyfile\"\n"
            ),
        ),
        (
            "KeyTable",
            format!(
                "a example.com:a:{d}/keys/example.com/rsa2048.private\nb example.com:b:{d}/nope.private\n"
            ),
            format!(
                "authgate: {d}/KeyTable line 2: cannot read key file {d}/nope.private: \
                 No such file or directory\n"
            ),
        ),
        (
            "SigningTable",
            "*@example.com rsa2048._domainkey.example.com\n*@example.org\tmissing.key\n".into(),
            format!(
                "authgate: {d}/SigningTable line 2: key name \"missing.key\" is neither in the \
                 KeyTable (dkim.opendkim_key_table) nor a [[dkim.keys]] name\n"
            ),
        ),
        (
            "SigningTable",
            "lonely\n\n*@x y z w\n".into(),
            format!(
                "authgate: {d}/SigningTable line 1: expected PATTERN KEYNAME [SIGNER], found \"lonely\"\n\
                 {d}/SigningTable line 3: expected PATTERN KEYNAME [SIGNER], found \"*@x y z w\"\n"
            ),
        ),
        (
            "TrustedHosts",
            "10.0.0.0/8\n!printer.example.com\n".into(),
            format!(
                "authgate: {d}/TrustedHosts line 2: \"!printer.example.com\": a negated host \
                 name cannot be honoured (authgate matches addresses, not names, and would \
                 trust that host): write its address as !ADDRESS\n"
            ),
        ),
        (
            "TrustedHosts",
            "localhost\n*.example.com\n".into(),
            format!(
                "authgate: {} line 6: dkim.opendkim_trusted_hosts: {d}/TrustedHosts: no entry \
                 is an address or CIDR, so no host would be trusted (authgate trusts \
                 addresses, not host names)\n",
                config.display()
            ),
        ),
    ];
    for (file, text, want) in cases {
        let good = std::fs::read_to_string(od.join(file)).unwrap();
        write(&od, file, &text);
        let err = check_fails(&config);
        assert_eq!(err, want);
        assert!(!err.contains("os error"), "{err}");
        write(&od, file, &good);
    }
    // A missing table: the setting and its line in authgate.toml.
    std::fs::remove_file(od.join("SigningTable")).unwrap();
    assert_eq!(
        check_fails(&config),
        format!(
            "authgate: {} line 5: dkim.opendkim_signing_table: cannot read {d}/SigningTable: \
             No such file or directory\n",
            config.display()
        )
    );
}

#[test]
fn a_group_readable_key_in_the_key_table_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    let key = od.join("keys/example.com/ed25519.private");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let config = in_place_config(dir.path(), &od, false, "");
    assert_eq!(
        check_fails(&config),
        format!(
            "authgate: {}/KeyTable line 4: key file {k} has mode 0640, readable by group or \
             others; run `chmod 600 {k}` (or set dkim.sign.allow_insecure_key_permissions = true)\n",
            od.display(),
            k = key.display()
        )
    );
}

/// The uid of this process (from /proc: no libc in the tests).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// OpenDKIM's keys are mode 0600 and owned by `opendkim`: authgate running
/// as that user (systemd `User=opendkim`) signs with them; only the mode
/// is checked, never the owner. Here the owner is a throwaway uid (65534)
/// and authgate runs as it; as a third uid the key cannot be read and the
/// error names the KeyTable line.
#[test]
fn keys_owned_by_another_user_sign_when_authgate_runs_as_that_user() {
    if euid() != 0 {
        eprintln!("skipped: needs root to run authgate as another uid (CI runs as root)");
        return;
    }
    const OWNER: u32 = 65534;
    const STRANGER: u32 = 65533;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    let keys = od.join("keys");
    for p in [
        keys.clone(),
        keys.join("example.com"),
        keys.join("example.com/rsa2048.private"),
        keys.join("example.com/ed25519.private"),
    ] {
        std::os::unix::fs::chown(&p, Some(OWNER), Some(OWNER)).unwrap();
    }
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = in_place_config(dir.path(), &od, false, "");
    let as_uid = |uid: u32| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_authgate"));
        cmd.args(["pipe", "--sign", "--config"])
            .arg(&config)
            .uid(uid)
            .gid(uid);
        run(cmd, MSG)
    };
    let out = as_uid(OWNER);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zone = dkim_fixtures().join("keys.zone");
    assert_eq!(
        oracle_verify(Oracle::Dkimpy, &out.stdout, &zone),
        ["pass", "pass"]
    );

    let out = as_uid(STRANGER);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}/KeyTable line 3: cannot read key file {}/example.com/rsa2048.private: Permission denied",
            od.display(),
            keys.display()
        )),
        "{err}"
    );
}

/// A SIGHUP picks up a changed SigningTable (and the TrustedHosts file
/// decides who is signed); a bad line keeps the running tables.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_changed_signing_table_and_keeps_it_on_a_bad_line() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    write(
        &od,
        "SigningTable",
        "*@example.com rsa2048._domainkey.example.com\n",
    );
    let config = dir.path().join("authgate.toml");
    let tables = format!(
        "[dkim]\nopendkim_key_table = \"{od}/KeyTable\"\n\
         opendkim_signing_table = \"refile:{od}/SigningTable\"\n\
         opendkim_trusted_hosts = \"refile:{od}/TrustedHosts\"\n",
        od = od.display()
    );
    write_config(&config, "mx.test", sink.addr, &tables);
    let d = Daemon::start(&config, dir.path()).await;

    // 10.1.2.3 is internal through TrustedHosts' 10.0.0.0/8.
    let send = |n: usize| async move {
        let mut c = hello(d.addr, "EHLO").await;
        c.send("XFORWARD ADDR=10.1.2.3\r\n").await;
        c.expect(250).await;
        start_data(&mut c, "joe@example.com").await;
        c.send(&format!(
            "{}.\r\nQUIT\r\n",
            MSG.replace("t1@", &format!("t{n}@"))
        ))
        .await;
        c.expect(250).await;
    };
    send(1).await;
    write(
        &od,
        "SigningTable",
        "# now Ed25519\r\n*@example.com\ted25519._domainkey.example.com\r\n",
    );
    d.signal("-HUP");
    d.wait_log("configuration and keys reloaded").await;
    send(2).await;
    write(&od, "SigningTable", "*@example.com\n");
    d.signal("-HUP");
    d.wait_log("reload refused").await;
    send(3).await;

    let signed: Vec<Vec<(String, String, String)>> = sink
        .transactions()
        .iter()
        .map(|t| signatures(&t.data))
        .collect();
    let rsa = (
        "example.com".to_string(),
        "rsa2048".to_string(),
        "rsa-sha256".to_string(),
    );
    let ed = (
        "example.com".to_string(),
        "ed25519".to_string(),
        "ed25519-sha256".to_string(),
    );
    assert_eq!(signed, [vec![rsa], vec![ed.clone()], vec![ed]]);
    let zone = dkim_fixtures().join("keys.zone");
    let data = sink.transactions()[1].data.clone();
    assert_eq!(oracle_verify(Oracle::Dkimpy, &data, &zone), ["pass"]);
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{}/SigningTable line 1: expected PATTERN KEYNAME [SIGNER], found \"*@example.com\"",
            od.display()
        )),
        "the refusal names the line:\n{log}"
    );
}

/// `key check` checks the KeyTable's keys too, as keys the SigningTable uses.
#[test]
fn key_check_covers_the_key_tables_keys() {
    let dir = tempfile::tempdir().unwrap();
    let od = opendkim_dir(&dir.path().join("opendkim"));
    let config = in_place_config(dir.path(), &od, false, "");
    let out = authgate()
        .args(["key", "check", "--config"])
        .arg(&config)
        .arg("--dns-zone")
        .arg(dkim_fixtures().join("keys.zone"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "rsa2048._domainkey.example.com",
        "ed25519._domainkey.example.com",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }
    assert!(
        !stdout.contains("is not used by the signing table"),
        "{stdout}"
    );
}
