//! Configuration errors as the admin reads them.
//!
//! Owns: turning figment's errors into one line per problem that says it
//! once, names the key as the admin wrote it (`server.max_sesions`, or the
//! `AUTHGATE_…` variable), gives the file and line (and column, for TOML
//! syntax errors), and "did you mean `max_sessions`?" for a near miss.
//! Must not: read anything but the configuration file it is told about.
//!
//! Every error here carries its whole text in `Display` and has no
//! `source()`: the binary prints the cause chain, and a cause that is also
//! in the text would then be said twice.

use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::{Metadata, Source};

use crate::keyfile::{KeyFileError, without_errno};

/// Why the configuration is unusable; the text names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Syntax, type or unknown-key errors from a layer, one line per
    /// problem, already rendered for the admin (see [`render`]).
    #[error("{}", .0.join("\n"))]
    Load(Vec<String>),
    /// A value that parses but makes no sense.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `dkim.keys[0].file`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An error found after loading, with where the admin set the key:
    /// `FILE line N` or `environment variable AUTHGATE_…`.
    #[error("{at}: {error}")]
    Located {
        /// Where the key was set.
        at: String,
        /// The error.
        error: Box<ConfigError>,
    },
    /// Lines of an OpenDKIM table read in place that cannot be used, one
    /// `FILE line N: problem` each (the file and line say where; no key).
    #[error("{}", .0.join("\n"))]
    Table(Vec<String>),
    /// A configured key file cannot be used.
    #[error("{key}: {error}{}", insecure_hint(error))]
    KeyFile {
        /// Dotted key, e.g. `dkim.keys[0].file`.
        key: String,
        /// What is wrong with the file (the path and the OS error, once).
        error: KeyFileError,
    },
    /// A key rotation state file (`authgate key rotate`) cannot be used.
    #[error("{0}")]
    Rotation(String),
}

/// The setting that skips the permission check, for a refused key file.
pub(super) fn insecure_hint(error: &KeyFileError) -> &'static str {
    match error {
        KeyFileError::Permissions { .. } => {
            " (or set dkim.sign.allow_insecure_key_permissions = true)"
        }
        _ => "",
    }
}

/// Where a layer got the value that failed.
enum Origin {
    File(PathBuf),
    Env,
    Flag,
    Unknown,
}

impl Origin {
    fn of(md: Option<&Metadata>) -> Origin {
        let Some(md) = md else {
            return Origin::Unknown;
        };
        match &md.source {
            Some(Source::File(p)) => Origin::File(p.clone()),
            _ if md.name.contains("environment") => Origin::Env,
            // Serialized values: the built-in defaults (which always fit)
            // and the command-line flags.
            Some(Source::Code(_)) => Origin::Flag,
            _ => Origin::Unknown,
        }
    }
}

/// `error` with where its key was set, when that is knowable: the
/// `AUTHGATE_…` variable when it is set, else the line of `file` that holds
/// the key. Unchanged when neither names it (a default or a flag).
pub fn located(error: ConfigError, file: Option<&Path>) -> ConfigError {
    let key = match &error {
        ConfigError::Invalid { key, .. } | ConfigError::KeyFile { key, .. } => key,
        ConfigError::Load(_)
        | ConfigError::Table(_)
        | ConfigError::Rotation(_)
        | ConfigError::Located { .. } => {
            return error;
        }
    };
    let path: Vec<&str> = key
        .split(['.', '[', ']'])
        .filter(|s| !s.is_empty())
        .collect();
    let var = env_name(&path);
    let at = if std::env::var_os(&var).is_some() {
        Some(format!("environment variable {var}"))
    } else {
        file.and_then(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let off = locate(&text, &path)?;
            Some(format!("{} line {}", f.display(), line_col(&text, off).0))
        })
    };
    match at {
        Some(at) => ConfigError::Located {
            at,
            error: Box::new(error),
        },
        None => error,
    }
}

/// Renders figment's error (possibly several) as one line per problem.
pub fn render(error: figment::Error) -> ConfigError {
    ConfigError::Load(error.into_iter().map(|e| render_one(&e)).collect())
}

fn render_one(e: &figment::Error) -> String {
    let origin = Origin::of(e.metadata.as_ref());
    if let Origin::File(path) = &origin
        && e.path.is_empty()
    {
        return file_problem(path, e);
    }
    let key = key_name(&e.path);
    let what = describe(&e.kind, &origin, &e.path);
    match origin {
        Origin::File(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let place = locate(&text, &e.path)
                .map(|off| format!(" line {}", line_col(&text, off).0))
                .unwrap_or_default();
            format!("{}{place}: {what}", path.display())
        }
        Origin::Env => format!("environment variable {}: {what}", env_name(&e.path)),
        Origin::Flag => format!("command-line option for `{key}`: {what}"),
        Origin::Unknown => what,
    }
}

/// A problem with the file as a whole: unreadable, or not TOML.
fn file_problem(path: &Path, e: &figment::Error) -> String {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(err) => return format!("cannot read {shown}: {}", without_errno(&err.to_string())),
    };
    match toml_edit::ImDocument::parse(text.as_str()) {
        Err(err) => syntax_error(&shown.to_string(), &text, &err),
        Ok(_) => format!("{shown}: {}", without_errno(&e.kind.to_string())),
    }
}

/// `FILE line L, column C: TOML syntax error: …` and the line with a caret.
fn syntax_error(shown: &str, text: &str, err: &toml_edit::TomlError) -> String {
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = err.span() else {
        return format!("{shown}: TOML syntax error: {message}");
    };
    let (line, col) = line_col(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("");
    format!(
        "{shown} line {line}, column {col}: TOML syntax error: {message}\n    {source_line}\n    {:>col$}",
        "^"
    )
}

/// What is wrong, with the key as written and a suggestion if one is near.
fn describe(kind: &Kind, origin: &Origin, path: &[String]) -> String {
    let key = key_name(path);
    match kind {
        Kind::UnknownField(found, expected) => {
            let parent = &path[..path.len().saturating_sub(1)];
            match (near_miss(found, expected), origin) {
                (Some(m), Origin::Env) => {
                    let mut fixed = parent.to_vec();
                    fixed.push(m.to_string());
                    format!("unknown key `{key}`; did you mean {}?", env_name(&fixed))
                }
                (Some(m), _) => format!("unknown key `{key}`; did you mean `{m}`?"),
                (None, _) => {
                    let under = if parent.is_empty() {
                        "valid top-level keys".to_string()
                    } else {
                        format!("valid keys under `{}`", key_name(parent))
                    };
                    format!("unknown key `{key}`; {under}: {}", one_of(expected))
                }
            }
        }
        Kind::UnknownVariant(found, expected) => {
            let hint = near_miss(found, expected)
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            format!(
                "`{key}` cannot be \"{found}\": expected one of {}{hint}",
                one_of(expected)
            )
        }
        Kind::InvalidType(actual, expected) => {
            format!(
                "`{key}` is {}, expected {}",
                actual_text(actual),
                friendly(expected)
            )
        }
        Kind::InvalidValue(actual, expected) => {
            format!(
                "`{key}` cannot be {}: expected {}",
                actual_text(actual),
                friendly(expected)
            )
        }
        Kind::MissingField(field) => format!("`{key}` needs `{field}`"),
        Kind::DuplicateField(field) => format!("`{key}`: `{field}` is given twice"),
        // Messages from our own Deserialize impls (socket addresses, IP nets, …).
        Kind::Message(m) if !key.is_empty() => format!("`{key}`: {}", without_errno(m)),
        other => without_errno(&other.to_string()).to_string(),
    }
}

fn actual_text(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("the string \"{s}\""),
        other => other.to_string(),
    }
}

/// serde's names for Rust types, in words.
fn friendly(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" => "a whole number (0 or more)".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "a boolean" => "true or false".into(),
        other => other.into(),
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing here (remove the key)".into(),
        [one] => format!("`{one}`"),
        _ => names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The expected name closest to `found`, if it is close enough to be what
/// the admin meant: a different case, `-` for `_`, a plural, or an edit
/// distance of at most 2 (1 for names of up to 5 letters, so `mode` does
/// not suggest `role`).
pub fn near_miss<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| {
        s.to_ascii_lowercase()
            .replace(['-', '_'], "")
            .trim_end_matches('s')
            .to_string()
    };
    let limit = if found.chars().count() <= 5 { 1 } else { 2 };
    expected
        .iter()
        .map(|&cand| {
            let d = if norm(found) == norm(cand) {
                0
            } else {
                strsim::damerau_levenshtein(found, cand)
            };
            (d, cand)
        })
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, cand)| cand)
}

/// `dkim.keys[0].file` from figment's `["dkim", "keys", "0", "file"]`
/// (without figment's `default.` profile).
pub fn key_name<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for seg in path {
        let seg = seg.as_ref();
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The variable that sets `path`: `AUTHGATE_SERVER__MAX_SESSIONS`.
pub fn env_name<S: AsRef<str>>(path: &[S]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|s| s.as_ref().to_ascii_uppercase())
        .collect();
    format!("AUTHGATE_{}", parts.join("__"))
}

/// Byte offset of the key at `path` in the TOML `text` (the deepest part
/// of the path that is there: the table, when the key itself is missing).
pub fn locate<S: AsRef<str>>(text: &str, path: &[S]) -> Option<usize> {
    use toml_edit::{Item, TableLike, Value};
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    let mut found: Option<Range<usize>> = None;
    let mut segs = path.iter().map(AsRef::as_ref).peekable();
    while let Some(seg) = segs.next() {
        let Some((key, item)) = table.get_key_value(seg) else {
            break;
        };
        found = key.span().or(found);
        let index = segs.peek().and_then(|s| s.parse::<usize>().ok());
        let next: Option<&dyn TableLike> = match (item, index) {
            (Item::ArrayOfTables(a), Some(i)) => a.get(i).map(|t| {
                found = t.span().or(found.clone());
                t as &dyn TableLike
            }),
            (Item::Value(Value::Array(a)), Some(i)) => a
                .get(i)
                .and_then(Value::as_inline_table)
                .map(|t| t as &dyn TableLike),
            (other, _) => other.as_table_like(),
        };
        if index.is_some() {
            segs.next();
        }
        match next {
            Some(t) => table = t,
            None => break,
        }
    }
    found.map(|r| r.start)
}

/// 1-based line and column (in characters) of byte offset `off`.
pub fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = text.get(..off).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let server = ["threads", "max_sessions", "max_recipients", "hostname"];
        for (found, want) in [
            ("max_sesions", Some("max_sessions")),
            ("MAX_SESSIONS", Some("max_sessions")),
            ("max-sessions", Some("max_sessions")),
            ("max_session", Some("max_sessions")),
            ("thread", Some("threads")),
            ("hostnmae", Some("hostname")),
            ("listen", None),
            ("max_foo", None),
        ] {
            assert_eq!(near_miss(found, &server), want, "{found}");
        }
        // Short names get one edit: `mode` is not a typo of `role`.
        assert_eq!(near_miss("mode", &["role"]), None);
        assert_eq!(near_miss("rol", &["role"]), Some("role"));
    }

    #[test]
    fn keys_are_named_as_written_and_as_variables() {
        assert_eq!(key_name(&["server", "max_sessions"]), "server.max_sessions");
        assert_eq!(
            key_name(&["dkim", "keys", "0", "file"]),
            "dkim.keys[0].file"
        );
        assert_eq!(
            env_name(&["server", "max_sessions"]),
            "AUTHGATE_SERVER__MAX_SESSIONS"
        );
    }

    #[test]
    fn locate_finds_keys_in_tables_arrays_of_tables_and_inline_tables() {
        let text = "authserv_id = \"x\"\n\n[server]\nthreads = 1\nmax_sesions = 5\n\n\
                    [[dkim.keys]]\nname = \"a\"\n\n[[dkim.keys]]\nname = \"b\"\nfile = \"k\"\n\
                    [dmarc]\nreject_action = { x = 1 }\n";
        for (path, line) in [
            (vec!["authserv_id"], 1),
            (vec!["server", "max_sesions"], 5),
            (vec!["dkim", "keys", "1", "file"], 12),
            // A missing key: the table that lacks it.
            (vec!["dkim", "keys", "0", "file"], 7),
            (vec!["dmarc", "reject_action", "x"], 14),
        ] {
            let off = locate(text, &path).expect("found");
            assert_eq!(line_col(text, off).0, line, "{path:?}");
        }
        assert_eq!(locate(text, &["nothing"]), None);
    }

    #[test]
    fn errno_suffix_is_dropped() {
        for (text, want) in [
            (
                "No such file or directory (os error 2)",
                "No such file or directory",
            ),
            ("Permission denied (os error 13)\n", "Permission denied"),
            ("plain", "plain"),
        ] {
            assert_eq!(without_errno(text), want);
        }
    }
}
