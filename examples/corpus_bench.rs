//! In-process DKIM sign / verify throughput of authgate over a corpus made by
//! `../shared/bench-peers/gen_corpus.py`, printed like the peers' runners
//! (`mailauth-bench`, `summarize.py`) so the JSON lines can be compared.
//!
//! ```text
//! cargo run --release --example corpus_bench -- sign   CORPUS [--prefix s2k] [--repeat 5] [--out DIR]
//! cargo run --release --example corpus_bench -- verify CORPUS [--prefix s5m] [--repeat 5]
//! ```
//!
//! `sign` reads `CORPUS/msgs/*.eml` and signs with `CORPUS/key/rsa2048.pem` as
//! d=DOMAIN s=SELECTOR from `manifest.json` (example.com / bench), relaxed/relaxed,
//! the same header list as the other runners and no oversigning. `verify` reads
//! `CORPUS/signed/*.eml` (signed by dkimpy); the key record `CORPUS/key/dns.txt`
//! is served by a `ZoneResolver` built from zone-file text, so no network is used.
//!
//! Every message goes through the real `MessageJob` pipeline, read from the page
//! cache in 64 KiB chunks inside the timed loop (as the peers do). One JSON line
//! per repeat, then a `"median": true` line. `maxrss_kb` is the process's peak RSS
//! (`VmHWM`). `--out DIR` (sign) writes the signed copies of the first repeat, for
//! interop checks with the peers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use authgate::config::{Config, KeySettings, TableSettings};
use authgate::dkim::verify::DkimResult;
use authgate::dns::Resolver;
use authgate::dns::zone::ZoneResolver;
use authgate::pipeline::{Context, MessageJob, Options, Pushed};

/// Read size per chunk, as `authgate pipe` uses.
const CHUNK: usize = 64 * 1024;

/// The header list every runner in bench-peers signs.
const HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "List-Unsubscribe",
];

struct Args {
    op: String,
    corpus: PathBuf,
    prefix: String,
    repeat: usize,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: corpus_bench sign|verify CORPUS [--prefix s2k|s20k|s200k|s5m] [--repeat N] [--out DIR]";
    let mut it = std::env::args().skip(1);
    let (Some(op), Some(corpus)) = (it.next(), it.next()) else {
        bail!("{usage}");
    };
    if op != "sign" && op != "verify" {
        bail!("{usage}");
    }
    let mut a = Args {
        op,
        corpus: PathBuf::from(corpus),
        prefix: String::new(),
        repeat: 3,
        out: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--prefix" => a.prefix = value()?,
            "--repeat" => a.repeat = value()?.parse::<usize>()?.max(1),
            "--out" => a.out = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {flag}\n{usage}"),
        }
    }
    Ok(a)
}

/// `*.eml` files in `dir` whose names start with `prefix`, sorted.
fn list(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.ends_with(".eml") && n.starts_with(prefix)) {
            v.push(p);
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("no {prefix}*.eml in {}", dir.display());
    }
    Ok(v)
}

/// Peak RSS of this process in KiB (`VmHWM`), 0 if unknown.
fn maxrss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Domain and selector from `manifest.json` (defaults as gen_corpus.py).
fn identity(corpus: &Path) -> (String, String) {
    let manifest: serde_json::Value = std::fs::read_to_string(corpus.join("manifest.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let field = |k: &str, d: &str| manifest[k].as_str().unwrap_or(d).to_string();
    (field("domain", "example.com"), field("selector", "bench"))
}

/// A zone file with the key record; TXT split into 255-byte character-strings.
fn zone_text(corpus: &Path, domain: &str, selector: &str) -> Result<String> {
    let path = corpus.join("key/dns.txt");
    let txt = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let strings: Vec<String> = txt
        .trim()
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    Ok(format!(
        "{selector}._domainkey.{domain}. 3600 IN TXT {}\n",
        strings.join(" ")
    ))
}

fn sign_context(corpus: &Path, domain: &str, selector: &str) -> Result<Context> {
    let mut config = Config {
        authserv_id: "bench.example".into(),
        ..Config::default()
    };
    config.dkim.sign.headers = HEADERS.iter().map(|h| h.to_string()).collect();
    config.dkim.sign.oversign = Vec::new();
    config.dkim.sign.allow_insecure_key_permissions = true;
    config.dkim.keys.push(KeySettings {
        name: "bench".into(),
        domain: domain.into(),
        selector: selector.into(),
        file: corpus.join("key/rsa2048.pem"),
    });
    config.dkim.signing_table.push(TableSettings {
        pattern: "*".into(),
        keys: vec!["bench".into()],
    });
    Ok(config.context()?)
}

/// One message through the pipeline; returns (bytes read, ok).
async fn one<R: Resolver + 'static>(
    ctx: &Arc<Context>,
    resolver: &Arc<R>,
    opts: &Options,
    path: &Path,
    buf: &mut [u8],
    keep: Option<&mut Vec<u8>>,
) -> Result<(u64, bool)> {
    let mut job = MessageJob::new(Arc::clone(ctx), Arc::clone(resolver), opts.clone());
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut bytes = 0u64;
    let mut body = keep;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if let (Pushed::Body { from }, Some(b)) = (job.push(&buf[..n]), body.as_deref_mut()) {
            b.extend_from_slice(&buf[from..n]);
        }
    }
    let finished = job.finish().await?;
    let mut head = Vec::with_capacity(4096);
    finished.write_head(&mut head);
    std::hint::black_box(&head);
    let v = &finished.verdict;
    let ok = if opts.sign {
        !v.signed.is_empty()
    } else {
        v.dkim.iter().any(|d| d.result == DkimResult::Pass)
    };
    if let Some(b) = body {
        head.extend_from_slice(b);
        *b = head;
    }
    Ok((bytes, ok))
}

/// The fields of one result line, in the peers' order (without braces).
fn record(op: &str, msgs: usize, bytes: u64, ok: u64, secs: f64) -> String {
    format!(
        "\"tool\":\"authgate\",\"op\":\"{op}\",\"msgs\":{msgs},\"ok\":{ok},\"bytes\":{bytes},\"secs\":{secs:.4},\"msgs_per_s\":{:.1},\"MB_per_s\":{:.1},\"maxrss_kb\":{}",
        msgs as f64 / secs,
        bytes as f64 / 1e6 / secs,
        maxrss_kb()
    )
}

async fn run<R: Resolver + 'static>(
    a: &Args,
    ctx: Arc<Context>,
    resolver: Arc<R>,
    files: &[PathBuf],
) -> Result<Vec<(f64, String)>> {
    let sign = a.op == "sign";
    let mut buf = vec![0u8; CHUNK];
    let mut results = Vec::new();
    if let Some(o) = &a.out {
        std::fs::create_dir_all(o)?;
    }
    for r in 0..a.repeat {
        let opts = Options {
            verify: !sign,
            sign,
            now: now(),
            envelope: authgate::pipeline::Envelope::default(),
        };
        let t = Instant::now();
        let (mut bytes, mut ok) = (0u64, 0u64);
        for f in files {
            let mut copy = (r == 0 && a.out.is_some()).then(Vec::new);
            let (n, good) = one(&ctx, &resolver, &opts, f, &mut buf, copy.as_mut()).await?;
            bytes += n;
            ok += u64::from(good);
            if let (Some(o), Some(c), Some(name)) = (&a.out, copy, f.file_name()) {
                std::fs::write(o.join(name), c)?;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let rec = record(&a.op, files.len(), bytes, ok, secs);
        println!("{{{rec}}}");
        results.push((secs, rec));
    }
    Ok(results)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let (domain, selector) = identity(&a.corpus);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = if a.op == "sign" {
        let files = list(&a.corpus.join("msgs"), &a.prefix)?;
        let ctx = Arc::new(sign_context(&a.corpus, &domain, &selector)?);
        // Signing never looks anything up; an empty zone answers NXDOMAIN.
        let resolver = Arc::new(ZoneResolver::default());
        rt.block_on(run(&a, ctx, resolver, &files))?
    } else {
        let files = list(&a.corpus.join("signed"), &a.prefix)?;
        let mut config = Config {
            authserv_id: "bench.example".into(),
            ..Config::default()
        };
        // Like for like with the peers, which verify DKIM only: no DMARC walk.
        config.dmarc.enabled = false;
        let ctx = Arc::new(config.context()?);
        let zone = zone_text(&a.corpus, &domain, &selector)?;
        let resolver = Arc::new(ZoneResolver::parse(&zone, None)?);
        rt.block_on(run(&a, ctx, resolver, &files))?
    };
    results.sort_by(|x, y| x.0.total_cmp(&y.0));
    let med = results.get(results.len() / 2).context("no results")?;
    println!("{{\"median\":true,{}}}", med.1);
    Ok(())
}
