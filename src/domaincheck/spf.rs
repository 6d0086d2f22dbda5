//! SPF findings (RFC 7208): one `v=spf1` record (§4.5), its syntax (the
//! project's parser, [`crate::spf::record`]), the DNS lookup and void
//! lookup limits of §4.6.4 counted by walking the record tree, the `all`
//! term (§5.1), `ptr` (§5.5), and what the record authorises.
//!
//! Owns: the SPF findings and the lookup walk (bounded by `MAX_RECORDS`
//! records; loops end). Must not: evaluate SPF for a client address (that
//! is [`crate::spf::check_host`]) or expand macros.

use super::{Area, Finding, Level, add, txt_line, unchecked};
use crate::dns::{DnsError, Resolver};
use crate::spf::macros::{MacroString, Token};
use crate::spf::record::{Directive, Mechanism, Qualifier, Record, is_spf_record};

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
pub const LOOKUP_LIMIT: usize = 10;
/// RFC 7208 §4.6.4: at most 2 void lookups.
pub const VOID_LIMIT: usize = 2;
/// Records walked at most (includes and redirects), so loops and huge
/// trees end.
const MAX_RECORDS: usize = 30;

const A: Area = Area::Spf;

pub(super) async fn check<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    let records = match r.txt(domain).await {
        Ok(t) => t,
        Err(DnsError::NxDomain | DnsError::NoData) => Vec::new(),
        Err(DnsError::Temporary(why)) => return unchecked(out, A, domain, &why),
    };
    let spf: Vec<&Vec<u8>> = records.iter().filter(|t| is_spf_record(t)).collect();
    let raw = match spf.as_slice() {
        [] => {
            return add(
                out,
                A,
                Level::Error,
                format!(
                    "no SPF record (v=spf1) is published at {domain}: receivers cannot tell which hosts may send as {domain}."
                ),
                Some(txt_line(domain, "v=spf1 mx -all")),
            );
        }
        [one] => *one,
        several => {
            return add(
                out,
                A,
                Level::Error,
                format!(
                    "{} SPF records are published at {domain}: receivers return permerror (RFC 7208 §4.5); merge them into one.",
                    several.len()
                ),
                Some(txt_line(domain, &String::from_utf8_lossy(several[0]))),
            );
        }
    };
    let text = String::from_utf8_lossy(raw).into_owned();
    let record = match Record::parse(raw) {
        Ok(rec) => rec,
        Err(e) => {
            return add(
                out,
                A,
                Level::Error,
                format!(
                    "the SPF record \"{text}\" has a syntax error ({e}): receivers return permerror."
                ),
                Some(txt_line(domain, &salvage(&text))),
            );
        }
    };
    add(out, A, Level::Ok, describe(domain, &text, &record), None);
    check_all(domain, &record, out);
    check_ptr(domain, &record, out);
    Walk::new(r).run(domain, record, out).await;
}

/// The record with the terms that do not parse dropped (and `~all`
/// added when no `all` or `redirect` is left).
pub(super) fn salvage(text: &str) -> String {
    let good: Vec<&str> = text
        .split(' ')
        .skip(1)
        .filter(|t| !t.is_empty() && Record::parse(format!("v=spf1 {t}").as_bytes()).is_ok())
        .collect();
    let mut out = format!("v=spf1 {}", good.join(" "));
    let ends = good.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.trim_start_matches(['+', '-', '~', '?']) == "all" || t.starts_with("redirect=")
    });
    if !ends {
        out.push_str(" ~all");
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the record lets send, in words.
fn describe(domain: &str, text: &str, record: &Record) -> String {
    let mut allowed = Vec::new();
    for d in record
        .directives
        .iter()
        .filter(|d| d.qualifier == Qualifier::Pass)
    {
        let target = |spec: &Option<MacroString>| {
            spec.as_ref()
                .map_or_else(|| domain.to_owned(), ToString::to_string)
        };
        allowed.push(match &d.mechanism {
            Mechanism::All => continue,
            Mechanism::Include(s) => format!("the hosts {s} authorises"),
            Mechanism::A(s, _) => format!("the addresses of {}'s A/AAAA records", target(s)),
            Mechanism::Mx(s, _) => format!("the addresses of {}'s MX hosts", target(s)),
            Mechanism::Ptr(s) => format!("hosts whose reverse name ends in {}", target(s)),
            Mechanism::Ip4(..) | Mechanism::Ip6(..) => d.mechanism.to_string(),
            Mechanism::Exists(s) => format!("senders for which {s} exists"),
        });
    }
    let mut msg = format!("SPF record: \"{text}\"; it authorises ");
    let plus_all = first_all(record).is_some_and(|(_, d)| d.qualifier == Qualifier::Pass);
    msg.push_str(&if plus_all {
        "every host on the internet (+all)".to_owned()
    } else if allowed.is_empty() {
        "no host itself".to_owned()
    } else {
        allowed.join(", ")
    });
    msg.push_str(match first_all(record).map(|(_, d)| d.qualifier) {
        Some(Qualifier::Fail) => "; every other host fails (-all).",
        Some(Qualifier::SoftFail) => "; every other host soft-fails (~all).",
        _ if record.redirect.is_some() => "; the redirect= record decides for every other host.",
        _ => ".",
    });
    let explicit_plus = text
        .split(' ')
        .any(|t| t.starts_with('+') && !t[1..].eq_ignore_ascii_case("all"));
    if explicit_plus {
        msg.push_str(" (\"+\" is the default qualifier: \"+a\" means the same as \"a\".)");
    }
    msg
}

fn first_all(record: &Record) -> Option<(usize, &Directive)> {
    record
        .directives
        .iter()
        .enumerate()
        .find(|(_, d)| d.mechanism == Mechanism::All)
}

fn with_all(record: &Record, qualifier: Qualifier) -> String {
    let mut fixed = record.clone();
    match fixed
        .directives
        .iter_mut()
        .find(|d| d.mechanism == Mechanism::All)
    {
        Some(d) => d.qualifier = qualifier,
        None => fixed.directives.push(Directive {
            qualifier,
            mechanism: Mechanism::All,
        }),
    }
    fixed.to_string()
}

fn check_all(domain: &str, record: &Record, out: &mut Vec<Finding>) {
    let fix = |q| Some(txt_line(domain, &with_all(record, q)));
    match first_all(record) {
        Some((_, d)) if d.qualifier == Qualifier::Pass => add(
            out,
            A,
            Level::Error,
            "the record ends in +all: every host on the internet passes SPF for this domain; use -all (or ~all while you check your senders).",
            fix(Qualifier::Fail),
        ),
        Some((_, d)) if d.qualifier == Qualifier::Neutral => add(
            out,
            A,
            Level::Warning,
            "the record ends in ?all: hosts not listed get neutral, which receivers treat like no SPF at all; use -all (or ~all).",
            fix(Qualifier::Fail),
        ),
        Some((i, _)) if i + 1 < record.directives.len() => add(
            out,
            A,
            Level::Warning,
            "terms after \"all\" are never evaluated (RFC 7208 §5.1); move them before it.",
            None,
        ),
        Some(_) => {}
        None if record.redirect.is_some() => {}
        None => add(
            out,
            A,
            Level::Warning,
            "the record has neither \"all\" nor \"redirect=\": hosts not listed get neutral; end it with -all (or ~all).",
            fix(Qualifier::Fail),
        ),
    }
}

fn check_ptr(domain: &str, record: &Record, out: &mut Vec<Finding>) {
    if !record
        .directives
        .iter()
        .any(|d| matches!(d.mechanism, Mechanism::Ptr(_)))
    {
        return;
    }
    let mut fixed = record.clone();
    fixed
        .directives
        .retain(|d| !matches!(d.mechanism, Mechanism::Ptr(_)));
    add(
        out,
        A,
        Level::Warning,
        "the record uses \"ptr\": it is slow and unreliable and RFC 7208 §5.5 says not to use it; list the sending hosts with ip4:/ip6: or a: instead.",
        Some(txt_line(domain, &fixed.to_string())),
    );
}

/// The domain a domain-spec names, when it holds no macro, in the
/// resolvers' text form: its characters are octets, a `\` too, as the
/// evaluator queries them (RFC 7208 §7.1, §4.8).
fn literal(spec: &MacroString) -> Option<String> {
    match spec.tokens.as_slice() {
        [Token::Literal(s)] => Some(crate::dns::normalize_name(&crate::dns::name::escape_raw(s))),
        _ => None,
    }
}

/// RFC 7208 §4.6.4: an answer with no records, or NXDOMAIN.
fn is_void<T>(answer: &Result<Vec<T>, DnsError>) -> bool {
    match answer {
        Ok(v) => v.is_empty(),
        Err(DnsError::Temporary(_)) => false,
        Err(_) => true,
    }
}

/// Records still to walk, each with the chain of names that led to it.
type Queue = Vec<(Vec<String>, Record)>;

/// Counts DNS lookups and void lookups over the whole record tree.
struct Walk<'r, R> {
    r: &'r R,
    lookups: usize,
    voids: Vec<String>,
    with_macros: Vec<String>,
}

impl<'r, R: Resolver> Walk<'r, R> {
    fn new(r: &'r R) -> Self {
        Walk {
            r,
            lookups: 0,
            voids: Vec::new(),
            with_macros: Vec::new(),
        }
    }

    async fn run(mut self, domain: &str, record: Record, out: &mut Vec<Finding>) {
        // Each record with the chain of names that led to it: a name met
        // again on its own chain is a loop; elsewhere it counts again, as
        // receivers evaluate it again.
        let mut queue = vec![(vec![domain.to_owned()], record)];
        let mut walked = 0;
        while let Some((chain, rec)) = queue.pop() {
            walked += 1;
            if walked > MAX_RECORDS || self.lookups > 2 * LOOKUP_LIMIT {
                break;
            }
            for d in &rec.directives {
                self.directive(&chain, &d.mechanism, &mut queue, out).await;
            }
            if let Some(spec) = &rec.redirect {
                self.lookups += 1;
                self.follow(&chain, "redirect=", spec, &mut queue, out)
                    .await;
            }
        }
        self.report(out);
    }

    async fn directive(
        &mut self,
        chain: &[String],
        m: &Mechanism,
        queue: &mut Queue,
        out: &mut Vec<Finding>,
    ) {
        if !m.queries_dns() {
            return;
        }
        self.lookups += 1;
        let target = |spec: &Option<MacroString>| match spec {
            None => chain.last().cloned(),
            Some(s) => literal(s),
        };
        match m {
            Mechanism::Include(spec) => self.follow(chain, "include:", spec, queue, out).await,
            Mechanism::A(spec, _) => match target(spec) {
                Some(name) => self.addresses(&name, m).await,
                None => self.with_macros.push(m.to_string()),
            },
            Mechanism::Exists(spec) => match literal(spec) {
                Some(name) => self.addresses(&name, m).await,
                None => self.with_macros.push(m.to_string()),
            },
            Mechanism::Mx(spec, _) => match target(spec) {
                Some(name) => self.mx(&name, m, out).await,
                None => self.with_macros.push(m.to_string()),
            },
            _ => {}
        }
    }

    /// A/AAAA of `name`; void when neither has records.
    async fn addresses(&mut self, name: &str, m: &Mechanism) {
        if !is_void(&self.r.a(name).await) {
            return;
        }
        if is_void(&self.r.aaaa(name).await) {
            self.voids.push(m.to_string());
        }
    }

    async fn mx(&mut self, name: &str, m: &Mechanism, out: &mut Vec<Finding>) {
        match self.r.mx(name).await {
            ref answer if is_void(answer) => self.voids.push(m.to_string()),
            Ok(v) if v.len() > crate::spf::eval::MX_LIMIT => add(
                out,
                A,
                Level::Error,
                format!(
                    "\"{m}\": {name} has {} MX records; RFC 7208 §4.6.4 allows 10 for the mx mechanism, so receivers return permerror.",
                    v.len()
                ),
                None,
            ),
            _ => {}
        }
    }

    /// `include:` or `redirect=`: fetch the target's record and queue it.
    async fn follow(
        &mut self,
        chain: &[String],
        term: &str,
        spec: &MacroString,
        queue: &mut Queue,
        out: &mut Vec<Finding>,
    ) {
        let here = chain.last().map_or("", String::as_str);
        let Some(target) = literal(spec) else {
            self.with_macros.push(format!("{term}{spec}"));
            return;
        };
        let txts = match self.r.txt(&target).await {
            Ok(t) => t,
            Err(DnsError::NxDomain | DnsError::NoData) => {
                self.voids.push(format!("{term}{target}"));
                Vec::new()
            }
            Err(DnsError::Temporary(why)) => return unchecked(out, A, &target, &why),
        };
        let spf: Vec<&Vec<u8>> = txts.iter().filter(|t| is_spf_record(t)).collect();
        let problem = match spf.as_slice() {
            [one] => match Record::parse(one) {
                Ok(_) if chain.contains(&target) => {
                    format!("it leads back to {target} (a loop: receivers hit the lookup limit)")
                }
                Ok(rec) => {
                    let mut next = chain.to_vec();
                    next.push(target);
                    queue.push((next, rec));
                    return;
                }
                Err(e) => format!("its SPF record has a syntax error ({e})"),
            },
            [] => "it publishes no SPF record".to_owned(),
            several => format!("it publishes {} SPF records", several.len()),
        };
        add(
            out,
            A,
            Level::Error,
            format!(
                "\"{term}{target}\" (in the record of {here}) is broken: {problem}, so receivers return permerror."
            ),
            None,
        );
    }

    fn report(&self, out: &mut Vec<Finding>) {
        let (n, v) = (self.lookups, self.voids.len());
        if n > LOOKUP_LIMIT {
            add(out, A, Level::Error,
                format!("the record needs {n} DNS lookups counting its includes and redirects; RFC 7208 §4.6.4 allows {LOOKUP_LIMIT}, so receivers return permerror."),
                Some("replace include: terms by the ip4:/ip6: ranges they stand for, or drop senders you no longer use, until 10 lookups are left.".into()));
        } else {
            add(
                out,
                A,
                Level::Ok,
                format!("{n} of {LOOKUP_LIMIT} allowed DNS lookups (RFC 7208 §4.6.4)."),
                None,
            );
        }
        if v > VOID_LIMIT {
            add(
                out,
                A,
                Level::Error,
                format!(
                    "{v} lookups find nothing ({}); RFC 7208 §4.6.4 allows {VOID_LIMIT} such void lookups, so receivers return permerror.",
                    self.voids.join(", ")
                ),
                Some("remove the terms that point at names without records.".into()),
            );
        } else if v > 0 {
            add(
                out,
                A,
                Level::Warning,
                format!(
                    "{v} lookup(s) find nothing ({}): the terms point at names without records (RFC 7208 §4.6.4 allows {VOID_LIMIT}).",
                    self.voids.join(", ")
                ),
                Some("remove the terms that point at names without records.".into()),
            );
        }
        if !self.with_macros.is_empty() {
            add(
                out,
                A,
                Level::Ok,
                format!(
                    "terms with macros ({}) depend on the sender and were counted as one lookup each, not followed.",
                    self.with_macros.join(", ")
                ),
                None,
            );
        }
    }
}
