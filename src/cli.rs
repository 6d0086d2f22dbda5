//! Command line: parse arguments, load configuration, dispatch.
//!
//! Owns: the stable command-line contract (`sign`, `verify`, `pipe`, `key check`,
//! `check`, `keygen`, `config check`), exit codes, and printing. The only module that
//! writes to stdout for humans. Must not: hold protocol or policy logic;
//! the long-running commands hand over to [`crate::daemon`], key files are
//! read and written through [`crate::keyfile`], and the exit codes come
//! from [`crate::sysexits`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;

use crate::config::{Config, KeySettings, TableSettings, parse_canon};
use crate::dns::{self, Lookup};
use crate::keyfile::KeyFileError;
use crate::outcome::{Disposition, Fate, Front, InFlight, Origin, plan};
use crate::pipe::{self, SpoolSettings};
use crate::pipeline::{Context, Envelope};
use crate::role::Role;
use crate::sysexits::EX_TEMPFAIL;

mod key;
mod report;

const EXAMPLES_SIGN: &str = "Examples:
  authgate sign --domain example.com --selector s2026 --key /etc/authgate/keys/s2026.example.com.key < msg.eml > signed.eml
  authgate sign --domain example.com --selector ed2026 --key ed.key --algorithm ed25519-sha256 --headers from:to:subject:date < msg.eml";
const EXAMPLES_VERIFY: &str = "Examples:
  authgate verify message.eml                       # prints the Authentication-Results header
  authgate verify --json --dns-zone keys.zone *.eml # offline, one JSON object per message
  authgate verify --dns-server 127.0.0.1:5353 < message.eml";
const EXAMPLES_PIPE: &str = "Examples:
  authgate pipe < in.eml > out.eml                  # verify, add Authentication-Results
  authgate pipe --sign --config /etc/authgate/authgate.toml   # sign for domains in the signing table
  authgate pipe --reinject -f sender@example.org -- rcpt@example.com   # filter, then sendmail -G -i
Exim (remote_smtp transport):  transport_filter = /usr/local/bin/authgate pipe --sign
Postfix (master.cf pipe service):  argv=/usr/local/bin/authgate pipe --reinject -f ${sender} -- ${recipient}
Exit 75 (EX_TEMPFAIL) on any internal failure so the MTA retries; nothing is written then.";
const EXAMPLES_SERVE: &str = "Examples:
  authgate serve                                    # 127.0.0.1:10025 -> 127.0.0.1:10026 (Postfix content_filter)
  authgate serve --listen 127.0.0.1:10024 --protocol lmtp --next-hop unix:/run/dovecot/lmtp --next-hop-protocol lmtp
  authgate serve --listen 127.0.0.1:10027 --role outbound     # signing port for the submission service
Without --listen, the [[listener]] tables of the configuration are used.
SIGTERM: finish sessions in flight, then exit. SIGHUP: reload configuration and keys.";
const EXAMPLES_SPF: &str = "Examples:
  authgate spf --ip 192.0.2.1 --helo mail.example.org --mail-from alice@example.org
  authgate spf --ip 2001:db8::1 --helo mail.example.org --mail-from '' --json   # null sender: HELO identity
  authgate spf --ip 192.0.2.1 --helo mail.example.org --mail-from a@example.org --dns-zone test.zone";
const EXAMPLES_MILTER: &str = "Examples:
  authgate milter                                   # unix:/run/authgate/milter.sock (see [milter] in the config)
  authgate milter --listen inet:8891@127.0.0.1 --role auto
  authgate milter --listen unix:/var/spool/postfix/authgate/milter.sock --socket-group postfix
Postfix main.cf:  smtpd_milters = unix:/run/authgate/milter.sock   non_smtpd_milters = $smtpd_milters
                  milter_default_action = tempfail
SIGTERM/SIGINT: stop accepting, let sessions finish (server.shutdown_timeout_secs), exit 0.";
const EXAMPLES_KEYGEN: &str = "Examples:
  authgate keygen --domain example.com --selector s2026 --out /etc/authgate/keys
  authgate keygen --domain example.com --selector ed2026 --algorithm ed25519 --testing";

const EXAMPLES_CHECK: &str = "Examples:
  authgate check example.com                        # SPF, DKIM, DMARC, MX, rDNS, MTA-STS, TLS-RPT
  authgate check example.com --selector s2026 --selector ed2026
  authgate check example.com --json                 # {\"domain\", \"findings\": [{\"area\", \"level\", \"message\", \"fix\"}]}
  authgate check example.com --dns-zone example.zone   # offline, against a zone file
DKIM selectors: --selector, else those of [[dkim.keys]] for the domain in the configuration,
else the common names default, selector1, selector2, google, k1, mail, dkim, s1, s2.
The MTA-STS policy file (HTTPS) is not fetched: only DNS is used.
Exit status (monitoring plugin style): 0 no warning, 1 warnings, 2 errors or could not check.";

const EXAMPLES_IMPORT_OPENDKIM: &str = "Examples:
  authgate import opendkim > /etc/authgate/authgate.toml            # reads /etc/opendkim.conf and its tables
  authgate import opendkim /etc/opendkim.conf --opendmarc /etc/opendmarc.conf > authgate.toml
  authgate config check --config authgate.toml                      # then check the keys and tables
The TOML goes to stdout, every line not mapped is a `#` comment in it with the reason, the summary
goes to stderr. Exit 1 when a key, a table or a host list could not be mapped.";

/// authgate: DKIM signing and verification, Authentication-Results, in one binary.
#[derive(Debug, Parser)]
#[command(name = "authgate", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long = "log-format", value_enum, global = true, default_value = "text")]
    log_format: crate::log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SMTP/LMTP proxy (Postfix content_filter, smtpd_proxy_filter, Dovecot LMTP front).
    #[command(after_help = EXAMPLES_SERVE)]
    Serve(ServeArgs),
    /// Sign one message (stdin) with one key; signed message on stdout.
    #[command(after_help = EXAMPLES_SIGN)]
    Sign(SignArgs),
    /// Verify DKIM signatures of stdin or each FILE; print the A-R header or JSON.
    #[command(after_help = EXAMPLES_VERIFY)]
    Verify(VerifyArgs),
    /// Filter mode for Exim transport_filter / Postfix pipe(8): stdin to stdout.
    #[command(after_help = EXAMPLES_PIPE)]
    Pipe(PipeArgs),
    /// Evaluate SPF (RFC 7208) for a client address, HELO and MAIL FROM.
    #[command(after_help = EXAMPLES_SPF)]
    Spf(SpfArgs),
    /// Run as a milter for Postfix (smtpd_milters, non_smtpd_milters) or Sendmail.
    #[command(after_help = EXAMPLES_MILTER)]
    Milter(MilterArgs),
    /// Generate a DKIM key pair and print the DNS record to publish.
    #[command(after_help = EXAMPLES_KEYGEN)]
    Keygen(KeygenArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// DKIM key tools.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Check a domain's SPF, DKIM, DMARC, MX, reverse DNS, MTA-STS and TLS-RPT records.
    #[command(after_help = EXAMPLES_CHECK)]
    Check(CheckArgs),
    /// Translate another program's configuration into authgate's.
    #[command(subcommand)]
    Import(ImportCommand),
    /// DMARC reports: send ours, read others', see what the store holds.
    #[command(subcommand)]
    Report(report::ReportCommand),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The domain to check.
    domain: String,
    /// DKIM selector to check (repeatable; default: configured, else common names).
    #[arg(long, short = 's', value_name = "S")]
    selector: Vec<String>,
    /// Configuration file, for the selectors of [[dkim.keys]] and [dns]
    /// (default: /etc/authgate/authgate.toml if it exists).
    #[arg(long, short = 'c', env = "AUTHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Answer DNS from this RFC 1035 zone file (repeatable). Alone: fully offline.
    #[arg(long = "dns-zone", value_name = "FILE")]
    dns_zone: Vec<PathBuf>,
    /// Use this DNS server (IP or IP:PORT, repeatable) instead of /etc/resolv.conf.
    #[arg(long = "dns-server", value_name = "IP:PORT")]
    dns_server: Vec<String>,
    /// Print one JSON object: {"domain", "findings": [{"area", "level", "message", "fix"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Print the authgate.toml equivalent of opendkim.conf (and opendmarc.conf).
    #[command(after_help = EXAMPLES_IMPORT_OPENDKIM)]
    Opendkim(ImportOpendkimArgs),
}

#[derive(Debug, Args)]
struct ImportOpendkimArgs {
    /// The OpenDKIM configuration.
    #[arg(default_value = "/etc/opendkim.conf")]
    conf: PathBuf,
    /// The OpenDMARC configuration, merged in.
    #[arg(long, value_name = "CONF")]
    opendmarc: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (keys, permissions, tables) and print the effective config.
    #[command(
        after_help = "Example:\n  authgate config check --config /etc/authgate/authgate.toml"
    )]
    Check(CommonArgs),
}

/// Options shared by the commands that read configuration and DNS.
#[derive(Debug, Args, Clone, Default)]
struct CommonArgs {
    /// Configuration file (default: /etc/authgate/authgate.toml if it exists).
    #[arg(long, short = 'c', env = "AUTHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Answer DNS from this RFC 1035 zone file (repeatable). Alone: fully offline.
    #[arg(long = "dns-zone", value_name = "FILE")]
    dns_zone: Vec<PathBuf>,
    /// Use this DNS server (IP or IP:PORT, repeatable) instead of /etc/resolv.conf.
    #[arg(long = "dns-server", value_name = "IP:PORT")]
    dns_server: Vec<String>,
    /// Authserv-id for Authentication-Results (default: config, else host name).
    #[arg(long = "authserv-id")]
    authserv_id: Option<String>,
}

impl CommonArgs {
    fn overrides(&self) -> Figment {
        let mut f = Figment::new();
        if !self.dns_zone.is_empty() {
            f = f.merge(Serialized::default("dns.zone_files", &self.dns_zone));
        }
        if !self.dns_server.is_empty() {
            f = f.merge(Serialized::default("dns.servers", &self.dns_server));
        }
        if let Some(id) = &self.authserv_id {
            f = f.merge(Serialized::default("authserv_id", id));
        }
        f
    }

    fn load(&self, extra: Figment) -> Result<Config> {
        Ok(Config::load(
            self.config.as_deref(),
            self.overrides().merge(extra),
        )?)
    }
}

#[derive(Debug, Args)]
struct SignArgs {
    /// Signing domain (d=).
    #[arg(long, short = 'd')]
    domain: String,
    /// Selector (s=).
    #[arg(long, short = 's')]
    selector: String,
    /// Private key file (PEM/DER, PKCS#1/PKCS#8, RSA or Ed25519; mode 0600).
    #[arg(long, short = 'k')]
    key: PathBuf,
    /// Expected algorithm; must match the key.
    #[arg(long, short = 'a', value_parser = ["rsa-sha256", "ed25519-sha256"])]
    algorithm: Option<String>,
    /// Header fields to sign when present (colon or comma separated).
    #[arg(long)]
    headers: Option<String>,
    /// Header fields to oversign (colon or comma separated; "" for none).
    #[arg(long)]
    oversign: Option<String>,
    /// c= as header/body.
    #[arg(long, short = 'C', default_value = "relaxed/relaxed")]
    canonicalization: String,
    /// Add x= this many seconds after t=.
    #[arg(long = "expire-after")]
    expire_after: Option<u64>,
    /// Signing time (UNIX seconds) instead of the clock.
    #[arg(long)]
    now: Option<u64>,
    /// Accept a key file readable by group or others.
    #[arg(long = "allow-insecure-key")]
    allow_insecure_key: bool,
}

/// The SMTP envelope of the message, when the caller knows it.
#[derive(Debug, Args, Clone, Default)]
struct EnvelopeArgs {
    /// Connecting client address (SPF, iprev, DNSBL).
    #[arg(long = "client-ip", visible_alias = "ip", value_name = "IP")]
    client_ip: Option<std::net::IpAddr>,
    /// HELO/EHLO name the client gave.
    #[arg(long)]
    helo: Option<String>,
    /// MAIL FROM address ("" for the null sender).
    #[arg(
        long = "mail-from",
        short = 'f',
        visible_alias = "sender",
        value_name = "ADDR"
    )]
    mail_from: Option<String>,
    /// The client authenticated (SMTP AUTH): DMARC is reported, not enforced.
    #[arg(long)]
    authenticated: bool,
}

impl EnvelopeArgs {
    fn envelope(&self) -> Envelope {
        let mail_from = self
            .mail_from
            .as_ref()
            .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_string());
        Envelope {
            client_ip: self.client_ip,
            helo: self.helo.clone(),
            mail_from,
            authenticated: self.authenticated,
        }
    }
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    envelope: EnvelopeArgs,
    /// Verification time (UNIX seconds) instead of the clock.
    #[arg(long)]
    now: Option<u64>,
    /// One JSON object per message instead of the A-R header.
    #[arg(long)]
    json: bool,
    /// Messages to verify (default: stdin).
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct PipeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Sign for authors in the signing table.
    #[arg(long)]
    sign: bool,
    /// Verify and add Authentication-Results (default when --sign is not given).
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    envelope: EnvelopeArgs,
    /// Processing time (UNIX seconds) instead of the clock.
    #[arg(long)]
    now: Option<u64>,
    /// Postfix pipe(8) simple content filter: hand the filtered message to
    /// `sendmail -G -i -f SENDER -- RECIPIENT...` instead of stdout (needs -f
    /// and the recipients after --).
    #[arg(long)]
    reinject: bool,
    /// The sendmail program for --reinject (default: [pipe] sendmail, /usr/sbin/sendmail).
    #[arg(long, value_name = "PATH")]
    sendmail: Option<PathBuf>,
    /// Envelope recipients for --reinject.
    #[arg(last = true, value_name = "RECIPIENT")]
    recipients: Vec<String>,
}

impl PipeArgs {
    /// The reinjection to run after filtering, if --reinject was given.
    fn reinject(&self, config: &Config) -> Result<Option<pipe::Reinject>> {
        if !self.reinject {
            if !self.recipients.is_empty() {
                bail!("recipients after -- are only used with --reinject");
            }
            return Ok(None);
        }
        let Some(sender) = &self.envelope.mail_from else {
            bail!("--reinject needs the envelope sender: -f SENDER");
        };
        if self.recipients.is_empty() {
            bail!("--reinject needs the envelope recipients after --");
        }
        Ok(Some(pipe::Reinject {
            sendmail: config.pipe.sendmail.clone(),
            sender: sender.clone(),
            recipients: self.recipients.clone(),
        }))
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Listen here (IP:PORT, [IPv6]:PORT or unix:/path) instead of the configured listeners.
    #[arg(long)]
    listen: Option<String>,
    /// What the listener speaks.
    #[arg(long, value_parser = ["smtp", "lmtp"])]
    protocol: Option<String>,
    /// Where accepted mail goes (IP:PORT or unix:/path).
    #[arg(long = "next-hop")]
    next_hop: Option<String>,
    /// What the next hop speaks.
    #[arg(long = "next-hop-protocol", value_parser = ["smtp", "lmtp"])]
    next_hop_protocol: Option<String>,
    /// auto (sign for internal/authenticated clients, verify the rest), inbound, outbound, both.
    #[arg(long, value_parser = ["auto", "inbound", "outbound", "both"])]
    role: Option<String>,
    /// after-queue (content_filter) or before-queue (smtpd_proxy_filter).
    #[arg(long, value_parser = ["after-queue", "before-queue"])]
    mode: Option<String>,
}

impl ServeArgs {
    /// The listener flags as a TOML table, if any was given.
    fn listener_override(&self) -> Option<toml::Table> {
        let mut t = toml::Table::new();
        let fields = [
            ("listen", &self.listen),
            ("protocol", &self.protocol),
            ("next_hop", &self.next_hop),
            ("next_hop_protocol", &self.next_hop_protocol),
            ("role", &self.role),
            ("mode", &self.mode),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                t.insert(k.into(), toml::Value::String(v.clone()));
            }
        }
        (!t.is_empty()).then_some(t)
    }
}

#[derive(Debug, Args)]
struct SpfArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Client address.
    #[arg(long = "ip", visible_alias = "client-ip")]
    ip: std::net::IpAddr,
    /// HELO/EHLO name.
    #[arg(long, default_value = "")]
    helo: String,
    /// MAIL FROM address ("" or "<>" for the null sender; omitted: check HELO only).
    #[arg(long = "mail-from", short = 'f')]
    mail_from: Option<String>,
    /// Time for %{t} (UNIX seconds) instead of the clock.
    #[arg(long)]
    now: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct MilterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Socket: unix:/path, inet:PORT@HOST or IP:PORT (default: [milter] listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// auto | inbound | outbound | both (default: [milter] role).
    #[arg(long, value_parser = ["auto", "inbound", "outbound", "both"])]
    role: Option<String>,
    /// Unix socket permission bits, octal (default: [milter] socket_mode, 0660).
    #[arg(long = "socket-mode", value_name = "MODE")]
    socket_mode: Option<String>,
    /// Group given to the Unix socket, e.g. postfix.
    #[arg(long = "socket-group", value_name = "GROUP")]
    socket_group: Option<String>,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Domain the key signs for.
    #[arg(long, short = 'd')]
    domain: String,
    /// Selector.
    #[arg(long, short = 's')]
    selector: String,
    /// Key type.
    #[arg(long, short = 'a', default_value = "rsa", value_parser = ["rsa", "ed25519"])]
    algorithm: String,
    /// RSA modulus size.
    #[arg(long, short = 'b', default_value_t = 2048)]
    bits: usize,
    /// Directory for the private key file.
    #[arg(long, short = 'o', default_value = ".")]
    out: PathBuf,
    /// Publish the key in testing mode (t=y).
    #[arg(long)]
    testing: bool,
}

/// Parses arguments and runs the command; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Serve(_) | Command::Milter(_) => "warn,authgate=info",
        _ => "warn",
    };
    crate::log::init_logging(cli.log_format, level);
    // `sign` stands in the same place as `pipe` (a transport filter).
    let filter = matches!(cli.command, Command::Pipe(_) | Command::Sign(_));
    // `key check` and `check` are monitoring checks: not being able to run is an error (2).
    let failure = match cli.command {
        Command::Pipe(_) => EX_TEMPFAIL,
        Command::Key(key::KeyCommand::Check(_)) | Command::Check(_) => 2,
        _ => 1,
    };
    guarded(filter, || exit_code(failure, dispatch(cli.command)))
}

/// The exit status of a command's result: an error prints its text on
/// stderr and exits `failure` (75, `EX_TEMPFAIL`, in pipe mode: the MTA
/// retries; 2 for `key check` and `check`, monitoring checks; 1 otherwise).
pub fn exit_code(failure: u8, result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authgate: {}", said_once(&e));
            ExitCode::from(failure)
        }
    }
}

/// The error and its causes, each said once: a cause whose text the
/// message already contains (thiserror's `"…: {0}"` with `#[from]`) is not
/// repeated, and Rust's ` (os error N)` suffix is dropped.
fn said_once(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        let part = crate::keyfile::without_errno(&part);
        if text.contains(part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(part);
    }
    text
}

/// Runs the command `f`. With `filter` (`pipe`, `sign`: the MTA reads
/// stdout and acts on the exit status) a panic on any thread — the main
/// one, a spawned thread, a runtime task — ends the process at once with
/// 75 (`EX_TEMPFAIL`) after the panic message on stderr, so nothing more
/// reaches stdout and the MTA retries instead of bouncing on Rust's 101.
pub fn guarded(filter: bool, f: impl FnOnce() -> ExitCode) -> ExitCode {
    if filter {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            // Not eprintln!: a panic inside the hook would abort (134).
            let _ = writeln!(
                std::io::stderr(),
                "authgate: internal error, exiting {EX_TEMPFAIL} (try again later)"
            );
            std::process::exit(i32::from(EX_TEMPFAIL));
        }));
        tempfail_on_signals();
    }
    f()
}

/// A filter stopped by SIGTERM, SIGINT or SIGHUP (the MTA or an admin
/// stopping it mid-message) exits 75 (`EX_TEMPFAIL`) instead of dying of
/// the signal, so any MTA retries, whatever it makes of a signal death.
/// The handlers are installed here, before the filter reads anything; the
/// wait runs on a thread of its own (named "signals") with a small
/// runtime, so the filter's work never polls for it.
fn tempfail_on_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let installed = {
        let _in = rt.enter();
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        )
    };
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = installed else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let which = rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hup.recv() => "SIGHUP",
                }
            });
            let _ = writeln!(
                std::io::stderr(),
                "authgate: {which}, exiting {EX_TEMPFAIL} (try again later)"
            );
            std::process::exit(i32::from(EX_TEMPFAIL));
        });
    if let Err(e) = spawned {
        let _ = writeln!(std::io::stderr(), "authgate: no signal thread: {e}");
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve(a) => serve(a),
        Command::Sign(a) => sign(a),
        Command::Verify(a) => verify(a),
        Command::Pipe(a) => pipe_cmd(a),
        Command::Keygen(a) => keygen(a),
        Command::Milter(a) => milter_cmd(a),
        Command::Spf(a) => spf(a),
        Command::Config(ConfigCommand::Check(a)) => config_check(a),
        Command::Key(c) => key::dispatch(c),
        Command::Check(a) => domain_check(a),
        Command::Import(ImportCommand::Opendkim(a)) => import_opendkim(a),
        Command::Report(c) => report::dispatch(c),
    }
}

/// The runtime of the one-shot commands: two workers, so DNS lookups run
/// while the message is read from stdin with blocking reads.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The runtime of `serve`/`milter` (`server.threads`): one thread by
/// default — every socket is non-blocking, one core verifies thousands of
/// messages a second, and a second worker costs cross-thread wake-ups (10 %
/// more CPU per message in the milter, measured with Postfix); 0 = one
/// worker per CPU core. The configuration is read once more by the server.
fn server_runtime(load: &crate::daemon::Loader) -> Result<tokio::runtime::Runtime> {
    let threads = load().map_or(1, |c| c.server.threads);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn now_or_clock(now: Option<u64>) -> u64 {
    now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

fn spool_settings(c: &Config) -> SpoolSettings {
    SpoolSettings {
        threshold: c.message.spool_threshold,
        dir: c.message.spool_dir.clone(),
    }
}

/// A resolver for commands that never look anything up (signing only).
struct NoDns;

impl Lookup for NoDns {
    async fn lookup(&self, _: &str, _: dns::RecordType) -> dns::Answer {
        dns::Answer::temporary("DNS is not used by this command")
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([':', ','])
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

fn sign(a: SignArgs) -> Result<ExitCode> {
    parse_canon(&a.canonicalization)
        .with_context(|| format!("bad --canonicalization {:?}", a.canonicalization))?;
    let mut config = Config::default();
    config.dkim.sign.canonicalization = a.canonicalization.clone();
    config.dkim.sign.allow_insecure_key_permissions = a.allow_insecure_key;
    config.dkim.sign.expire_after_secs = a.expire_after.unwrap_or(0);
    if let Some(h) = &a.headers {
        config.dkim.sign.headers = split_list(h);
    }
    if let Some(o) = &a.oversign {
        config.dkim.sign.oversign = split_list(o);
    }
    config.dkim.keys.push(KeySettings {
        name: "cli".into(),
        domain: a.domain.clone(),
        selector: a.selector.clone(),
        file: a.key.clone(),
    });
    config.dkim.signing_table.push(TableSettings {
        pattern: "*".into(),
        keys: vec!["cli".into()],
    });
    // The key file is read once, here (a private-key import costs an RSA
    // consistency check in aws-lc).
    let ctx = Arc::new(config.context().map_err(|e| match e {
        crate::config::ConfigError::KeyFile {
            error: e @ KeyFileError::Permissions { .. },
            ..
        } => anyhow!("{e} (or pass --allow-insecure-key)"),
        crate::config::ConfigError::KeyFile { error, .. } => error.into(),
        e => e.into(),
    })?);
    let key = ctx
        .signing
        .as_ref()
        .and_then(|s| s.table.first())
        .and_then(|row| row.keys.first())
        .map(|k| Arc::clone(&k.key))
        .context("no signing key")?;
    if let Some(alg) = &a.algorithm
        && key.algorithm().as_str() != alg
    {
        bail!(
            "--algorithm {alg} does not match the key in {} ({})",
            a.key.display(),
            key.algorithm().as_str()
        );
    }
    // The table's only row is "*", which matches any author, even none.
    // Nothing is looked up, so nothing runs beside the blocking reads of
    // stdin: one thread, no workers to start.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let plan = plan(Role::Outbound, &Origin::default());
    let msg = InFlight::start(Front::Pipe, ctx, NoDns, plan, Envelope::default(), a.now);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // A message that cannot be signed (RFC 6376 §5.4: no From, or several)
    // is an error here, with nothing on stdout: the caller asked for a
    // signature and still has its message.
    let not_signed = |f: &Fate| f.verdict().and_then(|v| v.not_signed.clone());
    let fate = pipe::filter_if(
        &rt,
        msg,
        &spool_settings(&config),
        &mut std::io::stdin().lock(),
        &mut out,
        |f| not_signed(f).is_none(),
    )?;
    fate.emit();
    if fate.answer.is_some() {
        bail!("{}", fate.reason.as_deref().unwrap_or("signing failed"));
    }
    if let Some(why) = not_signed(&fate) {
        bail!("message not signed: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let config = a.common.load(Figment::new())?;
    let shared = Arc::new(dns::build(&config.dns)?);
    let ctx = Arc::new(config.context()?);
    let rt = runtime()?;
    let plan = plan(Role::Inbound, &Origin::default());
    let envelope = a.envelope.envelope();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let inputs: Vec<Option<&Path>> = if a.files.is_empty() {
        vec![None]
    } else {
        a.files.iter().map(|f| Some(f.as_path())).collect()
    };
    for input in inputs {
        let msg = |ctx: &Arc<Context>| {
            let (ctx, dns) = (Arc::clone(ctx), Arc::clone(&shared));
            InFlight::start(Front::Verify, ctx, dns, plan, envelope.clone(), a.now)
        };
        let fate = match input {
            None => pipe::check(&rt, msg(&ctx), &mut std::io::stdin().lock())?,
            Some(path) => {
                let mut f = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                pipe::check(&rt, msg(&ctx), &mut f)?
            }
        };
        fate.emit();
        let Some(v) = fate.verdict() else {
            bail!(
                "{}",
                fate.reason.as_deref().unwrap_or("verification failed")
            );
        };
        let ar = fate
            .edits()
            .authentication_results()
            .map(|h| String::from_utf8_lossy(h.raw()).into_owned())
            .unwrap_or_default();
        if a.json {
            let mut obj = serde_json::json!({
                "dkim": v.dkim,
                "spf": v.spf_mailfrom.as_ref().map(spf_json),
                "spf_helo": v.spf_helo.as_ref().map(spf_json),
                "dmarc": v.dmarc.as_ref().map(|d| dmarc_json(d, &v.decision)),
                "iprev": v.iprev,
                "dnsbl": v.dnsbl,
                "authentication_results": ar.trim_end(),
            });
            if let Some(p) = input {
                obj["file"] = serde_json::Value::String(p.display().to_string());
            }
            writeln!(out, "{obj}")?;
        } else {
            out.write_all(ar.replace("\r\n", "\n").as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spf_json(o: &crate::spf::SpfOutcome) -> serde_json::Value {
    serde_json::json!({
        "result": o.result.as_str(),
        "explanation": o.explanation,
        "reason": o.reason,
        "mechanism": o.mechanism,
    })
}

fn dmarc_json(o: &crate::dmarc::DmarcOutcome, d: &crate::policy::Decision) -> serde_json::Value {
    serde_json::json!({
        "result": o.result.as_str(),
        "policy": o.policy.map(|p| crate::dmarc::Disposition::from(p).as_str()),
        "requested_disposition": o.disposition.as_str(),
        "disposition": d.applied.as_str(),
        "override": d.override_reason,
        "domain": o.domain,
        "policy_domain": o.policy_domain,
        "testing": o.testing,
        "spf_aligned": o.spf_aligned,
        "dkim_aligned": o.dkim_aligned,
        "reason": o.reason,
    })
}

fn pipe_cmd(a: PipeArgs) -> Result<ExitCode> {
    let mut flags = Figment::new();
    if let Some(path) = &a.sendmail {
        flags = flags.merge(Serialized::default("pipe.sendmail", path));
    }
    let config = a.common.load(flags)?;
    let reinject = a.reinject(&config)?;
    let verify = a.verify || !a.sign;
    let role = match (verify, a.sign) {
        (true, true) => Role::Both,
        (false, _) => Role::Outbound,
        (true, false) => Role::Inbound,
    };
    let plan = plan(role, &Origin::default());
    let envelope = a.envelope.envelope();
    let ctx = Arc::new(config.context()?);
    let rt = runtime()?;
    let spool = spool_settings(&config);
    if config.report.enabled {
        let store = config.report.store.clone();
        crate::outcome::observe(
            "report",
            Arc::new(crate::report::writer::OneShot {
                store,
                failure_reports: config.report.failure_reports,
                dkim_reports: config.report.dkim_failure_reports,
            }),
        );
    }
    let mut input = std::io::stdin().lock();
    let run = |out: &mut dyn Write| -> Result<Fate> {
        let mut out = out;
        if !verify {
            let msg = InFlight::start(Front::Pipe, ctx, NoDns, plan, envelope, a.now);
            return Ok(pipe::filter(&rt, msg, &spool, &mut input, &mut out)?);
        }
        let dns = dns::build(&config.dns)?;
        let msg = InFlight::start(Front::Pipe, ctx, dns, plan, envelope, a.now);
        Ok(pipe::filter(&rt, msg, &spool, &mut input, &mut out)?)
    };
    // With --reinject the output goes to a temp file first: sendmail starts
    // only once the whole message is ready, so nothing half-filtered is sent.
    let (mut fate, output) = match &reinject {
        None => (run(&mut std::io::stdout().lock())?, None),
        Some(_) => {
            let mut file = std::io::BufWriter::new(
                pipe::output_file(&spool).context("cannot create the output spool file")?,
            );
            let fate = run(&mut file)?;
            let file = file.into_inner().map_err(|e| e.into_error())?;
            (fate, Some(file))
        }
    };
    if let (Some(r), Some(file), true) = (&reinject, output, fate.delivers())
        && let Err(e) = r.send(file)
    {
        fate.overrule(crate::outcome::Refusal::NextHop(e.to_string()));
        fate.told = Some(format!("tempfail: try again later: {e}"));
        fate.emit();
        eprintln!("authgate: try again later: {e}");
        return Ok(ExitCode::from(EX_TEMPFAIL));
    }
    fate.emit();
    if let Some(answer) = &fate.answer {
        eprintln!("authgate: {answer}");
    }
    Ok(match fate.disposition {
        Disposition::Tempfail => ExitCode::from(EX_TEMPFAIL),
        Disposition::Reject => ExitCode::from(config.pipe.reject_exit_code),
        Disposition::Accept | Disposition::Quarantine => {
            if let Some(r) = &reinject {
                tracing::info!(sendmail = %r.sendmail.display(), recipients = r.recipients.len(), "message reinjected");
            }
            ExitCode::SUCCESS
        }
    })
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let over = a.listener_override();
    let common = a.common.clone();
    let load: crate::daemon::Loader = Box::new(move || {
        let mut config = common.load(Figment::new()).map_err(|e| said_once(&e))?;
        if let Some(t) = &over {
            if config.listener.len() > 1 {
                return Err("--listen/--protocol/--next-hop/... apply to one listener, \
                            but the configuration has several [[listener]] tables"
                    .into());
            }
            // The flags go over the one configured listener (or the default one).
            let base = config.listener.pop().unwrap_or_default();
            let mut table = toml::Table::try_from(&base).map_err(|e| e.to_string())?;
            table.extend(t.clone());
            let l = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| format!("listener flags: {}", e.message()))?;
            config.listener = vec![l];
        }
        Ok(config)
    });
    let rt = server_runtime(&load)?;
    rt.block_on(crate::daemon::run(load))
        .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

fn spf(a: SpfArgs) -> Result<ExitCode> {
    use crate::spf::{Identity, SpfOptions, received_spf_header, verify_helo, verify_mail_from};
    let config = a.common.load(Figment::new())?;
    let resolver = Arc::new(dns::build(&config.dns)?);
    let opts = SpfOptions {
        receiver: config.effective_authserv_id(),
        now: now_or_clock(a.now),
        ..SpfOptions::default()
    };
    let rt = runtime()?;
    let (outcome, identity) = rt.block_on(async {
        match &a.mail_from {
            Some(from) => (
                verify_mail_from(&*resolver, a.ip, from, &a.helo, &opts).await,
                Identity::MailFrom,
            ),
            None => (
                verify_helo(&*resolver, a.ip, &a.helo, &opts).await,
                Identity::Helo,
            ),
        }
    });
    let from = a.mail_from.clone().unwrap_or_default();
    let received = received_spf_header(&outcome, identity, a.ip, &a.helo, &from, &opts.receiver);
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = spf_json(&outcome);
        v["identity"] = serde_json::Value::String(identity.as_str().into());
        v["received_spf"] = serde_json::Value::String(received);
        writeln!(out, "{v}")?;
    } else {
        let detail = outcome.explanation.as_deref().unwrap_or(&outcome.reason);
        writeln!(out, "{}: {detail}", outcome.result.as_str())?;
        writeln!(out, "{received}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn milter_cmd(a: MilterArgs) -> Result<ExitCode> {
    use crate::config::ListenerSettings;
    use crate::role::{FilterMode, ListenProtocol};
    let mut extra = Figment::new();
    for (key, value) in [
        ("milter.listen", &a.listen),
        ("milter.role", &a.role),
        ("milter.socket_mode", &a.socket_mode),
        ("milter.socket_group", &a.socket_group),
    ] {
        if let Some(v) = value {
            extra = extra.merge(Serialized::default(key, v));
        }
    }
    let common = a.common.clone();
    // `authgate milter` is `serve` with the one listener `[milter]` describes.
    let load: crate::daemon::Loader = Box::new(move || {
        let mut config = common.load(extra.clone()).map_err(|e| said_once(&e))?;
        let m = &config.milter;
        config.listener = vec![ListenerSettings {
            listen: m.listen.clone(),
            protocol: ListenProtocol::Milter,
            role: m.role,
            mode: FilterMode::BeforeQueue,
            socket_mode: Some(m.socket_mode.clone()),
            socket_group: m.socket_group.clone(),
            ..ListenerSettings::default()
        }];
        Ok(config)
    });
    let rt = server_runtime(&load)?;
    rt.block_on(crate::daemon::run(load))
        .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(a: KeygenArgs) -> Result<ExitCode> {
    use crate::keygen::{KeyAlgorithm, KeygenOptions};
    let algorithm = match a.algorithm.as_str() {
        "ed25519" => KeyAlgorithm::Ed25519,
        _ => KeyAlgorithm::Rsa { bits: a.bits },
    };
    let opts = KeygenOptions {
        domain: a.domain.clone(),
        selector: a.selector.clone(),
        algorithm,
        testing: a.testing,
    };
    let done = crate::keyfile::keygen(&opts, &a.out)?;
    let r = &done.record;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# private key written to {} (mode 0600)",
        done.key_path.display()
    )?;
    write_record(&mut out, r)?;
    writeln!(out, "\n# 3. bare public key (p=):\n{}", r.public_key)?;
    writeln!(
        out,
        "\n# config:\n[[dkim.keys]]\nname = \"{sel}-{dom}\"\ndomain = \"{dom}\"\nselector = \"{sel}\"\nfile = \"{file}\"\n\n[[dkim.signing_table]]\npattern = \"*@{dom}\"\nkeys = [\"{sel}-{dom}\"]",
        sel = a.selector,
        dom = a.domain,
        file = done.key_path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The record to publish, as a zone file line and as one value for a web
/// DNS panel (`keygen`, `key rotate`).
fn write_record(out: &mut impl Write, r: &crate::keygen::DnsRecord) -> Result<()> {
    writeln!(out, "# publish this TXT record at {}", r.name)?;
    writeln!(out, "\n# 1. BIND zone file line:\n{}", r.zone_line)?;
    writeln!(
        out,
        "\n# 2. single-line value for a web DNS panel (name: {}):\n{}",
        r.name, r.value
    )?;
    Ok(())
}

fn config_check(a: CommonArgs) -> Result<ExitCode> {
    let config = a.load(Figment::new())?;
    dns::build(&config.dns)?;
    let ctx = config.context()?;
    let listeners = config.listeners()?;
    let keys = ctx
        .signing
        .as_ref()
        .map_or(0, |s| s.table.iter().map(|r| r.keys.len()).sum::<usize>());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# configuration OK: authserv-id {}, {} signing table rows, {} key uses, {} listeners",
        ctx.authserv_id,
        ctx.signing.as_ref().map_or(0, |s| s.table.len()),
        keys,
        listeners.len()
    )?;
    out.write_all(toml::to_string_pretty(&config)?.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn same_domain(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn domain_check(a: CheckArgs) -> Result<ExitCode> {
    use crate::domaincheck::{Selectors, check_domain, worst};
    use crate::keycheck::Level;
    let domain = a.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.contains(char::is_whitespace) {
        bail!("not a domain name: {:?}", a.domain);
    }
    let common = CommonArgs {
        config: a.config.clone(),
        dns_zone: a.dns_zone.clone(),
        dns_server: a.dns_server.clone(),
        authserv_id: None,
    };
    let config = common.load(Figment::new())?;
    let resolver = dns::build(&config.dns)?;
    let configured: Vec<String> = config
        .dkim
        .keys
        .iter()
        .filter(|k| k.domain == "%" || same_domain(&k.domain, &domain))
        .map(|k| k.selector.clone())
        .fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        });
    let selectors = match (a.selector.is_empty(), configured.is_empty()) {
        (false, _) => Selectors::Given(a.selector.clone()),
        (true, false) => Selectors::Configured(configured),
        (true, true) => Selectors::Common,
    };
    let rt = runtime()?;
    let findings = rt.block_on(check_domain(&resolver, &domain, &selectors));
    let mut out = std::io::stdout().lock();
    if a.json {
        // Structs, not json!: the keys come out in the contract's order.
        #[derive(serde::Serialize)]
        struct JsonFinding<'a> {
            area: &'a str,
            level: &'a str,
            message: &'a str,
            fix: Option<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            domain: &'a str,
            findings: Vec<JsonFinding<'a>>,
        }
        let doc = Doc {
            domain: &domain,
            findings: findings
                .iter()
                .map(|f| JsonFinding {
                    area: f.area.as_str(),
                    level: f.level.as_str(),
                    message: &f.message,
                    fix: f.fix.as_deref(),
                })
                .collect(),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write_domain_findings(&mut out, &domain, &findings)?;
    }
    Ok(ExitCode::from(match worst(&findings) {
        Level::Error => 2,
        Level::Warning => 1,
        Level::Ok => 0,
    }))
}

/// One block per area (`spf:`), one line per finding with its level, the
/// fix indented below; a summary line last.
fn write_domain_findings(
    out: &mut impl Write,
    domain: &str,
    findings: &[crate::domaincheck::Finding],
) -> Result<()> {
    use crate::domaincheck::Area;
    use crate::keycheck::Level;
    for area in Area::ALL {
        let mut of_area = findings.iter().filter(|f| f.area == area).peekable();
        if of_area.peek().is_none() {
            continue;
        }
        writeln!(out, "{}:", area.as_str())?;
        for f in of_area {
            writeln!(out, "  {}: {}", f.level.as_str(), f.message)?;
            if let Some(fix) = &f.fix {
                for line in fix.lines() {
                    writeln!(out, "      {line}")?;
                }
            }
        }
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    writeln!(
        out,
        "{domain}: {} errors, {} warnings",
        count(Level::Error),
        count(Level::Warning)
    )?;
    Ok(())
}

fn import_opendkim(a: ImportOpendkimArgs) -> Result<ExitCode> {
    use crate::import::opendkim::{Source, import};
    let read_conf = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let dkim_text = read_conf(&a.conf)?;
    let dmarc_text = a.opendmarc.as_deref().map(read_conf).transpose()?;
    let dkim_path = a.conf.display().to_string();
    let dmarc_path = a.opendmarc.as_ref().map(|p| p.display().to_string());
    let dmarc = match (&dmarc_path, &dmarc_text) {
        (Some(path), Some(text)) => Some(Source { path, text }),
        _ => None,
    };
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map_err(|e| crate::keyfile::without_errno(&e.to_string()).to_string())
    };
    let result = import(
        Source {
            path: &dkim_path,
            text: &dkim_text,
        },
        dmarc,
        &read,
    );
    std::io::stdout().lock().write_all(result.toml.as_bytes())?;
    eprintln!(
        "authgate import: {} settings mapped, {} lines left as comments, {} problems",
        result.mapped,
        result.commented,
        result.problems.len()
    );
    for p in &result.problems {
        eprintln!("authgate import: {p}");
    }
    Ok(if result.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the environment of the child test process (test code only):
    /// which panic [`guarded_child`] provokes.
    const CHILD: &str = "AUTHGATE_TEST_GUARDED_PANIC";

    /// Runs this test binary again with only [`guarded_child`], which
    /// panics the way `case` says inside [`guarded`].
    fn child(case: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cli::tests::guarded_child", "--nocapture"])
            .env(CHILD, case)
            .output()
            .unwrap()
    }

    #[test]
    fn a_panic_on_any_thread_of_a_filter_exits_75_with_nothing_more_on_stdout() {
        for case in ["main", "thread", "task"] {
            let out = child(case);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(75), "{case}: {stdout} {stderr}");
            assert!(!stdout.contains("AFTER-PANIC"), "{case}: {stdout}");
            assert!(stderr.contains("provoked panic"), "{case}: {stderr}");
        }
    }

    /// Not a test on its own: the body of [`child`]'s process.
    #[test]
    fn guarded_child() {
        let Ok(case) = std::env::var(CHILD) else {
            return;
        };
        guarded(true, || {
            match case.as_str() {
                "main" => panic!("provoked panic"),
                "thread" => {
                    let _ = std::thread::spawn(|| panic!("provoked panic")).join();
                }
                _ => {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .build()
                        .unwrap();
                    let task = async { tokio::spawn(async { panic!("provoked panic") }).await };
                    let _ = rt.block_on(task);
                }
            }
            println!("AFTER-PANIC");
            ExitCode::SUCCESS
        });
    }

    #[test]
    fn errors_exit_75_in_pipe_mode_and_1_otherwise() {
        let err = || Err(anyhow::anyhow!("boom"));
        assert_eq!(exit_code(EX_TEMPFAIL, err()), ExitCode::from(EX_TEMPFAIL));
        assert_eq!(exit_code(1, err()), ExitCode::FAILURE);
        assert_eq!(
            exit_code(EX_TEMPFAIL, Ok(ExitCode::SUCCESS)),
            ExitCode::SUCCESS
        );
    }
}
