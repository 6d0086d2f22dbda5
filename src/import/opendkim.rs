//! `authgate import opendkim`: opendkim.conf(5) and opendmarc.conf(5), with
//! the KeyTable, SigningTable and host lists they name, into authgate TOML.
//!
//! Owns: the meaning of each OpenDKIM/OpenDMARC option (as their man pages
//! give it) and its authgate setting (README "Configuration" table). Every
//! line that cannot be mapped becomes a `#` comment saying why. Must not:
//! read files (the caller's reader does), print, or load the result (the
//! CLI runs `config check` logic separately).

use std::fmt::Write as _;

use crate::opendkim::{Dataset, dataset, signing_rows, table_lines};
pub use crate::opendkim::{KeyLine, TableLine, host_entry, parse_key_table, parse_signing_table};
use crate::sockaddr::SocketAddress;

/// The result of an import: the TOML text and what went wrong.
#[derive(Debug, Default)]
pub struct Import {
    /// The authgate configuration, unmapped lines as `#` comments.
    pub toml: String,
    /// Settings written.
    pub mapped: usize,
    /// Lines left as comments (each with its reason in `toml`).
    pub commented: usize,
    /// Important failures (a key, a table, a host list): exit 1.
    pub problems: Vec<String>,
}

/// Reads a file named by a configuration (KeyTable, SigningTable, host
/// lists): its text, or the reason it cannot be read.
pub type Reader<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// One configuration file: its name (for messages) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Path as given on the command line.
    pub path: &'a str,
    /// Contents.
    pub text: &'a str,
}

/// Translates `opendkim` (and `opendmarc`, if given) into authgate TOML.
pub fn import(opendkim: Source<'_>, opendmarc: Option<Source<'_>>, read: Reader<'_>) -> Import {
    let mut b = Builder::default();
    let dkim = options(opendkim.text);
    b.opendkim(&dkim, read);
    if let Some(src) = opendmarc {
        b.opendmarc(&options(src.text), read);
    }
    b.finish(opendkim, opendmarc)
}

/// `Name value` lines of a configuration file: comments and blank lines
/// dropped, names as written, values trimmed.
pub fn options(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                return None;
            }
            let (name, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            Some((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The last value given for option `name` (case-insensitive).
fn get<'a>(opts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The TOML being built, in a fixed section order.
#[derive(Default)]
struct Builder {
    top: Vec<String>,
    sign: Vec<String>,
    verify: Vec<String>,
    keys: Vec<KeyLine>,
    table: Vec<(String, Vec<String>)>,
    hosts: Vec<String>,
    authserv_ids: Vec<String>,
    spf: Vec<String>,
    dmarc: Vec<String>,
    report: Vec<String>,
    milter: Vec<String>,
    dns: Vec<String>,
    comments: Vec<String>,
    problems: Vec<String>,
    mapped: usize,
    /// `dkim.opendkim_*` settings that read the tables in place instead.
    in_place: Vec<String>,
}

impl Builder {
    fn set(section: &mut Vec<String>, mapped: &mut usize, line: String) {
        section.push(line);
        *mapped += 1;
    }

    fn skip(&mut self, line: &str, why: &str) {
        self.comments
            .push(format!("# {line}\n#   not mapped: {why}"));
    }

    fn problem(&mut self, line: &str, why: String) {
        self.comments
            .push(format!("# {line}\n#   NOT MAPPED: {why}"));
        self.problems.push(why);
    }

    fn read(&mut self, what: &str, path: &str, read: Reader<'_>) -> Option<String> {
        match read(path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.problem(
                    &format!("{what} {path}"),
                    format!("cannot read {what} {path}: {e}"),
                );
                None
            }
        }
    }

    fn opendkim(&mut self, opts: &[(String, String)], read: Reader<'_>) {
        let has_tables = get(opts, "KeyTable").is_some();
        if get(opts, "Canonicalization").is_none() {
            let line = format!(
                "canonicalization = {}   # OpenDKIM default (no Canonicalization)",
                q("simple/simple")
            );
            Self::set(&mut self.sign, &mut self.mapped, line);
        }
        if get(opts, "InternalHosts").is_none() {
            self.hosts.push("127.0.0.1/32".into());
            self.mapped += 1;
        }
        for (name, value) in opts {
            let line = format!("{name} {value}");
            self.dkim_option(name, value, &line, has_tables, read, opts);
        }
        if has_tables && get(opts, "SigningTable").is_none() {
            self.problem("KeyTable without SigningTable", "a KeyTable without a SigningTable signs nothing in authgate: add [[dkim.signing_table]] rows".into());
        }
    }

    fn dkim_option(
        &mut self,
        name: &str,
        value: &str,
        line: &str,
        has_tables: bool,
        read: Reader<'_>,
        opts: &[(String, String)],
    ) {
        let m = &mut self.mapped;
        match name.to_ascii_lowercase().as_str() {
            "keytable" => self.key_table(value, read),
            "signingtable" => self.signing_table(value, read),
            "internalhosts" => self.host_list(name, value, read),
            "externalignorelist" => self.skip(line, "not needed: authgate logs no \"external host signs as us\" warning; hosts to sign for go in trust.internal_hosts"),
            "peerlist" => self.skip(line, "no equivalent: every client is checked"),
            "mode" => {
                let role = match (value.contains('s'), value.contains('v')) {
                    (true, true) => "auto",
                    (true, false) => "outbound",
                    (false, true) => "inbound",
                    _ => return self.skip(line, "expected s, v or sv"),
                };
                Self::set(&mut self.milter, m, format!("role = {}              # Mode {value}", q(role)));
            }
            "canonicalization" => {
                let c = if value.contains('/') { value.to_ascii_lowercase() } else { format!("{}/simple", value.to_ascii_lowercase()) };
                Self::set(&mut self.sign, m, format!("canonicalization = {}", q(&c)));
            }
            "domain" | "selector" | "keyfile" if has_tables => self.skip(line, "ignored by OpenDKIM when a KeyTable is set"),
            "subdomains" if has_tables => self.skip(line, "applies to Domain only; write *@*.DOMAIN rows in the SigningTable"),
            "domain" => self.single_key(value, opts, read),
            "selector" | "keyfile" | "subdomains" => {}
            "oversignheaders" | "signheaders" => {
                let names: Vec<String> = value.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
                if value.contains(':') || names.iter().any(|h| h.starts_with('*') || h.starts_with('!')) {
                    return self.skip(line, "only a comma-separated list of header names is mapped");
                }
                let key = if name.eq_ignore_ascii_case("signheaders") { "headers" } else { "oversign" };
                Self::set(&mut self.sign, m, format!("{key} = {}", list(&names)));
            }
            "minimumkeybits" => match value.parse::<usize>() {
                Ok(bits) if (1024..=8192).contains(&bits) => Self::set(&mut self.verify, m, format!("min_rsa_bits = {bits}")),
                _ => self.skip(line, "authgate accepts 1024..=8192 (RFC 8301 floor); the default 1024 applies"),
            },
            "maximumsignaturestoverify" => match value.parse::<usize>() {
                Ok(n) => Self::set(&mut self.verify, m, format!("max_signatures = {n}")),
                Err(_) => self.skip(line, "not a number"),
            },
            "signaturettl" => match value.parse::<u64>() {
                Ok(n) => Self::set(&mut self.sign, m, format!("expire_after_secs = {n}")),
                Err(_) => self.skip(line, "not a number"),
            },
            "authservid" => self.authserv_id(value, line),
            "trustedauthservids" => self.trusted_ids(value),
            "socket" => self.socket(value, line),
            "umask" => match u32::from_str_radix(value, 8) {
                Ok(mask) => Self::set(&mut self.milter, m, format!("socket_mode = {}       # UMask {value}", q(&format!("0{:o}", 0o666 & !mask)))),
                Err(_) => self.skip(line, "not an octal mask"),
            },
            "sendreports" => match boolean(value) {
                Some(b) => Self::set(
                    &mut self.report,
                    m,
                    format!("dkim_failure_reports = {b}   # SendReports (RFC 6651: r=y signatures)"),
                ),
                None => self.skip(line, "expected true or false"),
            },
            "reportaddress" if self.report.iter().any(|l| l.starts_with("from =")) => {
                self.skip(line, "[report] from is already set")
            }
            "reportaddress" => Self::set(
                &mut self.report,
                m,
                format!("from = {}   # ReportAddress", q(value.trim())),
            ),
            "nameservers" => {
                let servers: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
                Self::set(&mut self.dns, m, format!("servers = {}", list(&servers)));
            }
            "softwareheader" => self.skip(line, "authgate adds no DKIM-Filter:/DMARC-Filter: header; the log line has the details"),
            "on-badsignature" | "on-keynotfound" | "on-nosignature" | "on-security" => self.skip(line, "authgate always accepts with the result in Authentication-Results; DMARC decides"),
            "on-dnserror" => self.skip(line, "see dmarc.temperror_action (accept | tempfail)"),
            "on-internalerror" | "on-signatureerror" => self.skip(line, "authgate always tempfails that message (451 4.3.0)"),
            "syslog" | "syslogsuccess" | "logwhy" | "logresults" | "syslogfacility" => self.skip(line, "authgate logs one line per message to stderr (journald)"),
            "userid" | "pidfile" | "background" | "autorestart" | "autorestartrate" => self.skip(line, "process management is the service manager's job (systemd unit)"),
            "testpublickeys" => self.skip(line, "use --dns-zone FILE / dns.zone_files"),
            _ => self.skip(line, "no authgate equivalent"),
        }
    }

    fn authserv_id(&mut self, value: &str, line: &str) {
        if value.eq_ignore_ascii_case("HOSTNAME") {
            return self.skip(line, "authserv_id = \"\" (the default) is the host name");
        }
        if self.top.iter().any(|l| l.starts_with("authserv_id")) {
            return self.skip(line, "authserv_id already set from the other configuration");
        }
        Self::set(
            &mut self.top,
            &mut self.mapped,
            format!("authserv_id = {}", q(value)),
        );
    }

    fn trusted_ids(&mut self, value: &str) {
        for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !self.authserv_ids.iter().any(|x| x == id) {
                self.authserv_ids.push(id.to_string());
            }
        }
        self.mapped += 1;
    }

    fn socket(&mut self, value: &str, line: &str) {
        let listen = match value.parse::<SocketAddress>() {
            Ok(_) => value.to_string(),
            Err(_) => match value
                .strip_prefix("inet:")
                .and_then(|p| p.parse::<u16>().ok())
            {
                Some(port) => format!("0.0.0.0:{port}"),
                None => {
                    return self.problem(
                        line,
                        format!("Socket {value:?}: expected inet:PORT@HOST or local:/path"),
                    );
                }
            },
        };
        if self.milter.iter().any(|l| l.starts_with("listen")) {
            return self.skip(line, "one milter now: authgate listens on the OpenDKIM socket; remove the OpenDMARC milter from smtpd_milters");
        }
        Self::set(
            &mut self.milter,
            &mut self.mapped,
            format!("listen = {}", q(&listen)),
        );
    }

    fn single_key(&mut self, domains: &str, opts: &[(String, String)], read: Reader<'_>) {
        let (Some(selector), Some(file)) = (get(opts, "Selector"), get(opts, "KeyFile")) else {
            return self.problem(
                &format!("Domain {domains}"),
                "Domain without Selector and KeyFile: no key to sign with".into(),
            );
        };
        let list: Vec<String> = match dataset(domains) {
            Dataset::Inline(l) => l.into_iter().map(String::from).collect(),
            Dataset::File(p) => match self.read("Domain", p, read) {
                Some(t) => table_lines(&t).map(|(_, l)| l.to_string()).collect(),
                None => return,
            },
            _ => {
                return self.problem(
                    &format!("Domain {domains}"),
                    "Domain: only a list or a file of domains is mapped".into(),
                );
            }
        };
        let subdomains = get(opts, "SubDomains").and_then(boolean).unwrap_or(false);
        for d in list {
            self.keys.push(KeyLine {
                line: 0,
                name: d.clone(),
                domain: d.clone(),
                selector: selector.into(),
                file: file.into(),
            });
            self.table.push((format!("*@{d}"), vec![d.clone()]));
            if subdomains {
                self.table.push((format!("*@*.{d}"), vec![d.clone()]));
            }
            self.mapped += 1;
        }
    }

    fn key_table(&mut self, value: &str, read: Reader<'_>) {
        let path = match dataset(value) {
            Dataset::File(p) | Dataset::Refile(p) => p,
            _ => {
                return self.problem(
                    &format!("KeyTable {value}"),
                    format!("KeyTable {value:?}: only a file (file:/path or /path) is mapped"),
                );
            }
        };
        self.in_place
            .push(format!("opendkim_key_table = {}", q(value)));
        let Some(text) = self.read("KeyTable", path, read) else {
            return;
        };
        let (keys, errors) = parse_key_table(&text);
        for e in errors {
            self.problem(
                &format!("KeyTable {path}"),
                format!("KeyTable {e} ({path})"),
            );
        }
        self.mapped += keys.len();
        self.keys.extend(keys);
    }

    fn signing_table(&mut self, value: &str, read: Reader<'_>) {
        let (path, refile) = match dataset(value) {
            Dataset::File(p) => (p, false),
            Dataset::Refile(p) => (p, true),
            _ => return self.problem(&format!("SigningTable {value}"), format!("SigningTable {value:?}: only a file (refile:/path, file:/path or /path) is mapped")),
        };
        self.in_place
            .push(format!("opendkim_signing_table = {}", q(value)));
        let Some(text) = self.read("SigningTable", path, read) else {
            return;
        };
        let (rows, errors) = parse_signing_table(&text);
        for e in errors {
            self.problem(
                &format!("SigningTable {path}"),
                format!("SigningTable {e} ({path})"),
            );
        }
        for row in signing_rows(rows, refile) {
            self.mapped += row.keys.len();
            match self.table.iter_mut().find(|(p, _)| *p == row.pattern) {
                Some((_, keys)) => keys.extend(row.keys),
                None => self.table.push((row.pattern, row.keys)),
            }
        }
    }

    fn host_list(&mut self, name: &str, value: &str, read: Reader<'_>) {
        let text;
        let entries: Vec<(String, String)> = match dataset(value) {
            Dataset::Inline(l) => l
                .into_iter()
                .map(|e| (e.to_string(), format!("{name} entry")))
                .collect(),
            Dataset::File(p) | Dataset::Refile(p) => {
                if name == "InternalHosts" {
                    self.in_place
                        .push(format!("opendkim_trusted_hosts = {}", q(value)));
                }
                let Some(t) = self.read(name, p, read) else {
                    return;
                };
                text = t;
                table_lines(&text)
                    .map(|(n, l)| (l.to_string(), format!("{name} {p} line {n}:")))
                    .collect()
            }
            Dataset::Other => {
                return self.problem(
                    &format!("{name} {value}"),
                    format!("{name} {value:?}: only a file or a list of addresses is mapped"),
                );
            }
        };
        let mut usable = 0;
        for (entry, whence) in &entries {
            match host_entry(entry) {
                Ok(net) => {
                    usable += 1;
                    if !self.hosts.contains(&net.to_string()) {
                        self.hosts.push(net.to_string());
                    }
                }
                Err(why) => self.skip(&format!("{whence} {entry}"), why),
            }
        }
        self.mapped += usable;
        if usable == 0 && !entries.is_empty() {
            self.problems.push(format!(
                "{name} {value}: no entry is an address or CIDR, so no host is trusted"
            ));
        }
    }

    fn opendmarc(&mut self, opts: &[(String, String)], read: Reader<'_>) {
        let mut reject_failures = false;
        for (name, value) in opts {
            let line = format!("OpenDMARC {name} {value}");
            let m = &mut self.mapped;
            match name.to_ascii_lowercase().as_str() {
                "authservid" => self.authserv_id(value, &line),
                "trustedauthservids" => self.trusted_ids(value),
                "ignorehosts" => self.host_list("IgnoreHosts", value, read),
                "rejectfailures" => reject_failures = boolean(value).unwrap_or(false),
                "requiredheaders" => match boolean(value) {
                    Some(b) => Self::set(
                        &mut self.dmarc,
                        m,
                        format!("require_valid_from = {b}   # RequiredHeaders"),
                    ),
                    None => self.skip(&line, "expected true or false"),
                },
                "spfselfvalidate" => match boolean(value) {
                    Some(true) => Self::set(
                        &mut self.spf,
                        m,
                        "enabled = true                 # SPFSelfValidate".into(),
                    ),
                    _ => self.skip(
                        &line,
                        "authgate always checks SPF itself ([spf] enabled = true)",
                    ),
                },
                "ignoreauthenticatedclients" => self.skip(
                    &line,
                    "always so in authgate: authenticated clients are signed, never rejected",
                ),
                "socket" => self.socket(value, &line),
                "historyfile" => Self::set(
                    &mut self.report,
                    m,
                    "enabled = true   # HistoryFile: rows go to the report store; `authgate report send` replaces opendmarc-import and opendmarc-reports".into(),
                ),
                "failurereports" => match boolean(value) {
                    Some(b) => Self::set(
                        &mut self.report,
                        m,
                        format!("failure_reports = {b}   # FailureReports"),
                    ),
                    None => self.skip(&line, "expected true or false"),
                },
                "failurereportssentby"
                    if self.report.iter().any(|l| l.starts_with("from =")) =>
                {
                    self.skip(&line, "[report] from is already set (OpenDKIM ReportAddress)")
                }
                "failurereportssentby" => Self::set(
                    &mut self.report,
                    m,
                    format!("from = {}   # FailureReportsSentBy", q(value.trim())),
                ),
                "failurereportsbcc" => self.skip(
                    &line,
                    "failure reports go only to the domain's ruf= destinations",
                ),
                "reportcommand" => self.skip(
                    &line,
                    "authgate submits report mail itself ([report] submission, or the next hop)",
                ),
                "softwareheader" => self.skip(
                    &line,
                    "authgate adds no DMARC-Filter: header; the log line has the details",
                ),
                "syslog" | "userid" | "pidfile" | "umask" => self.skip(
                    &line,
                    "process and logging settings belong to the service manager",
                ),
                _ => self.skip(&line, "no authgate equivalent"),
            }
        }
        let action = if reject_failures {
            "reject"
        } else {
            "quarantine"
        };
        let why = if reject_failures {
            "RejectFailures true"
        } else {
            "RejectFailures false (OpenDMARC default): p=reject failures are not refused"
        };
        Self::set(
            &mut self.dmarc,
            &mut self.mapped,
            format!("reject_action = {}   # {why}", q(action)),
        );
    }

    fn finish(mut self, dkim: Source<'_>, dmarc: Option<Source<'_>>) -> Import {
        for (_, keys) in &self.table {
            for k in keys {
                if !self.keys.iter().any(|key| &key.name == k) {
                    self.problems.push(format!(
                        "SigningTable names key {k:?}, which the KeyTable does not have"
                    ));
                }
            }
        }
        let mut out = String::new();
        let from = dmarc.map_or(String::new(), |d| format!(" and {}", d.path));
        let _ = writeln!(
            out,
            "# authgate configuration imported from {}{from}",
            dkim.path
        );
        let _ = writeln!(out, "# Check it with: authgate config check --config FILE");
        if !self.in_place.is_empty() {
            let _ = writeln!(
                out,
                "# Or read OpenDKIM's files in place, instead of the copies below \
                 (README \"Using OpenDKIM's tables in place\"):\n#   [dkim]"
            );
            for line in &self.in_place {
                let _ = writeln!(out, "#   {line}");
            }
        }
        out.push('\n');
        section(&mut out, None, &self.top);
        section(&mut out, Some("[dkim.sign]"), &self.sign);
        section(&mut out, Some("[dkim.verify]"), &self.verify);
        for k in &self.keys {
            let _ = writeln!(
                out,
                "[[dkim.keys]]\nname = {}\ndomain = {}\nselector = {}\nfile = {}\n",
                q(&k.name),
                q(&k.domain),
                q(&k.selector),
                q(&k.file)
            );
        }
        for (pattern, keys) in &self.table {
            let _ = writeln!(
                out,
                "[[dkim.signing_table]]\npattern = {}\nkeys = {}\n",
                q(pattern),
                list(keys)
            );
        }
        let mut trust = Vec::new();
        if !self.hosts.is_empty() {
            trust.push(format!("internal_hosts = {}", list(&self.hosts)));
        }
        if !self.authserv_ids.is_empty() {
            trust.push(format!(
                "trusted_authserv_ids = {}",
                list(&self.authserv_ids)
            ));
        }
        section(&mut out, Some("[trust]"), &trust);
        section(&mut out, Some("[spf]"), &self.spf);
        section(&mut out, Some("[dmarc]"), &self.dmarc);
        section(&mut out, Some("[report]"), &self.report);
        section(&mut out, Some("[milter]"), &self.milter);
        section(&mut out, Some("[dns]"), &self.dns);
        if !self.comments.is_empty() {
            out.push_str("# ---- not mapped ----\n");
            for c in &self.comments {
                let _ = writeln!(out, "{c}");
            }
        }
        Import {
            toml: out,
            mapped: self.mapped,
            commented: self.comments.len(),
            problems: self.problems,
        }
    }
}

fn section(out: &mut String, header: Option<&str>, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    if let Some(h) = header {
        let _ = writeln!(out, "{h}");
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(dkim: &str, dmarc: Option<&str>, files: &[(&str, &str)]) -> Import {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let read = move |p: &str| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| "No such file".to_string())
        };
        let src = |text| Source {
            path: "test.conf",
            text,
        };
        import(src(dkim), dmarc.map(src), &read)
    }

    #[test]
    fn options_map_to_settings() {
        for (line, want) in [
            (
                "Canonicalization relaxed",
                "canonicalization = \"relaxed/simple\"",
            ),
            (
                "Canonicalization relaxed/relaxed",
                "canonicalization = \"relaxed/relaxed\"",
            ),
            ("Mode v", "role = \"inbound\""),
            ("Mode s", "role = \"outbound\""),
            (
                "OversignHeaders From,Subject",
                "oversign = [\"from\", \"subject\"]",
            ),
            ("SignHeaders From, To", "headers = [\"from\", \"to\"]"),
            ("MinimumKeyBits 2048", "min_rsa_bits = 2048"),
            ("MinimumKeyBits 512", "# MinimumKeyBits 512\n#   not mapped"),
            (
                "AuthservID mx.example.com",
                "authserv_id = \"mx.example.com\"",
            ),
            (
                "Socket local:/run/opendkim.sock",
                "listen = \"local:/run/opendkim.sock\"",
            ),
            ("Socket inet:8891", "listen = \"0.0.0.0:8891\""),
            (
                "InternalHosts 10.0.0.0/8, 127.0.0.1",
                "internal_hosts = [\"10.0.0.0/8\", \"127.0.0.1/32\"]",
            ),
            (
                "Frobnicate yes",
                "# Frobnicate yes\n#   not mapped: no authgate equivalent",
            ),
            ("SendReports yes", "dkim_failure_reports = true"),
            (
                "ReportAddress postmaster@example.com",
                "from = \"postmaster@example.com\"",
            ),
        ] {
            let out = run(line, None, &[]);
            assert!(out.toml.contains(want), "{line}: {}", out.toml);
            assert!(out.problems.is_empty(), "{line}: {:?}", out.problems);
        }
    }

    #[test]
    fn opendmarc_options_map_to_settings() {
        for (line, want) in [
            ("RejectFailures true", "reject_action = \"reject\""),
            ("RejectFailures false", "reject_action = \"quarantine\""),
            ("RequiredHeaders true", "require_valid_from = true"),
            (
                "TrustedAuthservIDs a.example, b.example",
                "trusted_authserv_ids = [\"a.example\", \"b.example\"]",
            ),
            ("SPFSelfValidate true", "[spf]\nenabled = true"),
            ("IgnoreHosts 192.0.2.0/24", "\"192.0.2.0/24\""),
            (
                "HistoryFile /var/run/opendmarc/opendmarc.dat",
                "[report]\nenabled = true",
            ),
            ("FailureReports true", "failure_reports = true"),
            (
                "FailureReportsSentBy dmarc@example.com",
                "from = \"dmarc@example.com\"",
            ),
            (
                "ReportCommand /usr/sbin/sendmail -t",
                "#   not mapped: authgate submits",
            ),
        ] {
            let out = run("", Some(line), &[]);
            assert!(out.toml.contains(want), "{line}: {}", out.toml);
        }
    }

    #[test]
    fn tables_become_keys_and_rows() {
        let out = run(
            "KeyTable /kt\nSigningTable refile:/st\n",
            None,
            &[
                ("/kt", "rsa %:s1:/k/rsa\ned %:s2:/k/ed\n"),
                (
                    "/st",
                    "*@example.com rsa\n*@example.com ed\n*@*.example.org rsa\n",
                ),
            ],
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert!(
            out.toml
                .contains("pattern = \"*@example.com\"\nkeys = [\"rsa\", \"ed\"]"),
            "{}",
            out.toml
        );
        assert!(out.toml.contains("pattern = \"*@*.example.org\""));
        assert!(out.toml.contains("domain = \"%\""));
    }

    #[test]
    fn plain_signing_table_keys_become_patterns() {
        let out = run(
            "KeyTable /kt\nSigningTable /st\n",
            None,
            &[
                ("/kt", "k example.com:s:/k\n"),
                ("/st", "example.com k\n.example.net k\nuser@example.org k\n"),
            ],
        );
        for want in [
            "pattern = \"example.com\"",
            "pattern = \"*@*.example.net\"",
            "pattern = \"user@example.org\"",
        ] {
            assert!(out.toml.contains(want), "{want}: {}", out.toml);
        }
    }

    #[test]
    fn single_key_form_signs_the_domain_and_subdomains() {
        let out = run(
            "Domain example.com\nSelector mail\nKeyFile /k/mail.private\nSubDomains yes\n",
            None,
            &[],
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        for want in [
            "selector = \"mail\"",
            "pattern = \"*@example.com\"",
            "pattern = \"*@*.example.com\"",
        ] {
            assert!(out.toml.contains(want), "{want}: {}", out.toml);
        }
    }

    #[test]
    fn important_failures_are_problems() {
        for (conf, files, want) in [
            (
                "KeyTable /missing\nSigningTable /st\n",
                vec![("/st", "")],
                "cannot read KeyTable /missing",
            ),
            (
                "KeyTable /kt\nSigningTable /st\n",
                vec![("/kt", "bad\n"), ("/st", "")],
                "KeyTable line 1",
            ),
            (
                "KeyTable /kt\nSigningTable /st\n",
                vec![("/kt", ""), ("/st", "* nokey\n")],
                "\"nokey\"",
            ),
            ("KeyTable db:/kt.db\n", vec![], "only a file"),
            (
                "InternalHosts refile:/h\n",
                vec![("/h", "localhost\n*.example.com\n")],
                "no entry is an address",
            ),
            (
                "Domain example.com\n",
                vec![],
                "without Selector and KeyFile",
            ),
        ] {
            let out = run(conf, None, &files);
            assert!(
                out.problems.iter().any(|p| p.contains(want)),
                "{conf}: {:?}",
                out.problems
            );
        }
    }

    #[test]
    fn partly_mapped_host_list_is_not_a_problem() {
        let out = run(
            "InternalHosts /h\n",
            None,
            &[("/h", "127.0.0.1\nlocalhost\n")],
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert!(
            out.toml
                .contains("# InternalHosts /h line 2: localhost\n#   not mapped: a host name"),
            "{}",
            out.toml
        );
    }

    #[test]
    fn opendkim_defaults_are_written_out() {
        let out = run("", None, &[]);
        assert!(out.toml.contains("canonicalization = \"simple/simple\""));
        assert!(out.toml.contains("internal_hosts = [\"127.0.0.1/32\"]"));
    }
}
