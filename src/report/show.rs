//! What others saw of our domains: the received aggregate reports summed
//! per domain, per source address and per day, written as text, JSON, CSV
//! or one self-contained HTML page.
//!
//! A message passes DMARC when its record's `<policy_evaluated>` says DKIM
//! or SPF passed (aligned). A source "fails" when any of its messages did
//! not pass; it is "new" when first seen on the domain's last reported day
//! while earlier days exist.
//!
//! Owns: the summary and its writers. Must not: read the store, look names
//! up, or read the clock: it is pure over the rows and names it is given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use super::day_of;
use super::received::ReceivedRow;

/// One domain's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainSummary {
    /// The policy domain reported on.
    pub domain: String,
    /// Messages reported (sum of `<count>`).
    pub messages: u64,
    /// Of those, passing DMARC.
    pub dmarc_pass: u64,
    /// Of those, not passing DMARC.
    pub dmarc_fail: u64,
    /// `dmarc_pass / messages`, 0..1 (0 without messages).
    pub compliance: f64,
    /// Who reported (`<org_name>`), sorted.
    pub reporters: Vec<String>,
    /// Per source address, most messages first.
    pub sources: Vec<SourceSummary>,
    /// Per UTC day (of the report's begin), oldest first.
    pub days: Vec<DaySummary>,
    /// The last day reported: "new" sources are new on it.
    pub last_day: String,
}

/// One source address of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSummary {
    /// The address.
    pub ip: String,
    /// Its reverse DNS name (empty: none).
    pub ptr: String,
    /// Messages from it.
    pub messages: u64,
    /// Of those, with aligned DKIM passing.
    pub dkim_aligned_pass: u64,
    /// Of those, with aligned SPF passing.
    pub spf_aligned_pass: u64,
    /// Of those, passing DMARC.
    pub dmarc_pass: u64,
    /// Who reported it.
    pub reporters: Vec<String>,
    /// The first day it was reported.
    pub first_seen: String,
    /// Some of its messages failed DMARC.
    pub failing: bool,
    /// First seen on the last day, after earlier days without it.
    pub new: bool,
}

impl SourceSummary {
    /// Messages that failed DMARC.
    pub fn dmarc_fail(&self) -> u64 {
        self.messages.saturating_sub(self.dmarc_pass)
    }
}

/// One day of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaySummary {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Messages reported for it.
    pub messages: u64,
    /// Of those, passing DMARC.
    pub dmarc_pass: u64,
}

/// Sums the rows per domain; `ptrs` maps addresses to reverse names.
pub fn summarise(rows: &[ReceivedRow], ptrs: &HashMap<String, String>) -> Vec<DomainSummary> {
    let mut by_domain: BTreeMap<&str, Vec<&ReceivedRow>> = BTreeMap::new();
    for r in rows {
        by_domain.entry(r.domain.as_str()).or_default().push(r);
    }
    by_domain
        .into_iter()
        .map(|(domain, rows)| domain_summary(domain, &rows, ptrs))
        .collect()
}

fn domain_summary(
    domain: &str,
    rows: &[&ReceivedRow],
    ptrs: &HashMap<String, String>,
) -> DomainSummary {
    let mut days: BTreeMap<String, DaySummary> = BTreeMap::new();
    for r in rows {
        let day = day_of(r.begin);
        let d = days.entry(day.clone()).or_insert_with(|| DaySummary {
            day,
            messages: 0,
            dmarc_pass: 0,
        });
        d.messages = d.messages.saturating_add(r.count);
        d.dmarc_pass = d.dmarc_pass.saturating_add(passed(r));
    }
    let last_day = days.keys().next_back().cloned().unwrap_or_default();
    let sources = sources(rows, ptrs, &last_day, days.len() > 1);
    let messages = days
        .values()
        .fold(0u64, |n, d| n.saturating_add(d.messages));
    let dmarc_pass = days
        .values()
        .fold(0u64, |n, d| n.saturating_add(d.dmarc_pass));
    DomainSummary {
        domain: domain.to_string(),
        messages,
        dmarc_pass,
        dmarc_fail: messages.saturating_sub(dmarc_pass),
        compliance: ratio(dmarc_pass, messages),
        reporters: rows
            .iter()
            .map(|r| r.reporter.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        sources,
        days: days.into_values().collect(),
        last_day,
    }
}

fn passed(r: &ReceivedRow) -> u64 {
    if r.dmarc_pass() { r.count } else { 0 }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    part as f64 / whole as f64
}

fn sources(
    rows: &[&ReceivedRow],
    ptrs: &HashMap<String, String>,
    last_day: &str,
    has_history: bool,
) -> Vec<SourceSummary> {
    let mut by_ip: BTreeMap<&str, (SourceSummary, BTreeSet<&str>)> = BTreeMap::new();
    for r in rows {
        let day = day_of(r.begin);
        let (s, reporters) = by_ip.entry(r.source_ip.as_str()).or_insert_with(|| {
            let mut s = empty_source(&r.source_ip, ptrs);
            s.first_seen = day.clone();
            (s, BTreeSet::new())
        });
        let add = |n: &mut u64, yes: bool| *n = n.saturating_add(if yes { r.count } else { 0 });
        add(&mut s.messages, true);
        add(&mut s.dkim_aligned_pass, r.dkim == "pass");
        add(&mut s.spf_aligned_pass, r.spf == "pass");
        add(&mut s.dmarc_pass, r.dmarc_pass());
        if day < s.first_seen {
            s.first_seen = day;
        }
        reporters.insert(r.reporter.as_str());
    }
    let mut out: Vec<SourceSummary> = by_ip
        .into_values()
        .map(|(mut s, reporters)| {
            s.reporters = reporters.into_iter().map(str::to_string).collect();
            s.failing = s.dmarc_pass < s.messages;
            s.new = has_history && s.first_seen == last_day;
            s
        })
        .collect();
    out.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.ip.cmp(&b.ip)));
    out
}

fn empty_source(ip: &str, ptrs: &HashMap<String, String>) -> SourceSummary {
    SourceSummary {
        ip: ip.to_string(),
        ptr: ptrs.get(ip).cloned().unwrap_or_default(),
        messages: 0,
        dkim_aligned_pass: 0,
        spf_aligned_pass: 0,
        dmarc_pass: 0,
        reporters: Vec::new(),
        first_seen: String::new(),
        failing: false,
        new: false,
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// The readable table: per domain its totals, sources, failing and new
/// sources, and days.
pub fn write_text(out: &mut impl Write, domains: &[DomainSummary]) -> io::Result<()> {
    if domains.is_empty() {
        writeln!(
            out,
            "no reports received (authgate report ingest stores them)"
        )?;
    }
    for d in domains {
        write_text_domain(out, d)?;
    }
    Ok(())
}

fn write_text_domain(out: &mut impl Write, d: &DomainSummary) -> io::Result<()> {
    let first = d.days.first().map_or("", |x| x.day.as_str());
    writeln!(
        out,
        "{}: {} messages, {} pass DMARC, {} fail ({} compliant), {first} .. {}",
        d.domain,
        d.messages,
        d.dmarc_pass,
        d.dmarc_fail,
        percent(d.compliance),
        d.last_day
    )?;
    writeln!(out, "  reporters: {}", d.reporters.join(", "))?;
    writeln!(
        out,
        "  {:<39} {:<32} {:>9} {:>9} {:>9} {:>9}  reporters",
        "source", "ptr", "messages", "dkim", "spf", "dmarc"
    )?;
    for s in &d.sources {
        writeln!(
            out,
            "  {:<39} {:<32} {:>9} {:>9} {:>9} {:>9}  {}{}",
            s.ip,
            if s.ptr.is_empty() { "-" } else { &s.ptr },
            s.messages,
            s.dkim_aligned_pass,
            s.spf_aligned_pass,
            s.dmarc_pass,
            s.reporters.join(", "),
            if s.failing { "  FAILING" } else { "" }
        )?;
    }
    write_text_lists(out, d)?;
    writeln!(out, "  days:")?;
    for day in &d.days {
        writeln!(
            out,
            "    {}  {:>9} messages  {:>6} compliant",
            day.day,
            day.messages,
            percent(ratio(day.dmarc_pass, day.messages))
        )?;
    }
    writeln!(out)
}

fn write_text_lists(out: &mut impl Write, d: &DomainSummary) -> io::Result<()> {
    let failing: Vec<&SourceSummary> = d.sources.iter().filter(|s| s.failing).collect();
    if failing.is_empty() {
        writeln!(out, "  failing sources: none")?;
    } else {
        writeln!(
            out,
            "  failing sources (sending as {} without passing DMARC):",
            d.domain
        )?;
        for s in failing {
            writeln!(
                out,
                "    {} ({}): {} of {} messages failed, reported by {}",
                s.ip,
                if s.ptr.is_empty() { "no PTR" } else { &s.ptr },
                s.dmarc_fail(),
                s.messages,
                s.reporters.join(", ")
            )?;
        }
    }
    if d.days.len() < 2 {
        return writeln!(
            out,
            "  new sources: one day reported, nothing to compare with"
        );
    }
    let new: Vec<&SourceSummary> = d.sources.iter().filter(|s| s.new).collect();
    if new.is_empty() {
        return writeln!(out, "  new sources on {}: none", d.last_day);
    }
    writeln!(out, "  new sources on {} (not seen before):", d.last_day)?;
    for s in new {
        let ptr = if s.ptr.is_empty() { "no PTR" } else { &s.ptr };
        writeln!(out, "    {} ({ptr}): {} messages", s.ip, s.messages)?;
    }
    Ok(())
}

/// One JSON document: an array with one object per domain.
pub fn write_json(out: &mut impl Write, domains: &[DomainSummary]) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, domains).map_err(io::Error::other)?;
    writeln!(out)
}

/// The CSV columns.
pub const CSV_HEADER: &str = "domain,ip,ptr,messages,dkim_aligned_pass,spf_aligned_pass,\
     dmarc_pass,dmarc_fail,reporters,first_seen,failing,new";

/// One line per (domain, source address), after a header line.
pub fn write_csv(out: &mut impl Write, domains: &[DomainSummary]) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for d in domains {
        for s in &d.sources {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                csv(&d.domain),
                csv(&s.ip),
                csv(&s.ptr),
                s.messages,
                s.dkim_aligned_pass,
                s.spf_aligned_pass,
                s.dmarc_pass,
                s.dmarc_fail(),
                csv(&s.reporters.join(";")),
                s.first_seen,
                s.failing,
                s.new
            )?;
        }
    }
    Ok(())
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Text for HTML (element content and quoted attributes).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
.totals span{display:inline-block;margin-right:2em}.totals b{font-size:1.3em}\
table{border-collapse:collapse;margin:1em 0}th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}\
th{cursor:pointer;background:#f4f4f4;user-select:none}td.num,td.ip,td[data-field=first_seen]{white-space:nowrap}th.text,td.text{text-align:left}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
tr.failing td{background:#fde8e8}tr.failing td.dmarc{color:#b00;font-weight:bold}\
tr.new td.ip::after{content:' new';color:#06c;font-size:.8em}tfoot td{font-weight:bold}\
svg text{font-size:11px;fill:#444}.bar{fill:#4a9}.bar.low{fill:#d66}";

const SCRIPT: &str = r#"(function(){
function val(td,num){var v=td.getAttribute('data-value');if(v===null)v=td.textContent;return num?parseFloat(v)||0:v.toLowerCase();}
document.querySelectorAll('table.sources').forEach(function(t){
 var ths=t.querySelectorAll('thead th');
 ths.forEach(function(th,i){th.addEventListener('click',function(){
  var num=th.getAttribute('data-type')==='num';
  var asc=th.getAttribute('aria-sort')!=='ascending';
  ths.forEach(function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){var x=val(a.cells[i],num),y=val(b.cells[i],num);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
  rows.forEach(function(r){body.appendChild(r);});
 });});
 var sum={};Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
  Array.prototype.forEach.call(r.cells,function(td){var f=td.getAttribute('data-field');
   if(td.getAttribute('data-type')==='num'){sum[f]=(sum[f]||0)+(parseFloat(td.textContent)||0);}});});
 t.querySelectorAll('tfoot td[data-field]').forEach(function(td){var f=td.getAttribute('data-field');td.textContent=String(sum[f]||0);});
});
var m=/^#sort=([a-z_]+)(-desc)?$/.exec(location.hash);
if(m){document.querySelectorAll('table.sources thead th[data-field="'+m[1]+'"]').forEach(function(th){th.click();if(m[2])th.click();});}
document.body.setAttribute('data-js','ran');
})();"#;

/// One self-contained page (inline CSS, SVG and JS; nothing fetched).
/// The source tables sort by a click on a column header; `#sort=ip` (or
/// `#sort=messages-desc`) at the end of the page's address sorts them on
/// opening, for a link that shows the list as wanted.
pub fn write_html(
    out: &mut impl Write,
    domains: &[DomainSummary],
    generated: &str,
) -> io::Result<()> {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    page.push_str("<title>DMARC reports received</title><style>");
    page.push_str(STYLE);
    page.push_str("</style></head><body>\n<h1>DMARC reports received</h1>\n");
    let _ = writeln!(
        page,
        "<p>Generated {}. What receivers reported about mail using our domains.</p>",
        esc(generated)
    );
    if domains.is_empty() {
        page.push_str("<p>No reports received.</p>\n");
    }
    for d in domains {
        html_domain(&mut page, d);
    }
    page.push_str("<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body></html>\n");
    out.write_all(page.as_bytes())
}

fn html_domain(page: &mut String, d: &DomainSummary) {
    let dom = esc(&d.domain);
    let _ = writeln!(
        page,
        "<section class=\"domain\" data-domain=\"{dom}\">\n<h2>{dom}</h2>"
    );
    let _ = write!(page, "<p class=\"totals\">");
    for (field, value) in [
        ("messages", d.messages.to_string()),
        ("dmarc_pass", d.dmarc_pass.to_string()),
        ("dmarc_fail", d.dmarc_fail.to_string()),
        ("compliance", percent(d.compliance)),
    ] {
        let _ = write!(
            page,
            "<span>{}: <b data-field=\"{field}\">{value}</b></span>",
            field.replace('_', " ")
        );
    }
    let _ = writeln!(
        page,
        "</p>\n<p>Reporters: {}</p>",
        esc(&d.reporters.join(", "))
    );
    html_chart(page, d);
    html_sources(page, d);
    html_lists(page, d);
    page.push_str("</section>\n");
}

/// Compliance per day as bars (inline SVG).
fn html_chart(page: &mut String, d: &DomainSummary) {
    let (w, h, top, bottom, left) = (900usize, 220usize, 20usize, 40usize, 40usize);
    let n = d.days.len().max(1);
    let slot = (w - left) / n;
    let bar = (slot * 2 / 3).clamp(2, 60);
    let plot = h - top - bottom;
    let _ = write!(
        page,
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"DMARC compliance per day\">"
    );
    for (pct, y) in [(100, top), (50, top + plot / 2), (0, top + plot)] {
        let _ = write!(
            page,
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{w}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"2\" y=\"{}\">{pct}%</text>",
            y + 4
        );
    }
    for (i, day) in d.days.iter().enumerate() {
        let c = ratio(day.dmarc_pass, day.messages);
        let bh = (c * plot as f64).round() as usize;
        let x = left + i * slot + (slot - bar) / 2;
        let class = if c < 0.9 { "bar low" } else { "bar" };
        let _ = write!(
            page,
            "<rect class=\"{class}\" data-day=\"{}\" data-compliance=\"{c:.4}\" x=\"{x}\" y=\"{}\" \
             width=\"{bar}\" height=\"{bh}\"><title>{}: {} of {} messages pass</title></rect>\
             <text x=\"{x}\" y=\"{}\">{}</text><text class=\"pct\" x=\"{x}\" y=\"{}\">{}</text>",
            day.day,
            top + plot - bh,
            day.day,
            day.dmarc_pass,
            day.messages,
            h - bottom + 16,
            &day.day[day.day.len().saturating_sub(5)..],
            (top + plot - bh).saturating_sub(4).max(12),
            percent(c)
        );
    }
    page.push_str("</svg>\n");
}

const COLUMNS: &[(&str, &str, bool)] = &[
    ("ip", "Source", false),
    ("ptr", "Reverse DNS", false),
    ("messages", "Messages", true),
    ("dkim_aligned_pass", "DKIM aligned pass", true),
    ("spf_aligned_pass", "SPF aligned pass", true),
    ("dmarc_pass", "DMARC pass", true),
    ("dmarc_fail", "DMARC fail", true),
    ("reporters", "Reporters", false),
    ("first_seen", "First seen", false),
];

fn html_sources(page: &mut String, d: &DomainSummary) {
    page.push_str("<table class=\"sources\"><thead><tr>");
    for (field, title, num) in COLUMNS {
        let (class, ty) = if *num {
            ("num", "num")
        } else {
            ("text", "text")
        };
        let _ = write!(
            page,
            "<th class=\"{class}\" data-field=\"{field}\" data-type=\"{ty}\">{title}</th>"
        );
    }
    page.push_str("</tr></thead><tbody>\n");
    for s in &d.sources {
        let mut class = Vec::new();
        if s.failing {
            class.push("failing");
        }
        if s.new {
            class.push("new");
        }
        let _ = write!(
            page,
            "<tr class=\"{}\" data-ip=\"{}\">",
            class.join(" "),
            esc(&s.ip)
        );
        for (field, _, num) in COLUMNS {
            let v = source_field(s, field);
            let (c, ty) = if *num {
                ("num", "num")
            } else {
                ("text", "text")
            };
            let extra = match *field {
                "ip" => " ip",
                "dmarc_pass" | "dmarc_fail" => " dmarc",
                _ => "",
            };
            let _ = write!(
                page,
                "<td class=\"{c}{extra}\" data-field=\"{field}\" data-type=\"{ty}\">{}</td>",
                esc(&v)
            );
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody><tfoot><tr><td class=\"text\">Total</td><td></td>");
    for (field, _, num) in &COLUMNS[2..] {
        if *num {
            let _ = write!(page, "<td class=\"num\" data-field=\"{field}\"></td>");
        } else {
            page.push_str("<td></td>");
        }
    }
    page.push_str("</tr></tfoot></table>\n");
}

fn source_field(s: &SourceSummary, field: &str) -> String {
    match field {
        "ip" => s.ip.clone(),
        "ptr" => s.ptr.clone(),
        "messages" => s.messages.to_string(),
        "dkim_aligned_pass" => s.dkim_aligned_pass.to_string(),
        "spf_aligned_pass" => s.spf_aligned_pass.to_string(),
        "dmarc_pass" => s.dmarc_pass.to_string(),
        "dmarc_fail" => s.dmarc_fail().to_string(),
        "reporters" => s.reporters.join(", "),
        "first_seen" => s.first_seen.clone(),
        _ => String::new(),
    }
}

fn html_lists(page: &mut String, d: &DomainSummary) {
    let failing: Vec<&SourceSummary> = d.sources.iter().filter(|s| s.failing).collect();
    let _ = write!(page, "<h3>Failing sources</h3><ul class=\"failing\">");
    if failing.is_empty() {
        page.push_str("<li>none</li>");
    }
    for s in failing {
        let _ = write!(
            page,
            "<li data-ip=\"{}\">{} ({}): {} of {} messages failed DMARC, reported by {}</li>",
            esc(&s.ip),
            esc(&s.ip),
            esc(if s.ptr.is_empty() { "no PTR" } else { &s.ptr }),
            s.dmarc_fail(),
            s.messages,
            esc(&s.reporters.join(", "))
        );
    }
    let _ = write!(
        page,
        "</ul>\n<h3>New sources on {}</h3><ul class=\"new\">",
        esc(&d.last_day)
    );
    let new: Vec<&SourceSummary> = d.sources.iter().filter(|s| s.new).collect();
    if d.days.len() < 2 {
        page.push_str("<li>one day reported, nothing to compare with</li>");
    } else if new.is_empty() {
        page.push_str("<li>none</li>");
    }
    for s in new {
        let _ = write!(
            page,
            "<li data-ip=\"{}\">{} ({}): {} messages</li>",
            esc(&s.ip),
            esc(&s.ip),
            esc(if s.ptr.is_empty() { "no PTR" } else { &s.ptr }),
            s.messages
        );
    }
    page.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reporter: &str, day: i64, ip: &str, count: u64, dkim: &str, spf: &str) -> ReceivedRow {
        ReceivedRow {
            reporter: reporter.into(),
            report_id: format!("{reporter}-{day}"),
            domain: "example.com".into(),
            begin: day * 86_400,
            end: day * 86_400 + 86_399,
            source_ip: ip.into(),
            count,
            dkim: dkim.into(),
            spf: spf.into(),
            ..ReceivedRow::default()
        }
    }

    fn rows() -> Vec<ReceivedRow> {
        vec![
            row("google.com", 20_000, "192.0.2.1", 8, "pass", "pass"),
            row("google.com", 20_000, "192.0.2.9", 2, "fail", "fail"),
            row("Yahoo", 20_001, "192.0.2.1", 5, "pass", "fail"),
            row("Yahoo", 20_001, "198.51.100.3", 5, "fail", "pass"),
            row("Yahoo", 20_001, "203.0.113.4", 1, "fail", "fail"),
        ]
    }

    #[test]
    fn sums_per_domain_source_and_day() {
        let ptrs = HashMap::from([("192.0.2.1".to_string(), "mx.example.com".to_string())]);
        let s = summarise(&rows(), &ptrs);
        assert_eq!(s.len(), 1);
        let d = &s[0];
        assert_eq!((d.messages, d.dmarc_pass, d.dmarc_fail), (21, 18, 3));
        assert!((d.compliance - 18.0 / 21.0).abs() < 1e-9);
        assert_eq!(d.reporters, ["Yahoo", "google.com"]);
        assert_eq!(d.days.len(), 2);
        assert_eq!((d.days[1].messages, d.days[1].dmarc_pass), (11, 10));
        let top = &d.sources[0];
        assert_eq!(
            (top.ip.as_str(), top.ptr.as_str(), top.messages),
            ("192.0.2.1", "mx.example.com", 13)
        );
        assert_eq!((top.dkim_aligned_pass, top.spf_aligned_pass), (13, 8));
        assert!(!top.failing && !top.new);
        let new: Vec<&str> = d
            .sources
            .iter()
            .filter(|s| s.new)
            .map(|s| s.ip.as_str())
            .collect();
        assert_eq!(new, ["198.51.100.3", "203.0.113.4"]);
        let failing: Vec<&str> = d
            .sources
            .iter()
            .filter(|s| s.failing)
            .map(|s| s.ip.as_str())
            .collect();
        assert_eq!(failing, ["192.0.2.9", "203.0.113.4"]);
    }

    #[test]
    fn writers_show_the_numbers() {
        let s = summarise(&rows(), &HashMap::new());
        let mut text = Vec::new();
        write_text(&mut text, &s).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("example.com: 21 messages, 18 pass DMARC, 3 fail (85.7% compliant)"),
            "{text}"
        );
        assert!(text.contains("new sources on 2024-10-05"), "{text}");
        let mut csv = Vec::new();
        write_csv(&mut csv, &s).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 5);
        assert!(
            csv.contains("\nexample.com,192.0.2.9,,2,0,0,0,2,google.com,"),
            "{csv}"
        );
        let mut json = Vec::new();
        write_json(&mut json, &s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["messages"], 21);
        assert_eq!(v[0]["sources"][0]["reporters"][1], "google.com");
    }

    #[test]
    fn html_escapes_what_reporters_send() {
        let mut r = rows();
        r[0].reporter = "<script>alert(1)</script>".into();
        let mut html = Vec::new();
        write_html(&mut html, &summarise(&r, &HashMap::new()), "now").unwrap();
        let html = String::from_utf8(html).unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        for (input, want) in [
            ("a", "a"),
            ("a,b", "\"a,b\""),
            ("say \"x\"", "\"say \"\"x\"\"\""),
        ] {
            assert_eq!(csv(input), want);
        }
    }
}
