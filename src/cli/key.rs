//! `authgate key ...`: the DKIM key commands (`key check`, `key rotate`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use figment::Figment;

use super::{CommonArgs, now_or_clock, runtime, same_domain, write_record};
use crate::config::{Config, KeySettings};
use crate::dns;
use crate::keyfile::load_signing_key;
use crate::rotation::{self, Generation, State};

const EXAMPLES_KEY_CHECK: &str = "Examples:
  authgate key check                                # every [[dkim.keys]] entry of the configuration
  authgate key check --domain example.com --json    # one JSON array: [{domain, selector, status, findings}]
  authgate key check --dns-zone keys.zone           # offline, against a zone file
For each key: looks up selector._domainkey.domain TXT and compares it with the private key
(missing, mismatched, revoked, t=y, wrong k=, key size, quote/whitespace damage, split records);
each finding comes with its fix. A key with domain = \"%\" is checked only with --domain.
--json prints one JSON document: an array of {\"domain\", \"selector\", \"status\", \"findings\":
[{\"area\": \"dkim\", \"level\": \"ok|warning|error\", \"message\", \"fix\"}]} (fix is null when none).
It first switches a pending rotated key (`authgate key rotate`) whose record is published, then
also reports pending keys and replaced ones (overlap, revocable, revoked).
Exit status (monitoring plugin style): 0 no warning, 1 warnings, 2 errors or could not check.";

const EXAMPLES_KEY_ROTATE: &str = "Examples:
  authgate key rotate --domain example.com                      # new key s202612, same type as now
  authgate key rotate --domain example.com --algorithm ed25519  # the next key is Ed25519
  authgate key rotate --domain example.com --restart            # throw the pending key away, make another
Writes a new key under a date-based selector beside the current key file and prints the TXT record
to publish. Nothing signs with it until `authgate key check` (or serve/milter, every
dkim.rotation.check_interval_secs and on SIGHUP) sees that record published through DNS; then the
new key signs and the old one retires. Keep the old record published for dkim.rotation.overlap_secs
(7 days by default); `authgate key check` says when it can be revoked. Running the command again
while a key is pending prints that key's record again. State: rotation/ beside the configuration.";

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Compare each configured key with its published DNS record; print verdicts and fixes.
    #[command(after_help = EXAMPLES_KEY_CHECK)]
    Check(KeyCheckArgs),
    /// Make a new key for a domain; it signs once its record is published.
    #[command(after_help = EXAMPLES_KEY_ROTATE)]
    Rotate(KeyRotateArgs),
}

/// Runs a `key` subcommand.
pub fn dispatch(c: KeyCommand) -> Result<ExitCode> {
    match c {
        KeyCommand::Check(a) => key_check(a),
        KeyCommand::Rotate(a) => key_rotate(a),
    }
}

#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// Configuration file (default: /etc/authgate/authgate.toml if it exists).
    #[arg(long, short = 'c', env = "AUTHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// The domain whose signing key rotates.
    #[arg(long, short = 'd')]
    domain: String,
    /// Key type of the new key (default: the current key's).
    #[arg(long, short = 'a', value_parser = ["rsa", "ed25519"])]
    algorithm: Option<String>,
    /// RSA modulus size of the new key.
    #[arg(long, short = 'b', default_value_t = 2048)]
    bits: usize,
    /// The key to rotate, when several sign for the domain (its [[dkim.keys]] or KeyTable name).
    #[arg(long, short = 'k')]
    key: Option<String>,
    /// Selector of the new key (default: s and the year and month, e.g. s202612).
    #[arg(long, short = 's')]
    selector: Option<String>,
    /// Drop the pending new key (and its file) and make another.
    #[arg(long)]
    restart: bool,
}

#[derive(Debug, Args)]
pub struct KeyCheckArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Check only the keys of this domain (and keys with domain = "%" for it).
    #[arg(long, short = 'd')]
    domain: Option<String>,
    /// Print one JSON array with an object per key.
    #[arg(long)]
    json: bool,
}

/// One checked key: where its record lives and what was found.
struct KeyVerdict {
    domain: String,
    selector: String,
    report: crate::keycheck::Report,
}

fn key_check(a: KeyCheckArgs) -> Result<ExitCode> {
    use crate::keycheck::Level;
    let config = a.common.load(Figment::new())?;
    let resolver = dns::build(&config.dns)?;
    let rt = runtime()?;
    let now = now_or_clock(None);
    let allow = config.dkim.sign.allow_insecure_key_permissions;
    // Switch pending rotated keys whose record is published, as serve and
    // milter do on their timer; through real DNS only, never zone files.
    let live = rotation::publication_dns(&config.dns)
        .map(|s| dns::build(&s))
        .transpose()?;
    let dir = config.rotation_dir();
    let checked = rt.block_on(rotation::advance(&dir, live.as_ref(), allow, now))?;
    for c in checked.iter().filter(|c| c.waiting.is_none()) {
        eprintln!(
            "key rotation: {}._domainkey.{} is published: key {:?} signs with it from now on \
             (serve and milter follow within dkim.rotation.check_interval_secs)",
            c.selector, c.domain, c.key
        );
    }
    let states = config.rotations()?;
    let mut verdicts = Vec::new();
    let used = config.signing_key_names()?;
    for k in &config.key_settings()? {
        let domain = match (&a.domain, k.domain.as_str()) {
            (None, "%") => {
                verdicts.push(KeyVerdict {
                    domain: k.domain.clone(),
                    selector: k.selector.clone(),
                    report: crate::keycheck::author_domain_unchecked(&k.name, &k.selector),
                });
                continue;
            }
            (Some(d), "%") => d.trim_end_matches('.').to_owned(),
            (Some(d), dom) if !same_domain(d, dom) => continue,
            (_, dom) => dom.trim_end_matches('.').to_owned(),
        };
        let mut report = check_one_key(&config, &used, k, &domain, &resolver, &rt);
        if let Some(c) = checked
            .iter()
            .find(|c| c.key == k.name && c.waiting.is_none())
        {
            report.findings.insert(
                0,
                crate::keycheck::Finding {
                    code: "switched",
                    level: Level::Ok,
                    message: format!(
                        "rotated: signs from now on, in place of {:?}",
                        c.replaced.as_deref().unwrap_or("-")
                    ),
                    fix: None,
                },
            );
        }
        verdicts.push(KeyVerdict {
            domain,
            selector: k.selector.clone(),
            report,
        });
        let Some(state) = states.iter().find(|s| s.key == k.name) else {
            continue;
        };
        let waiting = |sel: &str| {
            checked
                .iter()
                .find(|c| c.key == k.name && c.selector == sel)
                .and_then(|c| c.waiting.clone())
        };
        // Pending keys are diagnosed as the switch sees them (real DNS).
        let reports = match &live {
            Some(r) => rt.block_on(generation_reports(&config, state, r, now, &waiting)),
            None => rt.block_on(generation_reports(&config, state, &resolver, now, &waiting)),
        };
        verdicts.extend(reports.into_iter().map(|(selector, report)| KeyVerdict {
            domain: state.domain.clone(),
            selector,
            report,
        }));
    }
    if verdicts.is_empty() {
        match &a.domain {
            Some(d) => bail!("no [[dkim.keys]] entry signs for {d}"),
            None => bail!(
                "the configuration has no [[dkim.keys]] or KeyTable (dkim.opendkim_key_table) keys to check"
            ),
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let doc: Vec<serde_json::Value> = verdicts.iter().map(key_verdict_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for v in &verdicts {
            write_key_verdict(&mut out, v)?;
        }
    }
    let worst = verdicts.iter().map(|v| v.report.level()).max();
    Ok(ExitCode::from(match worst {
        Some(Level::Error) => 2,
        Some(Level::Warning) => 1,
        _ => 0,
    }))
}

/// Loads one key and checks its record at `selector._domainkey.domain`.
fn check_one_key(
    config: &Config,
    used: &[String],
    k: &KeySettings,
    domain: &str,
    resolver: &impl dns::Resolver,
    rt: &tokio::runtime::Runtime,
) -> crate::keycheck::Report {
    let key = rotation::KeyFileToCheck {
        name: &k.name,
        domain,
        selector: &k.selector,
        file: &k.file,
        signing: used.contains(&k.name),
    };
    rt.block_on(rotation::check_key_file(
        &key,
        resolver,
        config.dkim.sign.allow_insecure_key_permissions,
    ))
}

fn key_verdict_json(v: &KeyVerdict) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = v
        .report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "area": "dkim",
                "level": f.level.as_str(),
                "message": f.message,
                "fix": f.fix,
            })
        })
        .collect();
    serde_json::json!({
        "domain": v.domain,
        "selector": v.selector,
        "status": v.report.status(),
        "findings": findings,
    })
}

/// `selector._domainkey.domain: STATUS`, then each finding and its fix.
/// Record lines are printed unindented so that they paste into a zone file.
fn write_key_verdict(out: &mut impl Write, v: &KeyVerdict) -> Result<()> {
    let status = v.report.status().to_ascii_uppercase();
    writeln!(out, "{}._domainkey.{}: {status}", v.selector, v.domain)?;
    for f in &v.report.findings {
        writeln!(out, "  {}: {}", f.level.as_str(), f.message)?;
        if let Some(fix) = &f.fix {
            writeln!(out, "  fix: {fix}")?;
        }
    }
    writeln!(out)?;
    Ok(())
}

async fn generation_reports(
    config: &Config,
    state: &State,
    resolver: &impl dns::Resolver,
    now: u64,
    waiting: &dyn Fn(&str) -> Option<(String, String)>,
) -> Vec<(String, crate::keycheck::Report)> {
    rotation::generation_reports(
        state,
        resolver,
        config.dkim.sign.allow_insecure_key_permissions,
        config.dkim.rotation.overlap_secs,
        now,
        waiting,
    )
    .await
}

fn key_rotate(a: KeyRotateArgs) -> Result<ExitCode> {
    let config = Config::load(a.config.as_deref(), Figment::new())?;
    let domain = a.domain.trim_end_matches('.').to_ascii_lowercase();
    let keys = config.configured_keys()?;
    let k = key_to_rotate(&config, &keys, &domain, &a)?;
    let dir = config.rotation_dir();
    let _lock = rotation::lock(&dir, Some(&k.file))?;
    let current_alg = || -> String {
        load_signing_key(&k.file, true).map_or_else(
            |_| "rsa".to_owned(),
            |sk| rotation::algorithm_name(sk.algorithm()).to_owned(),
        )
    };
    let mut state = match rotation::load(&dir, &k.name)? {
        Some(s) => {
            if s.signing_for(&k.selector, &k.file).is_none() {
                bail!(
                    "{} does not match the configuration (key {:?} is selector {:?} there, which this \
                     rotation never used); delete it to start rotating from the configured key",
                    rotation::state_file(&dir, &k.name).display(),
                    k.name,
                    k.selector
                );
            }
            s
        }
        None => State::start(&k.name, &domain, &k.selector, &k.file, &current_alg()),
    };
    if let Some(p) = state.pending().cloned() {
        if !a.restart {
            eprintln!(
                "key {:?} already has a pending key, {:?}, made {}; its record again \
                 (--restart makes another):",
                k.name,
                p.selector,
                rotation::when(p.created)
            );
            let sk = load_signing_key(&p.file, true)?;
            print_rotation(&config, &state, &p, &sk.public_key_bytes(), None)?;
            return Ok(ExitCode::SUCCESS);
        }
        state.discard_pending();
        match std::fs::remove_file(&p.file) {
            Ok(()) => eprintln!("removed the pending key {}", p.file.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.file.display())),
        }
    }
    let signing = state
        .signing()
        .cloned()
        .context("the rotation state has no signing key")?;
    let algorithm = match a.algorithm.as_deref().unwrap_or(&signing.algorithm) {
        "ed25519" => crate::keygen::KeyAlgorithm::Ed25519,
        _ => crate::keygen::KeyAlgorithm::Rsa { bits: a.bits },
    };
    let now = now_or_clock(None);
    let taken: Vec<&str> = state
        .generations
        .iter()
        .map(|g| g.selector.as_str())
        .chain(
            keys.iter()
                .filter(|o| same_domain(&o.domain, &domain))
                .map(|o| o.selector.as_str()),
        )
        .collect();
    let selector = match &a.selector {
        Some(s) if taken.iter().any(|t| t.eq_ignore_ascii_case(s)) => {
            bail!("selector {s:?} was already used for {domain}; a rotated key needs a new one")
        }
        Some(s) => s.clone(),
        None => rotation::new_selector(now, &taken),
    };
    let file = new_key_path(&signing.file, &selector, &domain)?;
    let key = crate::keygen::PrivateKey::generate(algorithm)?;
    crate::keyfile::write_private_key(&file, key.pem())?;
    rotation::give_to_owner_of(&file, Some(&signing.file))?;
    let next = Generation {
        selector,
        file,
        algorithm: algorithm.key_type().to_owned(),
        created: now,
        signing_since: None,
        retired: None,
    };
    state.generations.push(next.clone());
    let saved = rotation::save(&dir, &state)?;
    print_rotation(&config, &state, &next, key.public_key(), Some(&saved))?;
    Ok(ExitCode::SUCCESS)
}

/// The configured key of `domain` that `a` asks to rotate.
fn key_to_rotate<'a>(
    config: &Config,
    keys: &'a [KeySettings],
    domain: &str,
    a: &KeyRotateArgs,
) -> Result<&'a KeySettings> {
    let used = config.signing_key_names()?;
    let of_domain: Vec<&KeySettings> = keys
        .iter()
        .filter(|k| same_domain(&k.domain, domain) && used.contains(&k.name))
        .collect();
    if let Some(name) = &a.key {
        return of_domain
            .iter()
            .find(|k| &k.name == name)
            .copied()
            .with_context(|| format!("no key named {name:?} signs for {domain}"));
    }
    let names = |ks: &[&KeySettings]| {
        ks.iter()
            .map(|k| format!("{:?}", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match of_domain.as_slice() {
        [one] => Ok(one),
        [] => {
            if let Some(any) = keys
                .iter()
                .find(|k| k.domain == "%" && used.contains(&k.name))
            {
                bail!(
                    "no key of {domain} itself signs: key {:?} signs for every domain (domain = \"%\"), \
                     and its record lives under each of them; give {domain} its own [[dkim.keys]] \
                     entry and signing table row first, then rotate that",
                    any.name
                )
            }
            bail!("no key in the signing table signs for {domain}")
        }
        several => {
            let wanted = a.algorithm.as_deref();
            let same_type: Vec<&KeySettings> = several
                .iter()
                .copied()
                .filter(|k| {
                    wanted.is_some_and(|w| {
                        load_signing_key(&k.file, true)
                            .is_ok_and(|sk| rotation::algorithm_name(sk.algorithm()) == w)
                    })
                })
                .collect();
            match same_type.as_slice() {
                [one] => Ok(one),
                _ => bail!(
                    "several keys sign for {domain} ({}); name one with --key",
                    names(several)
                ),
            }
        }
    }
}

/// The new key's file, beside the current one: `SELECTOR.private` in an
/// OpenDKIM key directory, else keygen's `SELECTOR.DOMAIN.key`.
fn new_key_path(current: &Path, selector: &str, domain: &str) -> Result<PathBuf> {
    let dir = current.parent().unwrap_or(Path::new("."));
    let opendkim = current.extension().is_some_and(|e| e == "private");
    let name = if opendkim {
        crate::keygen::key_file_name(selector, domain)?;
        format!("{selector}.private")
    } else {
        crate::keygen::key_file_name(selector, domain)?
    };
    Ok(dir.join(name))
}

fn print_rotation(
    config: &Config,
    state: &State,
    next: &Generation,
    public_key: &[u8],
    saved: Option<&Path>,
) -> Result<()> {
    let algorithm = match next.algorithm.as_str() {
        "ed25519" => crate::keygen::KeyAlgorithm::Ed25519,
        _ => crate::keygen::KeyAlgorithm::Rsa {
            bits: crate::keycheck::rsa_bits(public_key).unwrap_or(0),
        },
    };
    let opts = crate::keygen::KeygenOptions {
        domain: state.domain.clone(),
        selector: next.selector.clone(),
        algorithm,
        testing: false,
    };
    let r = crate::keygen::DnsRecord::new(&opts, public_key)?;
    let old = state.signing().map_or("-", |g| g.selector.as_str());
    let interval = config.dkim.rotation.check_interval_secs;
    let overlap_days = config.dkim.rotation.overlap_secs as f64 / 86_400.0;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# key {:?} of {} rotates: new selector {} ({}), replacing {old}",
        state.key,
        state.domain,
        next.selector,
        match algorithm {
            crate::keygen::KeyAlgorithm::Ed25519 => "ed25519".to_owned(),
            crate::keygen::KeyAlgorithm::Rsa { bits } => format!("rsa {bits} bits"),
        }
    )?;
    if saved.is_some() {
        writeln!(
            out,
            "# private key written to {} (mode 0600)",
            next.file.display()
        )?;
    }
    write_record(&mut out, &r)?;
    writeln!(
        out,
        "\n# what happens next:\n\
         # - {old} keeps signing until the record above is published. serve and milter look it\n\
         #   up every {interval} s and on SIGHUP, and switch by themselves; with only pipe or sign,\n\
         #   run `authgate key check` (from cron, say) to make the switch.\n\
         # - after the switch, keep {old}._domainkey.{} published for {overlap_days} days\n\
         #   (dkim.rotation.overlap_secs); `authgate key check` says when to revoke it.",
        state.domain
    )?;
    if let Some(p) = saved {
        writeln!(out, "# state: {}", p.display())?;
    }
    Ok(())
}
