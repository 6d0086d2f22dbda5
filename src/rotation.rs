//! DKIM key rotation (`authgate key rotate`): a new key per domain under a
//! date-based selector, which signs only once its record is published, while
//! the replaced key's record stays published for an overlap.
//!
//! Owns: the rotation state of each rotated key (one TOML file per key name in
//! the state directory, `rotation/` beside the configuration file), its
//! phases (a generation is pending, signing or retired), the rule that a
//! pending key starts signing only when its record, looked up through real
//! DNS (never the zone files an admin uses to try records), matches the
//! private key ([`advance`]), the selector names, and the findings
//! `authgate key check` gives about pending and retired keys
//! ([`generation_reports`]). The files are written atomically under a lock
//! (`.lock`), so `serve`, `milter` and `key check` can advance the same
//! state. Must not: sign, or know the signing table (the configuration
//! applies [`State::signing_for`] to its keys).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dkim::key::KeyType;
use crate::dkim::signature::Algorithm;
use crate::dns::{DnsError, DnsSettings, Resolver};
use crate::keycheck::{self, Finding, KeyToCheck, Level, Report};

/// `[dkim.rotation]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationSettings {
    /// Where rotation state lives (default: `rotation/` beside the
    /// configuration file, `/etc/authgate/rotation` without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// How often `serve` and `milter` look for a pending key's record.
    pub check_interval_secs: u64,
    /// How long a replaced key's record stays published after the switch.
    pub overlap_secs: u64,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            state_dir: None,
            check_interval_secs: 300,
            overlap_secs: 7 * 86_400,
        }
    }
}

/// A rotation state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Reading or writing failed.
    #[error("rotation state {path}: {}", crate::keyfile::io_reason(.error))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The file is not a rotation state.
    #[error("rotation state {path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One key of a rotated key name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// Selector (`s=`).
    pub selector: String,
    /// Private key file.
    pub file: PathBuf,
    /// `rsa` or `ed25519`.
    pub algorithm: String,
    /// When it was written (Unix seconds; 0 for the key the rotation started from).
    pub created: u64,
    /// When it started signing (absent while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_since: Option<u64>,
    /// When it stopped signing (absent while pending or signing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<u64>,
}

/// Where a generation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Written, record not seen yet: does not sign.
    Pending,
    /// Signs.
    Signing,
    /// Replaced; its record stays published for the overlap, then is revoked.
    Retired,
}

impl Generation {
    /// This generation's phase.
    pub fn phase(&self) -> Phase {
        match (self.signing_since, self.retired) {
            (_, Some(_)) => Phase::Retired,
            (Some(_), None) => Phase::Signing,
            (None, None) => Phase::Pending,
        }
    }
}

/// The rotation state of one key name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The `[[dkim.keys]]` (or KeyTable) name whose selector and file rotate.
    pub key: String,
    /// Signing domain.
    pub domain: String,
    /// Oldest first; the first is the key the configuration names.
    #[serde(rename = "generation")]
    pub generations: Vec<Generation>,
}

impl State {
    /// A state whose only generation is the configured key, signing.
    pub fn start(key: &str, domain: &str, selector: &str, file: &Path, algorithm: &str) -> Self {
        State {
            key: key.to_owned(),
            domain: domain.to_owned(),
            generations: vec![Generation {
                selector: selector.to_owned(),
                file: file.to_owned(),
                algorithm: algorithm.to_owned(),
                created: 0,
                signing_since: Some(0),
                retired: None,
            }],
        }
    }

    /// The generation that signs.
    pub fn signing(&self) -> Option<&Generation> {
        self.generations
            .iter()
            .rev()
            .find(|g| g.phase() == Phase::Signing)
    }

    /// The generation waiting for its record.
    pub fn pending(&self) -> Option<&Generation> {
        self.generations
            .iter()
            .find(|g| g.phase() == Phase::Pending)
    }

    /// The selector and file to sign with, given what the configuration says
    /// for this key. `None` when the configuration no longer names any of
    /// this state's keys (the admin changed it by hand: the configuration
    /// wins, and the state is stale).
    pub fn signing_for(&self, selector: &str, file: &Path) -> Option<&Generation> {
        let known = self
            .generations
            .iter()
            .any(|g| g.selector == selector && g.file == file);
        known.then(|| self.signing()).flatten()
    }

    /// The pending generation starts signing at `now`; the one that signed
    /// retires. `false` when nothing was pending.
    pub fn switch(&mut self, now: u64) -> bool {
        let Some(next) = self
            .generations
            .iter()
            .position(|g| g.phase() == Phase::Pending)
        else {
            return false;
        };
        for g in &mut self.generations {
            if g.phase() == Phase::Signing {
                g.retired = Some(now);
            }
        }
        self.generations[next].signing_since = Some(now);
        true
    }

    /// Drops the pending generation (`key rotate --restart`); its file.
    pub fn discard_pending(&mut self) -> Option<Generation> {
        let at = self
            .generations
            .iter()
            .position(|g| g.phase() == Phase::Pending)?;
        Some(self.generations.remove(at))
    }
}

/// The state directory for a configuration file (see [`RotationSettings::state_dir`]).
pub fn state_dir(settings: &RotationSettings, config_file: Option<&Path>) -> PathBuf {
    if let Some(d) = &settings.state_dir {
        return d.clone();
    }
    config_file
        .and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("/etc/authgate"))
        .join("rotation")
}

/// The state file of key `name` in `dir`.
pub fn state_file(dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{}.toml", safe.trim_start_matches('.')))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RotationError + '_ {
    move |error| RotationError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Every state in `dir` (none when it does not exist), sorted by key name.
pub fn load_all(dir: &Path) -> Result<Vec<State>, RotationError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out: Vec<State> = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let state: State = toml::from_str(&text).map_err(|e| RotationError::Format {
            path: path.clone(),
            message: e.message().to_owned(),
        })?;
        if state.generations.is_empty() {
            return Err(RotationError::Format {
                path,
                message: "no [[generation]]".into(),
            });
        }
        out.push(state);
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The state of key `name`, if it was ever rotated.
pub fn load(dir: &Path, name: &str) -> Result<Option<State>, RotationError> {
    Ok(load_all(dir)?.into_iter().find(|s| s.key == name))
}

/// An exclusive lock on the state directory, held until dropped, so that a
/// read-modify-write by one process does not undo another's.
pub struct Lock(#[allow(dead_code)] File);

/// Takes the lock, creating the directory (mode 0770, owned like `owner_of`
/// when given and running as root) on first use.
pub fn lock(dir: &Path, owner_of: Option<&Path>) -> Result<Lock, RotationError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o770)).map_err(io(dir))?;
        give_to_owner_of(dir, owner_of)?;
    }
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o660)
        .open(&path)
        .map_err(io(&path))?;
    file.lock().map_err(io(&path))?;
    Ok(Lock(file))
}

/// Gives `path` the owner and group of `model` (root only: a key rotated by
/// root for a daemon running as `opendkim` or `authgate` stays theirs).
pub fn give_to_owner_of(path: &Path, model: Option<&Path>) -> Result<(), RotationError> {
    let Some(model) = model else {
        return Ok(());
    };
    let Ok(meta) = std::fs::metadata(model) else {
        return Ok(());
    };
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if me != 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).map_err(io(path))
}

/// Writes `state` to its file in `dir` atomically (a temporary file renamed
/// over it), mode 0660, owned like the directory. Hold [`lock`] around it.
pub fn save(dir: &Path, state: &State) -> Result<PathBuf, RotationError> {
    let path = state_file(dir, &state.key);
    let text = format!(
        "# authgate key rotation state for key {:?} ({}); written by `authgate key rotate`,\n\
         # `authgate key check`, serve and milter. Delete it to stop rotating this key\n\
         # (the key in the configuration then signs again).\n{}",
        state.key,
        state.domain,
        toml::to_string_pretty(state).map_err(|e| RotationError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?
    );
    let mut tmp = tempfile::Builder::new()
        .prefix(".state")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o660))
        .map_err(io(dir))?;
    tmp.write_all(text.as_bytes()).map_err(io(dir))?;
    tmp.as_file().sync_all().map_err(io(dir))?;
    give_to_owner_of(tmp.path(), Some(dir))?;
    tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
    Ok(path)
}

/// A date-based selector for a key made at `now` that none of `taken` uses:
/// `s202612`, else `s20261208`, else `s20261208-2`, ...
pub fn new_selector(now: u64, taken: &[&str]) -> String {
    let (y, m, d) = crate::report::civil_from_days((now / 86_400) as i64);
    let free = |s: &String| !taken.iter().any(|t| t.eq_ignore_ascii_case(s));
    let month = format!("s{y:04}{m:02}");
    if free(&month) {
        return month;
    }
    let day = format!("s{y:04}{m:02}{d:02}");
    if free(&day) {
        return day;
    }
    (2..)
        .map(|n| format!("{day}-{n}"))
        .find(free)
        .unwrap_or(day)
}

/// `rsa` or `ed25519`, as a key file's algorithm.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Ed25519Sha256 => "ed25519",
        _ => "rsa",
    }
}

/// What [`advance`] found for one pending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The key name.
    pub key: String,
    /// Signing domain.
    pub domain: String,
    /// The pending selector.
    pub selector: String,
    /// The selector it replaced, when it switched.
    pub replaced: Option<String>,
    /// `None` when it switched; else the key check's status and first
    /// error (`missing`, `mismatch`, `offline`, ...).
    pub waiting: Option<(String, String)>,
}

/// Resolver settings for the publication check: the configured servers (or
/// `/etc/resolv.conf`), never the zone files, which hold records an admin is
/// trying out, not records the world sees. `None` when only zone files are
/// configured (offline: publication cannot be confirmed).
pub fn publication_dns(settings: &DnsSettings) -> Option<DnsSettings> {
    if !settings.zone_files.is_empty() && settings.servers.is_empty() {
        return None;
    }
    Some(DnsSettings {
        zone_files: Vec::new(),
        ..settings.clone()
    })
}

/// Looks up the record of every pending key in `dir` and switches those
/// whose record matches their private key (no error-level finding of
/// `authgate key check`). The resolver must be fresh (no cached negative
/// answer) and see real DNS ([`publication_dns`]); `None` reports every
/// pending key as waiting (`offline`).
pub async fn advance(
    dir: &Path,
    resolver: Option<&impl Resolver>,
    allow_insecure: bool,
    now: u64,
) -> Result<Vec<Checked>, RotationError> {
    let states = load_all(dir)?;
    if states.iter().all(|s| s.pending().is_none()) {
        return Ok(Vec::new());
    }
    // Look up first, without the lock: DNS may take seconds.
    let mut verdicts = Vec::new();
    for s in &states {
        let Some(p) = s.pending() else { continue };
        let verdict = match resolver {
            None => Err((
                "offline".to_owned(),
                "only zone files are configured ([dns] zone_files without servers); \
                 publication is confirmed through real DNS"
                    .to_owned(),
            )),
            Some(r) => check_pending(s, p, r, allow_insecure).await,
        };
        verdicts.push((s.key.clone(), p.selector.clone(), verdict));
    }
    let _lock = lock(dir, None)?;
    let mut out = Vec::new();
    for (key, selector, verdict) in verdicts {
        // Read again under the lock: another process may have moved on.
        let Some(mut state) = load(dir, &key)? else {
            continue;
        };
        if state.pending().is_none_or(|p| p.selector != selector) {
            continue;
        }
        let replaced = state.signing().map(|g| g.selector.clone());
        let waiting = match verdict {
            Ok(()) => {
                state.switch(now);
                save(dir, &state)?;
                None
            }
            Err(w) => Some(w),
        };
        out.push(Checked {
            key,
            domain: state.domain,
            selector,
            replaced: if waiting.is_none() { replaced } else { None },
            waiting,
        });
    }
    Ok(out)
}

async fn check_pending(
    state: &State,
    pending: &Generation,
    resolver: &impl Resolver,
    allow_insecure: bool,
) -> Result<(), (String, String)> {
    let report = check_generation(state, pending, resolver, allow_insecure).await;
    match report.findings.iter().find(|f| f.level == Level::Error) {
        None => Ok(()),
        Some(f) => Err((f.code.to_owned(), f.message.clone())),
    }
}

/// The key check of one generation's record.
/// A private key file and where its record lives, for [`check_key_file`].
#[derive(Debug, Clone, Copy)]
pub struct KeyFileToCheck<'a> {
    /// The key's name in the configuration (or the rotation state).
    pub name: &'a str,
    /// Signing domain.
    pub domain: &'a str,
    /// Selector.
    pub selector: &'a str,
    /// The private key file.
    pub file: &'a Path,
    /// Whether it signs (or is about to).
    pub signing: bool,
}

/// Loads the private key and checks the record at
/// `selector._domainkey.domain` against it (`authgate key check`).
pub async fn check_key_file(
    k: &KeyFileToCheck<'_>,
    resolver: &impl Resolver,
    allow_insecure: bool,
) -> Report {
    let sk = match crate::keyfile::load_signing_key(k.file, allow_insecure) {
        Ok(sk) => sk,
        Err(e) => {
            return Report::single(
                "unreadable",
                Level::Error,
                format!("key {:?} cannot be loaded: {e}.", k.name),
                Some("fix the key file; `authgate config check` shows the same error.".into()),
            );
        }
    };
    let public_key = sk.public_key_bytes();
    let key = KeyToCheck {
        name: k.name,
        domain: k.domain,
        selector: k.selector,
        public_key: &public_key,
        key_type: match sk.algorithm() {
            Algorithm::Ed25519Sha256 => KeyType::Ed25519,
            _ => KeyType::Rsa,
        },
        signing: k.signing,
    };
    let answer = resolver
        .txt(&format!("{}._domainkey.{}", k.selector, k.domain))
        .await;
    keycheck::check(&key, &answer)
}

async fn check_generation(
    state: &State,
    g: &Generation,
    resolver: &impl Resolver,
    allow_insecure: bool,
) -> Report {
    let k = KeyFileToCheck {
        name: &state.key,
        domain: &state.domain,
        selector: &g.selector,
        file: &g.file,
        signing: true,
    };
    check_key_file(&k, resolver, allow_insecure).await
}

/// The (key name, signing selector) of every state in `dir`: what signs.
fn signing_view(dir: &Path) -> Vec<(String, String)> {
    load_all(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let sel = s.signing().map(|g| g.selector.clone()).unwrap_or_default();
            (s.key, sel)
        })
        .collect()
}

/// The rotation check inside `serve` and `milter`: on a timer and on SIGHUP,
/// pending keys whose record is published switch, and a switch made by
/// another process (`authgate key check`) is noticed.
#[derive(Debug, Default)]
pub struct Watch {
    view: Vec<(String, String)>,
    said: std::collections::HashMap<String, String>,
}

impl Watch {
    /// Remembers what signs now (the configuration just loaded).
    pub fn new(dir: &Path) -> Self {
        Watch {
            view: signing_view(dir),
            said: Default::default(),
        }
    }

    /// Checks the pending keys in `dir`; `true` when what signs changed
    /// since the last call, so the configuration must be loaded again.
    /// Logs each switch, and each pending key's reason once per change.
    pub async fn check(&mut self, dir: &Path, dns: &DnsSettings, allow_insecure: bool) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let resolver = match publication_dns(dns).map(|s| crate::dns::build(&s)) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                tracing::error!("key rotation: cannot build a resolver: {e}");
                return false;
            }
            None => None,
        };
        match advance(dir, resolver.as_ref(), allow_insecure, now).await {
            Ok(checked) => {
                for c in checked {
                    self.log(&c);
                }
            }
            Err(e) => tracing::error!("key rotation: {e}"),
        }
        let view = signing_view(dir);
        if view == self.view {
            return false;
        }
        self.view = view;
        true
    }

    fn log(&mut self, c: &Checked) {
        match &c.waiting {
            None => {
                self.said.remove(&c.key);
                tracing::info!(
                    key = %c.key,
                    domain = %c.domain,
                    "key rotation: {}._domainkey.{} is published; it signs from now on (was {})",
                    c.selector,
                    c.domain,
                    c.replaced.as_deref().unwrap_or("-")
                );
            }
            Some((code, message)) => {
                let said = format!("{}:{code}", c.selector);
                if self.said.get(&c.key) != Some(&said) {
                    tracing::info!(
                        key = %c.key,
                        domain = %c.domain,
                        "key rotation: {} waits for its record ({code}): {message}",
                        c.selector
                    );
                    self.said.insert(c.key.clone(), said);
                }
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC`.
pub fn when(secs: u64) -> String {
    let day = crate::report::day_of(secs as i64);
    format!(
        "{day} {:02}:{:02} UTC",
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

/// For `authgate key check`: a report for every pending and retired
/// generation of `state` (the signing one is checked like any configured
/// key), as (selector, report). `waiting` gives what [`advance`] found for
/// a pending selector.
pub async fn generation_reports(
    state: &State,
    resolver: &impl Resolver,
    allow_insecure: bool,
    overlap_secs: u64,
    now: u64,
    waiting: &dyn Fn(&str) -> Option<(String, String)>,
) -> Vec<(String, Report)> {
    let mut out = Vec::new();
    let signing = state.signing().map_or("-", |g| g.selector.as_str());
    for g in &state.generations {
        let report = match g.phase() {
            Phase::Signing => continue,
            Phase::Pending => {
                let why = waiting(&g.selector)
                    .map(|(code, message)| format!(" ({code}: {message})"))
                    .unwrap_or_default();
                let mut findings = vec![Finding {
                    code: "pending",
                    level: Level::Warning,
                    message: format!(
                        "new key {:?}, made {}, does not sign yet{why}; {signing:?} signs until \
                         its record is published, then serve and milter (or `authgate key check`) \
                         switch to it",
                        g.selector,
                        when(g.created)
                    ),
                    fix: None,
                }];
                // The diagnosis and its fix (the record to publish), as
                // warnings: nothing signs with this key yet.
                let diagnosis = check_generation(state, g, resolver, allow_insecure).await;
                findings.extend(diagnosis.findings.into_iter().map(|mut f| {
                    f.level = f.level.min(Level::Warning);
                    f
                }));
                Report { findings }
            }
            Phase::Retired => retired_report(state, g, resolver, overlap_secs, now).await,
        };
        out.push((g.selector.clone(), report));
    }
    out
}

async fn retired_report(
    state: &State,
    g: &Generation,
    resolver: &impl Resolver,
    overlap_secs: u64,
    now: u64,
) -> Report {
    let retired = g.retired.unwrap_or(0);
    let until = retired.saturating_add(overlap_secs);
    let name = format!("{}._domainkey.{}", g.selector, state.domain);
    let successor = state.signing().map_or("-", |s| s.selector.as_str());
    if now < until {
        return Report {
            findings: vec![Finding {
                code: "overlap",
                level: Level::Ok,
                message: format!(
                    "replaced by {successor:?} on {}; keep {name} published until {} so that \
                     mail signed before the switch still verifies",
                    when(retired),
                    when(until)
                ),
                fix: None,
            }],
        };
    }
    let delete = if g.file.exists() {
        format!(
            "; then delete the private key {} (nothing signs with it)",
            g.file.display()
        )
    } else {
        String::new()
    };
    let published = match resolver.txt(&name).await {
        Ok(records) => records
            .iter()
            .any(|r| crate::dkim::key::KeyRecord::parse(r).is_ok_and(|k| !k.public_key.is_empty())),
        Err(DnsError::NxDomain | DnsError::NoData) => false,
        Err(DnsError::Temporary(e)) => {
            return Report::single(
                "unchecked",
                Level::Error,
                format!("the record at {name} could not be looked up: {e}"),
                None,
            );
        }
    };
    if published {
        Report::single(
            "revocable",
            Level::Warning,
            format!(
                "replaced by {successor:?} on {}; its overlap ended {}: revoke its record",
                when(retired),
                when(until)
            ),
            Some(format!(
                "{}{delete}",
                crate::keygen::zone_line(&name, "v=DKIM1; p=")
            )),
        )
    } else {
        Report::single(
            "revoked",
            Level::Ok,
            format!(
                "replaced by {successor:?} on {}; its record is revoked{delete}",
                when(retired)
            ),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::ZoneResolver;

    #[test]
    fn selectors_are_dated_and_never_reused() {
        // 2026-12-08 10:00 UTC
        let now = 1_796_724_000;
        assert_eq!(new_selector(now, &["mail"]), "s202612");
        assert_eq!(new_selector(now, &["S202612"]), "s20261208");
        assert_eq!(
            new_selector(now, &["s202612", "s20261208", "s20261208-2"]),
            "s20261208-3"
        );
    }

    fn state() -> State {
        let mut s = State::start("k", "example.org", "mail", Path::new("/k/mail"), "rsa");
        s.generations.push(Generation {
            selector: "s202612".into(),
            file: "/k/s202612".into(),
            algorithm: "rsa".into(),
            created: 10,
            signing_since: None,
            retired: None,
        });
        s
    }

    #[test]
    fn a_pending_key_does_not_sign_until_switched() {
        let mut s = state();
        assert_eq!(s.signing().map(|g| g.selector.as_str()), Some("mail"));
        assert_eq!(s.pending().map(|g| g.selector.as_str()), Some("s202612"));
        assert!(s.switch(20));
        assert_eq!(s.signing().map(|g| g.selector.as_str()), Some("s202612"));
        assert_eq!(s.generations[0].phase(), Phase::Retired);
        assert_eq!(s.generations[0].retired, Some(20));
        assert!(s.pending().is_none());
        assert!(!s.switch(30), "nothing left to switch");
    }

    #[test]
    fn a_state_the_configuration_no_longer_names_is_ignored() {
        let mut s = state();
        s.switch(20);
        let signing = |sel: &str, file: &str| {
            s.signing_for(sel, Path::new(file))
                .map(|g| g.selector.clone())
        };
        assert_eq!(signing("mail", "/k/mail").as_deref(), Some("s202612"));
        assert_eq!(signing("s202612", "/k/s202612").as_deref(), Some("s202612"));
        assert_eq!(signing("other", "/k/other"), None);
        assert_eq!(signing("mail", "/elsewhere/mail"), None);
    }

    #[test]
    fn state_dir_is_beside_the_configuration() {
        let s = RotationSettings::default();
        assert_eq!(
            state_dir(&s, Some(Path::new("/etc/authgate/authgate.toml"))),
            Path::new("/etc/authgate/rotation")
        );
        assert_eq!(
            state_dir(&s, Some(Path::new("authgate.toml"))),
            Path::new("./rotation")
        );
        assert_eq!(state_dir(&s, None), Path::new("/etc/authgate/rotation"));
        assert_eq!(
            state_file(Path::new("/r"), "mail._domainkey/x"),
            Path::new("/r/mail._domainkey_x.toml")
        );
    }

    #[test]
    fn states_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("rotation");
        let mut s = state();
        {
            let _l = lock(&d, None).unwrap();
            save(&d, &s).unwrap();
        }
        assert_eq!(load_all(&d).unwrap(), vec![s.clone()]);
        s.switch(99);
        save(&d, &s).unwrap();
        assert_eq!(load(&d, "k").unwrap(), Some(s));
        let mode = std::fs::metadata(state_file(&d, "k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        std::fs::write(d.join("bad.toml"), "key = 1\n").unwrap();
        let e = load_all(&d).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn publication_is_never_confirmed_from_zone_files() {
        let zone_only = DnsSettings {
            zone_files: vec!["z".into()],
            ..DnsSettings::default()
        };
        assert_eq!(publication_dns(&zone_only), None);
        let overlay = DnsSettings {
            servers: vec!["127.0.0.1:53".into()],
            ..zone_only
        };
        let live = publication_dns(&overlay).unwrap();
        assert!(live.zone_files.is_empty());
        assert_eq!(live.servers, overlay.servers);
    }

    #[tokio::test]
    async fn retired_keys_say_when_to_revoke() {
        let mut s = state();
        s.switch(1_000);
        let z = |text: &str| ZoneResolver::parse(text, None).unwrap();
        let published = z("mail._domainkey.example.org. TXT \"v=DKIM1; p=AAAA\"\n");
        let r = retired_report(&s, &s.generations[0], &published, 100, 1_050).await;
        assert_eq!(r.status(), "overlap");
        let r = retired_report(&s, &s.generations[0], &published, 100, 1_100).await;
        assert_eq!(r.status(), "revocable");
        assert_eq!(r.level(), Level::Warning);
        assert!(
            r.findings[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("v=DKIM1; p=")
        );
        let revoked = z("mail._domainkey.example.org. TXT \"v=DKIM1; p=\"\n");
        let r = retired_report(&s, &s.generations[0], &revoked, 100, 1_100).await;
        assert_eq!(r.status(), "revoked");
        let gone = z("other.example.org. TXT \"x\"\n");
        let r = retired_report(&s, &s.generations[0], &gone, 100, 1_100).await;
        assert_eq!(r.status(), "revoked");
    }
}
