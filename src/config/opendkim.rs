//! OpenDKIM's KeyTable, SigningTable and TrustedHosts read in place
//! (`dkim.opendkim_key_table`, `dkim.opendkim_signing_table`,
//! `dkim.opendkim_trusted_hosts`), so an admin can switch from OpenDKIM
//! without moving a file.
//!
//! Owns: reading the files those settings name, and saying what is wrong
//! as `FILE line N: problem`, every bad line once. The formats and their
//! meaning are [`crate::opendkim`]'s (shared with `authgate import
//! opendkim`). Must not: load keys (the caller does, for both sources) or
//! decide between the tables and `authgate.toml` (the caller: the TOML
//! wins).

use std::path::PathBuf;

use super::{ConfigError, KeySettings, invalid};
use crate::keyfile::io_reason;
use crate::opendkim::{
    Dataset, LineError, SigningRow, dataset, host_entry, parse_key_table, parse_signing_table,
    signing_rows, table_lines, trusted_nets,
};

/// A line of a table file, for messages: `/etc/opendkim/KeyTable line 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The file.
    pub path: String,
    /// Its line.
    pub line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.path, self.line)
    }
}

/// A table file's path and text; `refile` when given as `refile:/path`.
struct TableFile {
    path: String,
    refile: bool,
    text: String,
}

/// Reads the file `value` names (`/path`, `file:/path` or `refile:/path`).
fn read(setting: &str, value: &str) -> Result<TableFile, ConfigError> {
    let key = format!("dkim.{setting}");
    let (path, refile) = match dataset(value) {
        Dataset::File(p) => (p, false),
        Dataset::Refile(p) => (p, true),
        _ => {
            return Err(invalid(
                key,
                format!(
                    "{value:?}: expected a file (/path, file:/path or refile:/path); \
                     OpenDKIM's db:, dsn: and ldap: datasets are not read"
                ),
            ));
        }
    };
    let text = std::fs::read_to_string(PathBuf::from(path))
        .map_err(|e| invalid(key, format!("cannot read {path}: {}", io_reason(&e))))?;
    Ok(TableFile {
        path: path.to_string(),
        refile,
        text,
    })
}

/// Every bad line of `path`, one line each.
fn bad_lines(path: &str, errors: &[LineError]) -> ConfigError {
    ConfigError::Table(errors.iter().map(|e| format!("{path} {e}")).collect())
}

/// The KeyTable's keys, each with its line (none when not set).
pub fn key_table(value: Option<&str>) -> Result<Vec<(KeySettings, At)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let file = read("opendkim_key_table", value)?;
    let (keys, mut errors) = parse_key_table(&file.text);
    for (i, k) in keys.iter().enumerate() {
        if let Some(first) = keys[..i].iter().find(|o| o.name == k.name) {
            errors.push(LineError {
                line: k.line,
                message: format!("key name {:?} is already on line {}", k.name, first.line),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(bad_lines(&file.path, &errors));
    }
    Ok(keys
        .into_iter()
        .map(|k| {
            let at = At {
                path: file.path.clone(),
                line: k.line,
            };
            let settings = KeySettings {
                name: k.name,
                domain: k.domain,
                selector: k.selector,
                file: k.file.into(),
            };
            (settings, at)
        })
        .collect())
}

/// The SigningTable's rows in match order, each with its (first) line.
pub fn signing_table(value: Option<&str>) -> Result<Vec<(SigningRow, At)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let file = read("opendkim_signing_table", value)?;
    let (lines, mut errors) = parse_signing_table(&file.text);
    for l in lines.iter().filter(|l| l.key == "%") {
        errors.push(LineError {
            line: l.line,
            message: "a key name of \"%\" (the key named after the From domain) is not \
                      supported: name the KeyTable entry"
                .into(),
        });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(bad_lines(&file.path, &errors));
    }
    Ok(signing_rows(lines, file.refile)
        .into_iter()
        .map(|r| {
            let at = At {
                path: file.path.clone(),
                line: r.line,
            };
            (r, at)
        })
        .collect())
}

/// The TrustedHosts file's addresses and CIDRs, negations applied, and
/// the entries left out (host names, name patterns), each as
/// `FILE line N: ENTRY: why`. A file with entries but no usable one is an
/// error: it would sign for no internal host at all.
pub fn trusted_hosts(value: Option<&str>) -> Result<(Vec<ipnet::IpNet>, Vec<String>), ConfigError> {
    let Some(value) = value else {
        return Ok((Vec::new(), Vec::new()));
    };
    let file = read("opendkim_trusted_hosts", value)?;
    let (mut positive, mut negative) = (Vec::new(), Vec::new());
    let (mut skipped, mut bad) = (Vec::new(), Vec::new());
    let mut entries = 0;
    for (n, entry) in table_lines(&file.text) {
        entries += 1;
        let at = At {
            path: file.path.clone(),
            line: n,
        };
        match (
            entry.strip_prefix('!'),
            host_entry(entry.trim_start_matches('!').trim()),
        ) {
            (None, Ok(net)) => positive.push(net),
            (Some(_), Ok(net)) => negative.push(net),
            (None, Err(why)) => skipped.push(format!("{at}: {entry:?} skipped: {why}")),
            // Leaving out a negation would trust a host OpenDKIM did not.
            (Some(_), Err(_)) => bad.push(LineError {
                line: n,
                message: format!(
                    "{entry:?}: a negated host name cannot be honoured (authgate matches \
                     addresses, not names, and would trust that host): write its address \
                     as !ADDRESS"
                ),
            }),
        }
    }
    if !bad.is_empty() {
        return Err(bad_lines(&file.path, &bad));
    }
    if positive.is_empty() && entries > 0 {
        return Err(invalid(
            "dkim.opendkim_trusted_hosts",
            format!(
                "{}: no entry is an address or CIDR, so no host would be trusted \
                 (authgate trusts addresses, not host names)",
                file.path
            ),
        ));
    }
    Ok((trusted_nets(&positive, &negative), skipped))
}
