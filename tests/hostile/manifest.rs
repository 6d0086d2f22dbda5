//! The case files: every `*.toml` in `tests/hostile/`, each a list of
//! `[[case]]` tables.
//!
//! ```toml
//! [[case]]
//! name = "unique-name"
//! kind = "message"          # message | smtp | milter
//! about = "what it tries"
//! input = "From: a@example.com\r\n{{rep:100:X-H: {{i}}\r\n}}\r\nbody\r\n"
//! zone = "extra zone text"  # message: added to base.zone
//! envelope = { ip = "192.0.2.1", mail_from = "a@example.com", helo = "mx.example.com" }
//! sign = true               # message: signed first with rsa2048 d=example.com
//! tag_set = { a = "rsa-sha1" }, tag_drop = ["bh"], tag_dup = ["d"], tag_add = ["x=1"]
//! mangle_b = "spaces"        # or garbage | truncate; mangle_bh alike
//! known_failure = "why"     # the case fails today; the run says so
//! [case.expect]
//! dkim = ["permerror"]      # observed keys; `k_contains`, `k_lacks`, `k_max` too
//! ```

use std::path::Path;

/// How a case is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A message through the pipeline, with DNS from zone text.
    Message,
    /// A client dialogue through the SMTP proxy.
    Smtp,
    /// Packets through the milter connection loop.
    Milter,
}

/// The envelope of a message case.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    pub ip: Option<String>,
    pub mail_from: Option<String>,
    pub helo: Option<String>,
}

/// One case.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub about: String,
    pub input: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub envelope: Option<Env>,
    #[serde(default)]
    pub sign: bool,
    /// `s=` to sign with (default `rsa2048`; the key is always rsa2048.pem).
    #[serde(default)]
    pub sign_selector: Option<String>,
    /// `d=` to sign with (default `example.com`).
    #[serde(default)]
    pub sign_domain: Option<String>,
    #[serde(default)]
    pub tag_set: toml::Table,
    #[serde(default)]
    pub tag_drop: Vec<String>,
    #[serde(default)]
    pub tag_dup: Vec<String>,
    #[serde(default)]
    pub tag_add: Vec<String>,
    /// Rewrites the signature's b= value: `spaces` (FWS every 10
    /// characters), `garbage` (a `*` in the middle), `truncate` (8 fewer).
    #[serde(default)]
    pub mangle_b: Option<String>,
    /// The same for bh=.
    #[serde(default)]
    pub mangle_bh: Option<String>,
    #[serde(default)]
    pub known_failure: Option<String>,
    #[serde(default)]
    pub expect: toml::Table,
    /// The file it came from (set by the loader).
    #[serde(skip)]
    pub file: String,
}

impl Case {
    /// The case has counts that scale (a `{{rep:..}}` in its input or zone).
    pub fn scales(&self) -> bool {
        let values = self.tag_set.values().map(crate::value_text);
        let from = self.envelope.as_ref().and_then(|e| e.mail_from.clone());
        let mut texts = [self.input.clone(), self.zone.clone()]
            .into_iter()
            .chain(from)
            .chain(values)
            .chain(self.tag_add.iter().cloned());
        texts.any(|t| t.contains("{{rep:"))
    }
}

#[derive(serde::Deserialize)]
struct File {
    case: Vec<Case>,
}

/// Every case of every manifest, in file then case order; names are unique.
pub fn load_all(dir: &Path) -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        for mut c in file.case {
            c.file = stem.clone();
            cases.push(c);
        }
    }
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    cases
}
