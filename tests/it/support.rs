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

/// A private PostgreSQL server for one test: its own data directory and
/// port on 127.0.0.1, run as the `postgres` user (the server refuses
/// root), trust authentication for the `authgate` role. `scripts/test`
/// installs the packages; nothing here skips when they are missing.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port.
    pub port: u16,
}

impl PgServer {
    /// initdb + start; panics (a test failure) when PostgreSQL is missing.
    pub fn start() -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/test installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("a PostgreSQL bin directory");
        let dir = tempfile::Builder::new()
            .prefix("authgate-pg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let s = PgServer { dir, bin, port };
        s.as_postgres(&[
            "initdb",
            "-D",
            &s.data(),
            "-A",
            "trust",
            "-U",
            "authgate",
            "--no-sync",
        ]);
        s.resume();
        s
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, args: &[&str]) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The store URL for authgate.
    pub fn url(&self) -> String {
        format!("postgres://authgate@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (immediate: like a crash or a network loss).
    pub fn pause(&self) {
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }

    /// Starts it (again).
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-l",
            &log,
            "-o",
            &opts,
            "-w",
            "start",
        ]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}
