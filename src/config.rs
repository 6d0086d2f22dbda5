//! Configuration: figment layers (built-in defaults < TOML file <
//! `AUTHGATE_*` environment < command-line flags) into a typed [`Config`],
//! then validated into the runtime [`Context`] (keys loaded, table checked).
//!
//! Owns: every setting's name, default and validation message. Must not:
//! start servers or resolve names, or import a front or the server: the
//! vocabulary it shares with them lives at the bottom of the module graph
//! ([`crate::sockaddr`], [`crate::role`], [`crate::sysexits`]), and key files
//! are read through [`crate::keyfile`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::dkim::canon::Canon;
use crate::dkim::key::SigningKey;
use crate::dkim::sign::{DEFAULT_OVERSIGNED_HEADERS, DEFAULT_SIGNED_HEADERS};
use crate::dkim::verify::VerifyOptions;
use crate::pipeline::{Context, KeyEntry, Signing, TableEntry};
use crate::role::{FilterMode, HopProtocol, ListenProtocol, MilterQuarantine, Role};
use crate::sockaddr::{SocketAddress, UnixSocketOptions};
use crate::sysexits::EX_NOPERM;

mod error;
mod opendkim;
pub use error::{ConfigError, env_name, key_name, near_miss};

/// The file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/authgate/authgate.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Our authserv-id in Authentication-Results; empty = the host name.
    pub authserv_id: String,
    /// Message handling limits.
    pub message: MessageSettings,
    /// DKIM signing and verification.
    pub dkim: DkimSettings,
    /// DNS resolver.
    pub dns: crate::dns::DnsSettings,
    /// Which clients and upstream results we trust.
    pub trust: TrustSettings,
    /// `[iprev]`.
    pub iprev: IprevSettings,
    /// `[dnsbl]`.
    pub dnsbl: DnsblSettings,
    /// `[pipe]`.
    pub pipe: PipeSettings,
    /// `[spf]`.
    pub spf: SpfSettings,
    /// `[dmarc]`.
    pub dmarc: DmarcSettings,
    /// Headers only: no result ever rejects, quarantines or tempfails a
    /// message (the "never block" mode Plesk admins know).
    pub never_block: bool,
    /// `[server]`: limits and timeouts of `serve` and `milter`.
    pub server: ServerSettings,
    /// `[[listener]]`: sockets `serve` listens on (none configured: one
    /// SMTP listener on 127.0.0.1:10025 relaying to 127.0.0.1:10026).
    pub listener: Vec<ListenerSettings>,
    /// `[milter]`: the `authgate milter` socket and milter-only behaviour.
    pub milter: MilterSettings,
    /// `[report]`: DMARC reports (the store, sending, failure reports).
    pub report: ReportSettings,
    /// `[metrics]`: the Prometheus endpoint of `serve` and `milter`.
    pub metrics: MetricsSettings,
    /// The file these settings were read from, if any: errors found later
    /// (a key file, a table) name its line. Not a setting.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[milter]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MilterSettings {
    /// Socket of `authgate milter` (`unix:/path`, `inet:PORT@HOST`, `IP:PORT`).
    pub listen: SocketAddress,
    /// Unix socket permission bits, octal (the MTA's user must be able to connect).
    pub socket_mode: String,
    /// Group given to the Unix socket (e.g. "postfix").
    pub socket_group: Option<String>,
    /// Role of `authgate milter`: auto | inbound | outbound | both.
    pub role: Role,
    /// DMARC quarantine: "header" (deliver with the header) or "hold" (Postfix HOLD queue).
    pub quarantine: MilterQuarantine,
    /// `{daemon_name}` values whose mail is outbound and signed (Postfix:
    /// `-o milter_macro_daemon_name=ORIGINATING` on the submission service).
    pub outbound_daemons: Vec<String>,
    /// Sign mail submitted locally (Postfix `non_smtpd_milters`: sendmail(1), pickup).
    pub sign_local_submissions: bool,
}

impl Default for MilterSettings {
    fn default() -> Self {
        MilterSettings {
            listen: SocketAddress::Unix("/run/authgate/milter.sock".into()),
            socket_mode: "0660".into(),
            socket_group: None,
            role: Role::Auto,
            quarantine: MilterQuarantine::Header,
            outbound_daemons: vec!["ORIGINATING".into()],
            sign_local_submissions: true,
        }
    }
}

/// One `[[listener]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSettings {
    /// `127.0.0.1:10025`, `[::1]:10025`, `inet:8891@127.0.0.1` or `unix:/path`.
    pub listen: SocketAddress,
    /// smtp | lmtp | milter.
    pub protocol: ListenProtocol,
    /// Where accepted mail goes (not used by milter listeners).
    pub next_hop: SocketAddress,
    /// smtp | lmtp.
    pub next_hop_protocol: HopProtocol,
    /// auto | inbound | outbound | both.
    pub role: Role,
    /// after-queue | before-queue (milter listeners are always before the queue).
    pub mode: FilterMode,
    /// Unix socket permission bits as an octal string, e.g. "0660".
    pub socket_mode: Option<String>,
    /// Group given to a Unix socket (e.g. "postfix").
    pub socket_group: Option<String>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            listen: SocketAddress::Tcp(([127, 0, 0, 1], 10025).into()),
            protocol: ListenProtocol::Smtp,
            next_hop: SocketAddress::Tcp(([127, 0, 0, 1], 10026).into()),
            next_hop_protocol: HopProtocol::Smtp,
            role: Role::Auto,
            mode: FilterMode::AfterQueue,
            socket_mode: None,
            socket_group: None,
        }
    }
}

impl ListenerSettings {
    /// Combinations that cannot work, refused at start-up.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.protocol == ListenProtocol::Smtp && self.next_hop_protocol == HopProtocol::Lmtp {
            return Err(invalid(
                key,
                "an SMTP listener cannot relay to an LMTP next hop: LMTP answers per recipient \
                 and SMTP can pass on only one reply; make the listener protocol = \"lmtp\" \
                 (Postfix: an lmtp: transport)",
            ));
        }
        self.unix_options().map(|_| ())
    }

    /// Mode and group for a Unix socket.
    pub fn unix_options(&self) -> Result<UnixSocketOptions, ConfigError> {
        let mode = match &self.socket_mode {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m.trim_start_matches("0o"), 8).map_err(|_| {
                    invalid(
                        "listener.socket_mode",
                        format!("{m:?} is not an octal mode like \"0660\""),
                    )
                })?,
            ),
        };
        Ok(UnixSocketOptions {
            mode,
            group: self.socket_group.clone(),
        })
    }
}

/// `[server]`: limits and timeouts (RFC 5321 §4.5.3.2 defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Threads that run the connections of `serve`/`milter`: 1 (default)
    /// runs them all on one thread, 0 = one per CPU core.
    pub threads: usize,
    /// Concurrent sessions over all listeners; more get 421.
    pub max_sessions: usize,
    /// Largest message accepted (SIZE, 552 past it); 0 = no limit.
    pub max_message_size: u64,
    /// Longest line in a message (bytes, without CRLF); longer → 500 5.5.2... at DATA end.
    pub max_line_length: usize,
    /// Most header fields in a message; more → 552 5.3.4.
    pub max_header_fields: usize,
    /// Most recipients per transaction; more → 452 4.5.3.
    pub max_recipients: usize,
    /// Waiting for a command from the client (RFC 5321: 5 minutes).
    pub command_timeout_secs: u64,
    /// Waiting for the next chunk of DATA (RFC 5321: 3 minutes).
    pub data_timeout_secs: u64,
    /// The whole DATA/BDAT phase of one message, however the client paces it.
    pub max_data_secs: u64,
    /// Waiting for a reply from the next hop to a command (RFC 5321: 5 minutes).
    pub next_hop_timeout_secs: u64,
    /// Waiting for the next hop's reply to the final dot (RFC 5321: 10 minutes).
    pub next_hop_data_timeout_secs: u64,
    /// Connecting to the next hop.
    pub connect_timeout_secs: u64,
    /// How long a next-hop connection whose client has quit stays open for
    /// the listener's next client (like Postfix's
    /// `smtp_connection_cache_time_limit`): saves the connect, greeting and
    /// EHLO per client. 0 = one next-hop connection per client, closed
    /// with it.
    pub next_hop_idle_secs: u64,
    /// On SIGTERM, how long sessions in flight may take to finish.
    pub shutdown_timeout_secs: u64,
    /// In after-queue mode, really reject (Postfix then bounces to the
    /// envelope sender, which may be forged: backscatter).
    pub after_queue_reject: bool,
    /// Host name in our 220 and EHLO replies; empty = the system host name.
    pub hostname: String,
    /// Clients allowed to send XFORWARD and XCLIENT (Unix socket clients
    /// always are); Postfix `smtpd_authorized_xforward_hosts`.
    pub authorized_xforward_hosts: Vec<ipnet::IpNet>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 1,
            max_sessions: 100,
            max_message_size: 50 << 20,
            max_line_length: 65536,
            max_header_fields: 1000,
            max_recipients: 1000,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_data_secs: 1800,
            next_hop_timeout_secs: 300,
            next_hop_data_timeout_secs: 600,
            connect_timeout_secs: 30,
            next_hop_idle_secs: 5,
            shutdown_timeout_secs: 30,
            after_queue_reject: false,
            hostname: String::new(),
            authorized_xforward_hosts: vec![
                ipnet::Ipv4Net::new_assert([127, 0, 0, 0].into(), 8).into(),
                ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128).into(),
            ],
        }
    }
}

/// `[spf]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpfSettings {
    /// Check SPF (RFC 7208) for MAIL FROM.
    pub enabled: bool,
    /// Also check the HELO identity.
    pub helo: bool,
    /// Add a `Received-SPF:` header.
    pub received_spf: bool,
    /// What an SPF `fail` does by itself: none | quarantine | reject.
    pub fail_action: crate::policy::SpfFailAction,
}

impl Default for SpfSettings {
    fn default() -> Self {
        SpfSettings {
            enabled: true,
            helo: true,
            received_spf: true,
            fail_action: crate::policy::SpfFailAction::None,
        }
    }
}

/// `[dmarc]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DmarcSettings {
    /// Evaluate DMARC (RFC 9989).
    pub enabled: bool,
    /// Organizational domain from the Public Suffix List, policy discovery
    /// and `pct` the RFC 7489 way, instead of RFC 9989's DNS tree walk.
    pub use_psl: bool,
    /// Several author domains in From: "skip" (RFC 9989 §5.3.1) or "strictest".
    pub multi_domain_from: String,
    /// `p=reject` failures: reject | quarantine | header.
    pub reject_action: crate::policy::RejectAction,
    /// `p=quarantine` failures: quarantine | header.
    pub quarantine_action: crate::policy::QuarantineAction,
    /// DNS temporary errors: accept | tempfail.
    pub temperror_action: crate::policy::TempErrorAction,
    /// Refuse mail without exactly one usable From author (OpenDMARC RequiredHeaders).
    pub require_valid_from: bool,
    /// The quarantine header, `Name: value`.
    pub quarantine_header: String,
}

impl Default for DmarcSettings {
    fn default() -> Self {
        DmarcSettings {
            enabled: true,
            use_psl: false,
            multi_domain_from: "skip".into(),
            reject_action: crate::policy::RejectAction::Reject,
            quarantine_action: crate::policy::QuarantineAction::Quarantine,
            temperror_action: crate::policy::TempErrorAction::Accept,
            require_valid_from: false,
            quarantine_header: "X-Authgate-Quarantine: dmarc".into(),
        }
    }
}

/// `[report]`: DMARC aggregate (RFC 9990) and failure (RFC 9991) reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// Record a row per message DMARC evaluated (nothing is recorded or
    /// sent until this is on).
    pub enabled: bool,
    /// `sqlite:/path` (default) or `postgres://user:password@host/db`.
    pub store: String,
    /// `<org_name>` in the reports we send; empty: the host name.
    pub org_name: String,
    /// The report mail's From address; empty: `dmarc-noreply@` the host name.
    pub from: String,
    /// `<email>`/`<extra_contact_info>`: where reporters' admins can write.
    pub contact: String,
    /// Submission host (`host:port`) for the report mail; empty: the first
    /// listener's next hop (or 127.0.0.1:25).
    pub submission: String,
    /// `starttls` (default), `tls` (implicit, port 465) or `none`.
    pub submission_tls: String,
    /// A PEM file of extra CA certificates to trust for the submission host.
    pub submission_ca: Option<PathBuf>,
    /// SMTP AUTH user for the submission host.
    pub submission_user: String,
    /// File holding the SMTP AUTH password (one line; not group/world readable).
    pub submission_password_file: Option<PathBuf>,
    /// Days of rows and received reports kept.
    pub keep_days: u32,
    /// Send RFC 9991 failure reports where `ruf=`/`fo=` ask for them.
    pub failure_reports: bool,
    /// Failure reports per destination domain per hour, at most.
    pub failure_rate_per_hour: u32,
    /// Redact local-parts in failure reports (RFC 6590).
    pub failure_redact: bool,
    /// Also send RFC 6651 DKIM failure reports where the signature says
    /// `r=y` (OpenDKIM `SendReports`).
    pub dkim_failure_reports: bool,
    /// Rows waiting for the store writer, at most; beyond, rows are counted
    /// as dropped and mail is never slowed.
    pub queue: usize,
    /// Minutes after UTC midnight that `serve`/`milter` send yesterday's
    /// reports.
    pub send_delay_minutes: u32,
}

/// `[metrics]`: Prometheus metrics at `GET /metrics` (off by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `IP:PORT` the endpoint listens on (e.g. `127.0.0.1:9155`); empty:
    /// no endpoint.
    pub listen: String,
}

impl MetricsSettings {
    /// The endpoint's address (`None`: metrics are off).
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            invalid(
                "metrics.listen",
                format!("{listen:?} is not IP:PORT (e.g. \"127.0.0.1:9155\")"),
            )
        })
    }
}

/// Where the report store lives unless configured.
pub const DEFAULT_REPORT_STORE: &str = "sqlite:/var/lib/authgate/reports.db";

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            enabled: false,
            store: DEFAULT_REPORT_STORE.into(),
            org_name: String::new(),
            from: String::new(),
            contact: String::new(),
            submission: String::new(),
            submission_tls: "starttls".into(),
            submission_ca: None,
            submission_user: String::new(),
            submission_password_file: None,
            keep_days: 60,
            failure_reports: false,
            failure_rate_per_hour: 10,
            failure_redact: false,
            dkim_failure_reports: false,
            queue: 10_000,
            send_delay_minutes: 30,
        }
    }
}

/// `[pipe]`: filter-mode behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipeSettings {
    /// Exit status when an action refuses the message (nothing is written;
    /// the reason goes to stderr). 77 = EX_NOPERM: Postfix pipe(8) bounces.
    pub reject_exit_code: u8,
    /// The program `pipe --reinject` hands the filtered message to, as
    /// `sendmail -G -i -f SENDER -- RECIPIENT...` (Postfix FILTER_README's
    /// simple content filter).
    pub sendmail: PathBuf,
}

/// Where Postfix (and most MTAs) install their sendmail command.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

impl Default for PipeSettings {
    fn default() -> Self {
        PipeSettings {
            reject_exit_code: EX_NOPERM,
            sendmail: PathBuf::from(DEFAULT_SENDMAIL),
        }
    }
}

/// `[trust]`: OpenDKIM InternalHosts, OpenDMARC TrustedAuthservIDs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSettings {
    /// Clients whose mail is ours: signed, never subjected to DMARC policy.
    pub internal_hosts: Vec<ipnet::IpNet>,
    /// `by` host names of `Received:` fields written by our own MTA (pipe
    /// mode reads the client address and HELO from the topmost one).
    pub trusted_received_by: Vec<String>,
    /// Upstream authserv-ids whose Authentication-Results we believe.
    pub trusted_authserv_ids: Vec<String>,
}

/// `[iprev]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IprevSettings {
    /// Check that the client's PTR name maps back to it (RFC 8601 §3).
    pub enabled: bool,
}

impl Default for IprevSettings {
    fn default() -> Self {
        IprevSettings { enabled: true }
    }
}

/// `[dnsbl]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblSettings {
    /// Lists to ask, each with its action.
    pub zones: Vec<crate::dnsbl::DnsblZone>,
    /// Header naming the lists that list the client (empty: no header).
    pub header: String,
}

impl Default for DnsblSettings {
    fn default() -> Self {
        DnsblSettings {
            zones: Vec::new(),
            header: "X-Authgate-DNSBL".into(),
        }
    }
}

/// `[message]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessageSettings {
    /// Bodies larger than this go to a temp file (bytes).
    pub spool_threshold: usize,
    /// Directory for spool files; empty = `$TMPDIR` or `/tmp`.
    pub spool_dir: Option<PathBuf>,
    /// Largest header block parsed; larger messages pass unparsed.
    pub max_header_bytes: usize,
}

impl Default for MessageSettings {
    fn default() -> Self {
        MessageSettings {
            spool_threshold: 1 << 20,
            spool_dir: None,
            max_header_bytes: 1 << 20,
        }
    }
}

/// `[dkim]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSettings {
    /// `[dkim.verify]`.
    pub verify: VerifySettings,
    /// `[dkim.sign]`.
    pub sign: SignSettings,
    /// `[[dkim.keys]]`: the key table.
    pub keys: Vec<KeySettings>,
    /// `[[dkim.signing_table]]`: author pattern → keys.
    pub signing_table: Vec<TableSettings>,
    /// OpenDKIM KeyTable read in place (`/etc/opendkim/KeyTable` or
    /// `refile:/etc/opendkim/KeyTable`): `NAME DOMAIN:SELECTOR:KEYPATH`
    /// lines, added after `[[dkim.keys]]` (a name in both: the TOML's).
    pub opendkim_key_table: Option<String>,
    /// OpenDKIM SigningTable read in place (`refile:/path`: globs in file
    /// order; `/path`: OpenDKIM's lookup order), tried after
    /// `[[dkim.signing_table]]`.
    pub opendkim_signing_table: Option<String>,
    /// OpenDKIM TrustedHosts/InternalHosts file read in place: its
    /// addresses and CIDRs join `trust.internal_hosts` (host names are
    /// skipped with a warning).
    pub opendkim_trusted_hosts: Option<String>,
    /// `[dkim.rotation]`: `authgate key rotate`'s state and timing.
    pub rotation: crate::rotation::RotationSettings,
}

/// `[dkim.verify]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySettings {
    /// Signatures verified per message.
    pub max_signatures: usize,
    /// Smallest RSA key accepted (1024..=8192).
    pub min_rsa_bits: usize,
    /// Allowed clock difference for `t=` in the future (seconds).
    pub clock_skew_secs: u64,
}

impl Default for VerifySettings {
    fn default() -> Self {
        let d = VerifyOptions::default();
        VerifySettings {
            max_signatures: d.max_signatures,
            min_rsa_bits: d.min_rsa_bits,
            clock_skew_secs: d.clock_skew,
        }
    }
}

/// `[dkim.sign]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignSettings {
    /// `c=` as `header/body`.
    pub canonicalization: String,
    /// Fields signed when present.
    pub headers: Vec<String>,
    /// Fields signed once more than present (cannot be added later).
    pub oversign: Vec<String>,
    /// Adds `x=` this many seconds after `t=`; 0 = no expiry.
    pub expire_after_secs: u64,
    /// Accept key files readable by group or others.
    pub allow_insecure_key_permissions: bool,
}

impl Default for SignSettings {
    fn default() -> Self {
        SignSettings {
            canonicalization: "relaxed/relaxed".into(),
            headers: DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            oversign: DEFAULT_OVERSIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            expire_after_secs: 0,
            allow_insecure_key_permissions: false,
        }
    }
}

/// One `[[dkim.keys]]` entry (OpenDKIM KeyTable line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Name used by the signing table.
    pub name: String,
    /// `d=`; `%` = the author's domain.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// Private key file (PEM or DER, PKCS#1 or PKCS#8, RSA or Ed25519).
    pub file: PathBuf,
}

/// One `[[dkim.signing_table]]` row (OpenDKIM SigningTable line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSettings {
    /// `*@example.com`, `*@*.example.com`, `*`, `user@example.com` or `example.com`.
    pub pattern: String,
    /// Key names to sign with (all of them: RSA + Ed25519 dual signing).
    pub keys: Vec<String>,
}

/// Points each rotated key at the generation that signs now (see
/// [`crate::rotation::State::signing_for`]); a state the configuration no
/// longer matches is left alone, with a warning.
fn rotate<'a>(keys: impl Iterator<Item = &'a mut KeySettings>, states: &[crate::rotation::State]) {
    for k in keys {
        let Some(state) = states.iter().find(|s| s.key == k.name) else {
            continue;
        };
        match state.signing_for(&k.selector, &k.file) {
            Some(g) => {
                k.selector = g.selector.clone();
                k.file = g.file.clone();
            }
            None => tracing::warn!(
                key = %k.name,
                "key rotation state ignored: the configuration names selector {:?} ({}), \
                 which the rotation never used; delete the state file to silence this",
                k.selector,
                k.file.display()
            ),
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Loads the layers. `path`: an explicit `--config` (must exist); when
    /// `None`, [`DEFAULT_CONFIG_PATH`] is read if present. `overrides` are the
    /// command-line flags, merged last.
    pub fn load(path: Option<&Path>, overrides: Figment) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(DEFAULT_CONFIG_PATH.into()),
            None => None,
        };
        if let Some(p) = &file {
            fig = fig.merge(Toml::file_exact(p));
        }
        fig = fig
            .merge(
                Env::prefixed("AUTHGATE_")
                    .split("__")
                    .ignore(&["config", "log"]),
            )
            .merge(overrides);
        let mut config: Config = fig.extract().map_err(error::render)?;
        config.file = file;
        Ok(config)
    }

    /// The listeners to open: the configured ones, or the default SMTP
    /// listener when none is configured; each validated.
    pub fn listeners(&self) -> Result<Vec<ListenerSettings>, ConfigError> {
        self.checked_listeners()
            .map_err(|e| error::located(e, self.file.as_deref()))
    }

    fn checked_listeners(&self) -> Result<Vec<ListenerSettings>, ConfigError> {
        let list = if self.listener.is_empty() {
            vec![ListenerSettings::default()]
        } else {
            self.listener.clone()
        };
        for (i, l) in list.iter().enumerate() {
            l.validate(&format!("listener[{i}]"))?;
        }
        Ok(list)
    }

    /// The authserv-id to use: configured, else the host name.
    pub fn effective_authserv_id(&self) -> String {
        if !self.authserv_id.is_empty() {
            return self.authserv_id.clone();
        }
        system_hostname()
    }
}

/// The machine's host name (`localhost` if it cannot be read).
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Config {
    /// Checks values that types cannot and builds the verification options.
    pub fn verify_options(&self) -> Result<VerifyOptions, ConfigError> {
        let v = &self.dkim.verify;
        if !(1024..=crate::dkim::key::MAX_RSA_BITS).contains(&v.min_rsa_bits) {
            return Err(invalid(
                "dkim.verify.min_rsa_bits",
                "must be between 1024 (RFC 8301) and 8192",
            ));
        }
        Ok(VerifyOptions {
            max_signatures: v.max_signatures,
            min_rsa_bits: v.min_rsa_bits,
            clock_skew: v.clock_skew_secs,
        })
    }

    /// Loads every key and resolves the signing table. `None` when no table.
    pub fn signing(&self) -> Result<Option<Signing>, ConfigError> {
        let s = &self.dkim.sign;
        let (header_canon, body_canon) = parse_canon(&s.canonicalization).ok_or_else(|| {
            invalid(
                "dkim.sign.canonicalization",
                "expected simple|relaxed/simple|relaxed",
            )
        })?;
        // RFC 5322 field-name = 1*ftext (printable ASCII but ':'): a name
        // with a space would put an h= that verifiers reject (RFC 6376
        // §3.5) into every signature.
        let field_name =
            |h: &String| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !s.headers.iter().chain(&s.oversign).all(field_name) {
            return Err(invalid(
                "dkim.sign.headers",
                "header names must be non-empty and contain no ':', space or control character",
            ));
        }
        let in_place = opendkim::signing_table(self.dkim.opendkim_signing_table.as_deref())?;
        let keys = self.load_keys()?;
        let mut table = Vec::new();
        for (i, row) in self.dkim.signing_table.iter().enumerate() {
            let key = format!("dkim.signing_table[{i}]");
            if row.pattern.is_empty() || row.keys.is_empty() {
                return Err(invalid(key, "needs a pattern and at least one key"));
            }
            let entries = row
                .keys
                .iter()
                .map(|name| {
                    find_key(&keys, name).ok_or_else(|| {
                        invalid(
                            format!("{key}.keys"),
                            format!("no [[dkim.keys]] entry named {name:?}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            table.push(TableEntry {
                pattern: row.pattern.clone(),
                keys: entries,
            });
        }
        // The SigningTable's rows come after authgate.toml's: the TOML wins.
        let mut missing = Vec::new();
        for (row, at) in in_place {
            let entries: Vec<KeyEntry> = row
                .keys
                .iter()
                .filter_map(|name| {
                    let found = find_key(&keys, name);
                    if found.is_none() {
                        missing.push(format!(
                            "{at}: key name {name:?} is neither in the KeyTable \
                             (dkim.opendkim_key_table) nor a [[dkim.keys]] name"
                        ));
                    }
                    found
                })
                .collect();
            table.push(TableEntry {
                pattern: row.pattern,
                keys: entries,
            });
        }
        if !missing.is_empty() {
            return Err(ConfigError::Table(missing));
        }
        if table.is_empty() {
            return Ok(None);
        }
        Ok(Some(Signing {
            table,
            header_canon,
            body_canon,
            headers: s.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            oversign: s.oversign.iter().map(|h| h.to_ascii_lowercase()).collect(),
            expire_after: (s.expire_after_secs > 0).then_some(s.expire_after_secs),
        }))
    }

    /// `[[dkim.keys]]`, then the KeyTable's keys whose names the TOML does
    /// not use (authgate.toml wins). A file named twice is read once.
    fn load_keys(&self) -> Result<Vec<KeyEntry>, ConfigError> {
        let mut in_place = opendkim::key_table(self.dkim.opendkim_key_table.as_deref())?;
        let mut toml_keys = self.dkim.keys.clone();
        let rotations = self.rotations()?;
        rotate(
            toml_keys
                .iter_mut()
                .chain(in_place.iter_mut().map(|(k, _)| k)),
            &rotations,
        );
        let mut out: Vec<KeyEntry> = Vec::new();
        let mut files: Vec<(PathBuf, Arc<SigningKey>)> = Vec::new();
        for (i, k) in toml_keys.iter().enumerate() {
            let key = format!("dkim.keys[{i}]");
            if k.name.is_empty() || k.selector.is_empty() || k.domain.is_empty() {
                return Err(invalid(key, "name, domain and selector must be set"));
            }
            if out.iter().any(|e| e.name == k.name) {
                return Err(invalid(key, format!("duplicate key name {:?}", k.name)));
            }
            let loaded =
                self.key_file(&k.file, &mut files)
                    .map_err(|error| ConfigError::KeyFile {
                        key: format!("{key}.file"),
                        error,
                    })?;
            out.push(entry(k, loaded));
        }
        for (k, at) in in_place {
            if out.iter().any(|e| e.name == k.name) {
                continue;
            }
            let loaded = self.key_file(&k.file, &mut files).map_err(|e| {
                ConfigError::Table(vec![format!("{at}: {e}{}", error::insecure_hint(&e))])
            })?;
            out.push(entry(&k, loaded));
        }
        Ok(out)
    }

    /// Every key entry: `[[dkim.keys]]`, then the KeyTable's entries whose
    /// names the TOML does not use (key files not read).
    pub fn key_settings(&self) -> Result<Vec<KeySettings>, ConfigError> {
        let mut out = self.configured_keys()?;
        rotate(out.iter_mut(), &self.rotations()?);
        Ok(out)
    }

    /// [`Config::key_settings`] as the configuration writes them, before
    /// rotation state applies.
    pub fn configured_keys(&self) -> Result<Vec<KeySettings>, ConfigError> {
        let mut out = self.dkim.keys.clone();
        let table = opendkim::key_table(self.dkim.opendkim_key_table.as_deref())
            .map_err(|e| error::located(e, self.file.as_deref()))?;
        for (k, _) in table {
            if !out.iter().any(|o| o.name == k.name) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// The directory of `authgate key rotate`'s state.
    pub fn rotation_dir(&self) -> PathBuf {
        crate::rotation::state_dir(&self.dkim.rotation, self.file.as_deref())
    }

    /// Every key's rotation state.
    pub fn rotations(&self) -> Result<Vec<crate::rotation::State>, ConfigError> {
        crate::rotation::load_all(&self.rotation_dir())
            .map_err(|e| ConfigError::Rotation(e.to_string()))
    }

    /// The key names the signing tables use (`[[dkim.signing_table]]` and
    /// the SigningTable read in place).
    pub fn signing_key_names(&self) -> Result<Vec<String>, ConfigError> {
        let rows = opendkim::signing_table(self.dkim.opendkim_signing_table.as_deref())
            .map_err(|e| error::located(e, self.file.as_deref()))?;
        let toml = self.dkim.signing_table.iter().flat_map(|r| r.keys.clone());
        Ok(toml
            .chain(rows.into_iter().flat_map(|(r, _)| r.keys))
            .collect())
    }

    /// The key in `path`, read once however many entries name it.
    fn key_file(
        &self,
        path: &Path,
        files: &mut Vec<(PathBuf, Arc<SigningKey>)>,
    ) -> Result<Arc<SigningKey>, crate::keyfile::KeyFileError> {
        if let Some((_, key)) = files.iter().find(|(p, _)| p == path) {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(crate::keyfile::load_signing_key(
            path,
            self.dkim.sign.allow_insecure_key_permissions,
        )?);
        files.push((path.to_path_buf(), Arc::clone(&key)));
        Ok(key)
    }

    /// `trust.internal_hosts` and the TrustedHosts file's addresses; the
    /// file's host names are logged as skipped.
    pub fn internal_hosts(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let (nets, skipped) = opendkim::trusted_hosts(self.dkim.opendkim_trusted_hosts.as_deref())?;
        for s in skipped {
            tracing::warn!("dkim.opendkim_trusted_hosts: {s}");
        }
        let mut hosts = self.trust.internal_hosts.clone();
        hosts.extend(
            nets.into_iter()
                .filter(|n| !self.trust.internal_hosts.contains(n)),
        );
        Ok(hosts)
    }

    /// Validates everything and builds the per-process context.
    pub fn context(&self) -> Result<Context, ConfigError> {
        self.checked_context()
            .map_err(|e| error::located(e, self.file.as_deref()))
    }

    fn checked_context(&self) -> Result<Context, ConfigError> {
        Ok(Context {
            authserv_id: self.effective_authserv_id(),
            verify: self.verify_options()?,
            signing: self.signing()?,
            max_header_bytes: self.message.max_header_bytes,
            client_checks: crate::pipeline::ClientChecks {
                iprev: self.iprev.enabled,
                dnsbl: self.dnsbl.zones.clone(),
                dnsbl_header: self.dnsbl.header.clone(),
                spf: self.spf.enabled,
                spf_helo: self.spf.helo,
                received_spf: self.spf.received_spf,
            },
            trusted_received_by: self.trust.trusted_received_by.clone(),
            dkim_keys: crate::dkim::verify::KeyCache::default(),
            dmarc: self.dmarc_options()?,
            actions: self.actions()?,
            internal_hosts: self.internal_hosts()?,
            trusted_authserv_ids: self.trust.trusted_authserv_ids.clone(),
        })
    }
}

impl Config {
    fn dmarc_options(&self) -> Result<Option<crate::dmarc::DmarcOptions>, ConfigError> {
        use crate::dmarc::MultiDomainFrom;
        if !self.dmarc.enabled {
            return Ok(None);
        }
        let multi_domain_from = match self.dmarc.multi_domain_from.as_str() {
            "skip" => MultiDomainFrom::Skip,
            "strictest" => MultiDomainFrom::Strictest,
            _ => {
                return Err(invalid(
                    "dmarc.multi_domain_from",
                    "expected \"skip\" or \"strictest\"",
                ));
            }
        };
        Ok(Some(crate::dmarc::DmarcOptions {
            use_psl: self.dmarc.use_psl,
            multi_domain_from,
            ..crate::dmarc::DmarcOptions::default()
        }))
    }

    fn actions(&self) -> Result<crate::policy::Actions, ConfigError> {
        let d = &self.dmarc;
        let header = d
            .quarantine_header
            .split_once(':')
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| invalid("dmarc.quarantine_header", "expected \"Name: value\""))?;
        Ok(crate::policy::Actions {
            dmarc_reject: d.reject_action,
            dmarc_quarantine: d.quarantine_action,
            dmarc_temperror: d.temperror_action,
            spf_fail: self.spf.fail_action,
            never_block: self.never_block,
            require_valid_from: d.require_valid_from,
            quarantine_header: header,
        })
    }
}

/// The key named `name`.
fn find_key(keys: &[KeyEntry], name: &str) -> Option<KeyEntry> {
    keys.iter().find(|k| k.name == name).cloned()
}

/// A loaded key with the identity a key-table entry gives it.
fn entry(k: &KeySettings, key: Arc<SigningKey>) -> KeyEntry {
    KeyEntry {
        name: k.name.clone(),
        domain: k.domain.clone(),
        selector: k.selector.clone(),
        key,
    }
}

/// Parses `c=`-style `header/body` canonicalization (body defaults to simple).
pub fn parse_canon(s: &str) -> Option<(Canon, Canon)> {
    let (h, b) = s.split_once('/').unwrap_or((s, "simple"));
    Some((Canon::parse(h)?, Canon::parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // figment's Jail API fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn unknown_keys_are_errors_naming_the_key() {
        // In a Jail too: Jail's lock keeps environment_overrides_the_file's
        // AUTHGATE_DKIM__VERIFY__MAX_SIGNATURES=5 out of this load.
        figment::Jail::expect_with(|_jail| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            std::fs::write(&path, "[dkim.verify]\nmax_signatures = 3\nmax_sigs = 4\n").unwrap();
            let err = Config::load(Some(&path), Figment::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_sigs"), "{err}");
            std::fs::write(&path, "[dkim.verify]\nmax_signatures = 3\n").unwrap();
            let c = Config::load(Some(&path), Figment::new()).unwrap();
            assert_eq!(c.dkim.verify.max_signatures, 3);
            assert_eq!(c.dkim.verify.min_rsa_bits, 1024);
            Ok(())
        });
    }

    #[test]
    fn signing_table_must_name_known_keys() {
        let mut c = Config::default();
        c.dkim.signing_table.push(TableSettings {
            pattern: "*@x.org".into(),
            keys: vec!["nope".into()],
        });
        let err = c.signing().unwrap_err().to_string();
        assert!(err.starts_with("dkim.signing_table[0].keys"), "{err}");
        c.dkim.sign.canonicalization = "fancy".into();
        assert!(
            c.signing()
                .unwrap_err()
                .to_string()
                .starts_with("dkim.sign.canonicalization")
        );
    }

    /// RFC 6376 §3.5 h= lists field-names (RFC 5322 §3.6.8: 1*ftext); a
    /// configured name with a space or a colon would make every signature
    /// invalid, so the configuration is refused instead.
    #[test]
    fn signed_header_names_must_be_field_names() {
        for (headers, oversign, ok) in [
            (vec!["from", "x-list-id"], vec!["to"], true),
            (vec!["from", "x foo"], vec![], false),
            (vec!["from"], vec!["to:cc"], false),
            (vec!["from", ""], vec![], false),
            (vec!["from", "subject\t"], vec![], false),
        ] {
            let mut c = Config::default();
            c.dkim.sign.headers = headers.iter().map(|h| h.to_string()).collect();
            c.dkim.sign.oversign = oversign.iter().map(|h| h.to_string()).collect();
            let got = c.signing();
            assert_eq!(got.is_ok(), ok, "{headers:?} {oversign:?}");
            if let Err(e) = got {
                assert!(e.to_string().starts_with("dkim.sign.headers"), "{e}");
            }
        }
    }

    #[test]
    fn min_rsa_bits_is_bounded() {
        let mut c = Config::default();
        c.dkim.verify.min_rsa_bits = 512;
        assert!(c.verify_options().is_err());
    }

    #[test]
    // figment's Jail API fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_the_file() {
        // Figment's Jail isolates the environment for this test.
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[dkim.verify]\nmax_signatures = 3\n")?;
            jail.set_env("AUTHGATE_DKIM__VERIFY__MAX_SIGNATURES", "5");
            jail.set_env("AUTHGATE_CONFIG", "ignored-by-figment");
            let c = Config::load(Some(Path::new("c.toml")), Figment::new())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.dkim.verify.max_signatures, 5);
            Ok(())
        });
    }

    #[test]
    // figment's Jail API fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn metrics_listen_is_off_by_default_and_set_by_file_or_environment() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::default().metrics.address().unwrap(), None);
            jail.create_file("c.toml", "[metrics]\nlisten = \"127.0.0.1:9155\"\n")?;
            let load = || Config::load(Some(Path::new("c.toml")), Figment::new());
            let c = load().map_err(|e| e.to_string())?;
            assert_eq!(c.metrics.address().unwrap(), "127.0.0.1:9155".parse().ok());
            jail.set_env("AUTHGATE_METRICS__LISTEN", "[::1]:9156");
            let c = load().map_err(|e| e.to_string())?;
            assert_eq!(c.metrics.address().unwrap(), "[::1]:9156".parse().ok());
            jail.set_env("AUTHGATE_METRICS__LISTEN", "localhost");
            let err = load()
                .map_err(|e| e.to_string())?
                .metrics
                .address()
                .unwrap_err();
            assert!(err.to_string().starts_with("metrics.listen"), "{err}");
            Ok(())
        });
    }
}
