//! The milter dialogue as a pure state machine: MTA commands in, actions out.
//!
//! Owns: option negotiation (only the events the pipeline needs, and no
//! reply wherever the MTA allows it), macros, the sign/verify decision per
//! message (OpenDKIM's rules: SASL-authenticated client, internal host,
//! outbound listener or daemon, local submission), rebuilding the header
//! block from header events, and turning a message's [`Fate`] into replies
//! with the MTA's header index arithmetic. Must not: touch sockets, run the
//! pipeline or read the clock ([`super`] does that, driven by [`Action`]s),
//! or import the configuration: its [`Settings`] are plain values, and the
//! role and quarantine vocabulary comes from [`crate::role`].

use std::collections::HashMap;
use std::net::IpAddr;

use super::codec::{Command, Family, Response, VERSION, actions, client_ip, protocol};
use crate::message::headers::Header;
use crate::outcome::{Disposition, Fate, Meta, Origin, Plan};
use crate::pipeline::Envelope;
use crate::role::{MilterQuarantine, Role};

/// Modifications we may ask for, and (version 6) naming our macros.
pub const WANT_ACTIONS: u32 =
    actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE | actions::SETSYMLIST;

/// A macro name no MTA defines. Postfix takes an empty list as "use
/// main.cf's", so a stage where we want nothing asks for this one and gets
/// an empty macro packet.
const NO_MACROS: &str = "{authgate_none}";

/// The macros we use, per `SMFIM_*` stage: `{daemon_name}` at connect
/// (outbound daemons), `{auth_authen}` at MAIL FROM (signing for SASL
/// clients), the queue id `i` at end of message (the log line). Postfix
/// sends its end-of-header list with *every* header and its end-of-data
/// list with every body chunk, so asking for less saves a parsed macro
/// packet per header.
pub const WANT_MACROS: &[(u32, &str)] = &[
    (0, "{daemon_name}"),
    (1, NO_MACROS),
    (2, "{auth_authen}"),
    (3, NO_MACROS),
    (4, NO_MACROS),
    (5, "i"),
    (6, NO_MACROS),
];

/// Steps we leave out, events we do not answer, and exact header values.
/// Every event before end of message is answered "continue", so none needs
/// a reply; the MTA only waits for us at end of message.
pub const WANT_PROTOCOL: u32 = protocol::NOUNKNOWN
    | protocol::NODATA
    | protocol::NR_CONN
    | protocol::NR_HELO
    | protocol::NR_MAIL
    | protocol::NR_RCPT
    | protocol::NR_HDR
    | protocol::NR_EOH
    | protocol::NR_BODY
    | protocol::HDR_LEADSPC;

/// Most distinct macro names kept per scope, and longest value kept.
const MAX_MACROS: usize = 64;
const MAX_MACRO_VALUE: usize = 1024;
/// Longest reply text we send (Postfix and Sendmail accept more).
const MAX_REPLY_TEXT: usize = 400;

/// What a session needs to know about its listener and policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The listener's role.
    pub role: Role,
    /// `{daemon_name}` values whose mail is outbound (signed).
    pub outbound_daemons: Vec<String>,
    /// Clients whose mail is ours (OpenDKIM InternalHosts).
    pub internal_hosts: Vec<ipnet::IpNet>,
    /// Sign mail submitted locally (Postfix `non_smtpd_milters`).
    pub sign_local_submissions: bool,
    /// What a DMARC quarantine does.
    pub quarantine: MilterQuarantine,
}

/// What the front must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply.
    Reply(Response),
    /// Start a pipeline job (at MAIL FROM, so SPF lookups start now).
    Begin(Begin),
    /// Push these message bytes into the job.
    Feed(Vec<u8>),
    /// Push the body chunk given to [`Session::body_chunk`] into the job
    /// (the I/O layer still holds it in its read buffer).
    FeedChunk,
    /// Push the header field [`Session::header_into`] wrote into the buffer it
    /// was given (reused from field to field: no allocation per header).
    FeedHeader,
    /// End of message: finish the job, then call [`Session::end_of_message`].
    Finish(Meta),
    /// Drop the job: the MTA aborted the message.
    Abort,
    /// Close the connection.
    Close,
}

/// How to run the pipeline for the message that starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// Verify and/or sign, and why ([`crate::outcome::plan`]).
    pub plan: Plan,
    /// What we know of the SMTP envelope.
    pub envelope: Envelope,
}

/// Protocol violations that end the connection (the MTA then applies its
/// `milter_default_action`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The MTA speaks a milter version older than 2.
    #[error("milter protocol version {0} is not supported (need 2..=6)")]
    Version(u32),
    /// A command arrived where it makes no sense.
    #[error("milter command out of order: {0}")]
    OutOfOrder(&'static str),
}

#[derive(Debug, Default)]
struct Macros(HashMap<String, String>);

impl Macros {
    fn set(&mut self, name: &str, mut value: String) {
        let key = name.trim_start_matches('{').trim_end_matches('}');
        if !self.0.contains_key(key) && self.0.len() >= MAX_MACROS {
            return;
        }
        if value.len() > MAX_MACRO_VALUE {
            let mut cut = MAX_MACRO_VALUE;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
        }
        self.0.insert(key.to_string(), value);
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Default)]
struct Connection {
    hostname: String,
    family: Option<Family>,
    port: u16,
    client_ip: Option<IpAddr>,
    helo: Option<String>,
    macros: Macros,
}

#[derive(Debug)]
struct Message {
    recipients: usize,
    rcpt_domain: Option<String>,
    size: u64,
    end_of_headers: bool,
}

/// One milter connection.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    negotiated: bool,
    protocol: u32,
    actions: u32,
    conn: Connection,
    /// Message-scope macros (MAIL and later); they arrive before MAIL.
    msg_macros: Macros,
    msg: Option<Message>,
}

impl Session {
    /// A session waiting for option negotiation.
    pub fn new(settings: Settings) -> Self {
        Session {
            settings,
            negotiated: false,
            protocol: 0,
            actions: 0,
            conn: Connection::default(),
            msg_macros: Macros::default(),
            msg: None,
        }
    }

    /// The `SMFIP_*` flags in force.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// Handles one command; the actions are to be carried out in order.
    pub fn handle(&mut self, cmd: Command) -> Result<Vec<Action>, SessionError> {
        let mut out = Vec::new();
        self.handle_into(cmd, &mut out)?;
        Ok(out)
    }

    /// [`Session::handle`], appending the actions to `out` (the I/O layer
    /// reuses one vector for the whole connection).
    pub fn handle_into(&mut self, cmd: Command, out: &mut Vec<Action>) -> Result<(), SessionError> {
        if !self.negotiated && !matches!(cmd, Command::OptNeg { .. } | Command::Quit) {
            return Err(SessionError::OutOfOrder(
                "command before option negotiation",
            ));
        }
        match cmd {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => out.push(Action::Reply(self.negotiate(version, actions, protocol)?)),
            Command::Macro { stage, pairs } => self.macros(stage, pairs),
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                // The connect macros came just before this command.
                let macros = std::mem::take(&mut self.conn.macros);
                self.reset_connection(out);
                self.conn.macros = macros;
                self.conn.client_ip = client_ip(family, &address);
                self.conn.hostname = hostname;
                self.conn.family = Some(family);
                self.conn.port = port;
                self.reply_unless(protocol::NR_CONN, out);
            }
            Command::Helo(name) => {
                self.conn.helo = Some(name);
                self.reply_unless(protocol::NR_HELO, out);
            }
            Command::Mail(args) => {
                self.mail(&args, out);
                self.reply_unless(protocol::NR_MAIL, out);
            }
            Command::Rcpt(args) => {
                if let Some(m) = &mut self.msg {
                    m.recipients += 1;
                    if m.rcpt_domain.is_none() {
                        m.rcpt_domain = args.first().and_then(|a| {
                            crate::message::address::domain_of(a.trim_matches(['<', '>']))
                        });
                    }
                }
                self.reply_unless(protocol::NR_RCPT, out);
            }
            Command::Data => self.reply_unless(protocol::NR_DATA, out),
            Command::Unknown(_) => self.reply_unless(protocol::NR_UNKN, out),
            Command::Header { name, value } => {
                let (start, mut bytes) = (out.len(), Vec::new());
                self.header_into(name.as_bytes(), &value, &mut bytes, out)?;
                if let Some(feed) = out[start..]
                    .iter_mut()
                    .find(|a| matches!(a, Action::FeedHeader))
                {
                    *feed = Action::Feed(bytes);
                }
            }
            Command::Eoh => {
                self.end_headers(out)?;
                self.reply_unless(protocol::NR_EOH, out);
            }
            Command::Body(chunk) => {
                let mut chunk = Some(chunk);
                for action in self.body_chunk(chunk.as_ref().map_or(0, Vec::len))? {
                    out.push(match action {
                        Action::FeedChunk => Action::Feed(chunk.take().unwrap_or_default()),
                        other => other,
                    });
                }
            }
            Command::EndOfMessage(chunk) => self.end_of_body(chunk, out)?,
            Command::Abort => self.abort(out),
            Command::Quit => {
                self.abort(out);
                out.push(Action::Close);
            }
            Command::QuitNewConnection => self.reset_connection(out),
        }
        Ok(())
    }

    fn negotiate(
        &mut self,
        version: u32,
        offered_actions: u32,
        offered_protocol: u32,
    ) -> Result<Response, SessionError> {
        if version < 2 {
            return Err(SessionError::Version(version));
        }
        self.negotiated = true;
        self.actions = WANT_ACTIONS & offered_actions;
        if version < 6 {
            self.actions &= !actions::SETSYMLIST;
        }
        self.protocol = WANT_PROTOCOL & offered_protocol;
        Ok(Response::OptNeg {
            version: version.min(VERSION),
            actions: self.actions,
            protocol: self.protocol,
            macros: if self.actions & actions::SETSYMLIST != 0 {
                WANT_MACROS
            } else {
                &[]
            },
        })
    }

    fn macros(&mut self, stage: u8, pairs: Vec<(String, String)>) {
        let scope = if matches!(stage, b'C' | b'H') {
            &mut self.conn.macros
        } else {
            &mut self.msg_macros
        };
        for (name, value) in pairs {
            scope.set(&name, value);
        }
    }

    fn reply_unless(&self, no_reply: u32, out: &mut Vec<Action>) {
        if self.protocol & no_reply == 0 {
            out.push(Action::Reply(Response::Continue));
        }
    }

    fn reset_connection(&mut self, out: &mut Vec<Action>) {
        self.abort(out);
        self.conn = Connection::default();
    }

    fn abort(&mut self, out: &mut Vec<Action>) {
        if self.msg.take().is_some() {
            out.push(Action::Abort);
        }
        self.msg_macros = Macros::default();
    }

    fn mail(&mut self, args: &[String], out: &mut Vec<Action>) {
        if self.msg.take().is_some() {
            // A new MAIL without end or abort: the old message is gone.
            out.push(Action::Abort);
        }
        let sender = args.first().map_or("", |a| a.as_str());
        let mail_from = sender
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let authenticated = self.msg_macros.get("auth_authen").is_some();
        out.push(Action::Begin(Begin {
            plan: crate::outcome::plan(self.settings.role, &self.origin(authenticated)),
            envelope: Envelope {
                client_ip: self.conn.client_ip,
                helo: self.conn.helo.clone(),
                mail_from: Some(mail_from),
                authenticated,
            },
        }));
        self.msg = Some(Message {
            recipients: 0,
            rcpt_domain: None,
            size: 0,
            end_of_headers: false,
        });
    }

    /// What the connection tells about the client, for the role.
    fn origin(&self, authenticated: bool) -> Origin {
        let internal = self
            .conn
            .client_ip
            .is_some_and(|ip| crate::policy::is_internal(ip, &self.settings.internal_hosts));
        let outbound_daemon = self.conn.macros.get("daemon_name").is_some_and(|daemon| {
            self.settings
                .outbound_daemons
                .iter()
                .any(|d| d.eq_ignore_ascii_case(daemon))
        });
        Origin {
            authenticated,
            internal,
            outbound_daemon,
            local_submission: self.settings.sign_local_submissions && self.local_submission(),
        }
    }

    /// Mail from Postfix `sendmail`/pickup through `non_smtpd_milters`: the
    /// cleanup server makes up an SMTP session from "localhost" [127.0.0.1]
    /// with client port 0 (seen with Postfix 3.7: macros as for smtpd,
    /// `{daemon_addr}` included, HELO "localhost", MAIL without brackets).
    /// A real TCP client never has port 0.
    fn local_submission(&self) -> bool {
        self.conn.client_ip.is_some_and(|ip| ip.is_loopback())
            && self.conn.port == 0
            && self.conn.hostname.eq_ignore_ascii_case("localhost")
    }

    /// A header packet (`L`), its name and value borrowed from the packet:
    /// the field as it stood in the message is written into `bytes` and
    /// [`Action::FeedHeader`] asks the I/O layer to push it into the job.
    pub fn header_into(
        &mut self,
        name: &[u8],
        value: &[u8],
        bytes: &mut Vec<u8>,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        bytes.clear();
        self.header_bytes(name, value, bytes);
        self.count(bytes.len(), "header outside a message")?;
        out.push(Action::FeedHeader);
        self.reply_unless(protocol::NR_HDR, out);
        Ok(())
    }

    fn header_bytes(&self, name: &[u8], value: &[u8], b: &mut Vec<u8>) {
        b.reserve(name.len() + value.len() + 4);
        b.extend_from_slice(name);
        b.push(b':');
        if self.protocol & protocol::HDR_LEADSPC == 0 {
            // The MTA dropped the space after the colon; put the usual one back.
            b.push(b' ');
        }
        // Folded lines come separated by LF; the message on the wire had CRLF.
        let mut prev = 0u8;
        for &c in value {
            if c == b'\n' && prev != b'\r' {
                b.push(b'\r');
            }
            b.push(c);
            prev = c;
        }
        b.extend_from_slice(b"\r\n");
    }

    /// A body chunk (`B`) of `len` bytes that the I/O layer feeds to the
    /// job itself, from its read buffer, where [`Action::FeedChunk`] stands:
    /// a milter's body is never copied (it can be most of what it reads).
    pub fn body_chunk(&mut self, len: usize) -> Result<Vec<Action>, SessionError> {
        let mut out = Vec::new();
        self.end_headers(&mut out)?;
        self.count(len, "body outside a message")?;
        if len > 0 {
            out.push(Action::FeedChunk);
        }
        self.reply_unless(protocol::NR_BODY, &mut out);
        Ok(out)
    }

    fn feed(
        &mut self,
        bytes: Vec<u8>,
        what: &'static str,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        self.count(bytes.len(), what)?;
        if !bytes.is_empty() {
            out.push(Action::Feed(bytes));
        }
        Ok(())
    }

    /// Adds `len` message bytes to the size; `what` names the error when
    /// no message is open.
    fn count(&mut self, len: usize, what: &'static str) -> Result<(), SessionError> {
        let msg = self.msg.as_mut().ok_or(SessionError::OutOfOrder(what))?;
        msg.size = msg.size.saturating_add(len as u64);
        Ok(())
    }

    fn end_headers(&mut self, out: &mut Vec<Action>) -> Result<(), SessionError> {
        let msg = self
            .msg
            .as_mut()
            .ok_or(SessionError::OutOfOrder("end of headers outside a message"))?;
        if !msg.end_of_headers {
            msg.end_of_headers = true;
            msg.size = msg.size.saturating_add(2);
            out.push(Action::Feed(b"\r\n".to_vec()));
        }
        Ok(())
    }

    fn end_of_body(&mut self, chunk: Vec<u8>, out: &mut Vec<Action>) -> Result<(), SessionError> {
        self.end_headers(out)?;
        self.feed(chunk, "end of message outside a message", out)?;
        let (recipients, size, rcpt_domain) = self.msg.as_ref().map_or((0, 0, None), |m| {
            (m.recipients, m.size, m.rcpt_domain.clone())
        });
        out.push(Action::Finish(Meta {
            queue_id: self.msg_macros.get("i").map(str::to_string),
            recipients,
            size,
            rcpt_domain,
        }));
        Ok(())
    }

    /// The replies that end the message; the session is then ready for the
    /// next message on this connection.
    pub fn end_of_message(&mut self, fate: &Fate) -> Vec<Response> {
        self.msg = None;
        self.msg_macros = Macros::default();
        if let Some(a) = &fate.answer {
            let code = format!("{} {}", a.code, a.enhanced);
            return vec![Response::ReplyCode(reply_text(&code, &a.text))];
        }
        let leadspc = self.protocol & protocol::HDR_LEADSPC != 0;
        let edits = fate.edits();
        let mut out = Vec::new();
        if self.actions & actions::CHGHDRS != 0 {
            out.extend(removals(&edits.remove, fate.headers()));
        }
        if self.actions & actions::ADDHDRS != 0 {
            out.extend(insertions(&edits.add, leadspc));
        }
        if fate.disposition == Disposition::Quarantine
            && self.settings.quarantine == MilterQuarantine::Hold
            && self.actions & actions::QUARANTINE != 0
        {
            let domain = fate
                .verdict()
                .and_then(|v| v.dmarc.as_ref())
                .map_or("", |d| d.domain.as_str());
            let why = format!("authgate: DMARC quarantine for {domain}");
            out.push(Response::Quarantine(clean_text(&why)));
        }
        out.push(Response::Continue);
        out
    }
}

/// `SMFIR_CHGHEADER` deletions for `remove` (indices into `headers`). The
/// index is per name (the nth field with that name, 1-based), counted in the
/// header as the filter saw it. Sent before any insertion (an inserted A-R
/// would shift the count) and bottom-up, so earlier deletions cannot shift
/// later ones whatever the MTA does with deleted fields.
pub fn removals(remove: &[usize], headers: &[Header]) -> Vec<Response> {
    let mut idx: Vec<usize> = remove
        .iter()
        .copied()
        .filter(|&i| i < headers.len())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.iter()
        .rev()
        .map(|&i| {
            let name = headers[i].name();
            let nth = headers[..=i]
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
                .count();
            Response::ChangeHeader {
                index: u32::try_from(nth).unwrap_or(u32::MAX),
                name: String::from_utf8_lossy(name).into_owned(),
                value: String::new(),
            }
        })
        .collect()
}

/// `SMFIR_INSHEADER` at index 0 for each added field. `add` is in final
/// order (first = topmost), so they are inserted last first.
pub fn insertions(add: &[Header], leadspc: bool) -> Vec<Response> {
    add.iter()
        .rev()
        .map(|h| {
            let mut value = String::from_utf8_lossy(h.value()).replace("\r\n", "\n");
            if !leadspc && value.starts_with(' ') {
                // Without HDR_LEADSPC the MTA writes "Name: value" itself.
                value.remove(0);
            }
            Response::InsertHeader {
                index: 0,
                name: String::from_utf8_lossy(h.name()).into_owned(),
                value,
            }
        })
        .collect()
}

/// `code` plus `text` made safe for an SMTP reply: printable ASCII only,
/// `%` doubled (Sendmail formats the text; Postfix undoubles), bounded.
fn reply_text(code: &str, text: &str) -> String {
    format!("{code} {}", clean_text(text))
}

fn clean_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len().min(MAX_REPLY_TEXT));
    for c in text.chars() {
        if s.len() >= MAX_REPLY_TEXT {
            break;
        }
        match c {
            '%' => s.push_str("%%"),
            ' '..='~' => s.push(c),
            _ => s.push('?'),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::HeaderSplitter;
    use crate::milter::codec::{self, Command as C};
    use crate::outcome::{Answer, Front, Refusal};
    use crate::pipeline::{Edits, Finished, Verdict};

    fn settings(role: Role) -> Settings {
        Settings {
            role,
            outbound_daemons: vec!["ORIGINATING".into()],
            internal_hosts: vec!["10.0.0.0/8".parse().unwrap()],
            sign_local_submissions: true,
            quarantine: MilterQuarantine::Header,
        }
    }

    /// Postfix 3.x offers every action and every protocol bit.
    fn negotiated(role: Role) -> Session {
        let mut s = Session::new(settings(role));
        let out = s
            .handle(C::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            })
            .unwrap();
        assert_eq!(
            out,
            vec![Action::Reply(Response::OptNeg {
                version: 6,
                actions: WANT_ACTIONS,
                protocol: WANT_PROTOCOL,
                macros: WANT_MACROS,
            })]
        );
        s
    }

    fn connect(s: &mut Session, host: &str, ip: &str) -> Vec<Action> {
        connect_port(s, host, ip, 4321)
    }

    fn connect_port(s: &mut Session, host: &str, ip: &str, port: u16) -> Vec<Action> {
        s.handle(C::Connect {
            hostname: host.into(),
            family: if ip.contains(':') {
                Family::Inet6
            } else {
                Family::Inet
            },
            port,
            address: ip.into(),
        })
        .unwrap()
    }

    fn macro_(s: &mut Session, stage: u8, pairs: &[(&str, &str)]) {
        let out = s
            .handle(C::Macro {
                stage,
                pairs: pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            })
            .unwrap();
        assert!(out.is_empty(), "macros are never answered");
    }

    fn begin_of(out: &[Action]) -> &Begin {
        out.iter()
            .find_map(|a| match a {
                Action::Begin(b) => Some(b),
                _ => None,
            })
            .expect("a Begin action")
    }

    #[test]
    fn negotiation_takes_only_what_the_mta_offers() {
        let mut s = Session::new(settings(Role::Auto));
        // An old MTA (version 2, no NR flags, no quarantine).
        let out = s
            .handle(C::OptNeg {
                version: 2,
                actions: 0x1f,
                protocol: 0x7f,
            })
            .unwrap();
        assert_eq!(
            out,
            vec![Action::Reply(Response::OptNeg {
                version: 2,
                actions: actions::ADDHDRS | actions::CHGHDRS,
                protocol: 0,
                macros: &[],
            })]
        );
        // Without no-reply flags every event is answered.
        assert_eq!(
            connect(&mut s, "c.example", "192.0.2.1"),
            vec![Action::Reply(Response::Continue)]
        );
        let mut s = Session::new(settings(Role::Auto));
        assert_eq!(
            s.handle(C::OptNeg {
                version: 1,
                actions: 0,
                protocol: 0
            }),
            Err(SessionError::Version(1))
        );
        assert!(matches!(
            Session::new(settings(Role::Auto)).handle(C::Helo("x".into())),
            Err(SessionError::OutOfOrder(_))
        ));
    }

    #[test]
    fn with_no_reply_flags_only_end_of_message_is_answered() {
        let mut s = negotiated(Role::Auto);
        assert!(connect(&mut s, "client.example", "192.0.2.1").is_empty());
        assert!(
            s.handle(C::Helo("client.example".into()))
                .unwrap()
                .is_empty()
        );
        macro_(&mut s, b'M', &[("i", "4ABC"), ("{auth_authen}", "")]);
        let out = s.handle(C::Mail(vec!["<a@example.org>".into()])).unwrap();
        let b = begin_of(&out);
        assert!(b.plan.verify && !b.plan.sign, "{b:?}");
        assert_eq!(
            b.envelope,
            Envelope {
                client_ip: Some("192.0.2.1".parse().unwrap()),
                helo: Some("client.example".into()),
                mail_from: Some("a@example.org".into()),
                authenticated: false,
            }
        );
        assert!(s.handle(C::Rcpt(vec!["<b@x>".into()])).unwrap().is_empty());
        assert!(s.handle(C::Rcpt(vec!["<c@x>".into()])).unwrap().is_empty());
        let out = s
            .handle(C::Header {
                name: "Subject".into(),
                value: b" hi\n\tthere".to_vec(),
            })
            .unwrap();
        assert_eq!(
            out,
            vec![Action::Feed(b"Subject: hi\r\n\tthere\r\n".to_vec())]
        );
        assert_eq!(
            s.handle(C::Eoh).unwrap(),
            vec![Action::Feed(b"\r\n".to_vec())]
        );
        assert_eq!(
            s.handle(C::Body(b"x\r\n".to_vec())).unwrap(),
            vec![Action::Feed(b"x\r\n".to_vec())]
        );
        // The I/O layer's path: the chunk stays in its buffer, only counted here.
        assert_eq!(s.body_chunk(5).unwrap(), vec![Action::FeedChunk]);
        assert!(s.body_chunk(0).unwrap().is_empty());
        macro_(&mut s, b'E', &[("i", "4ABC")]);
        assert_eq!(
            s.handle(C::EndOfMessage(vec![])).unwrap(),
            vec![Action::Finish(Meta {
                queue_id: Some("4ABC".into()),
                recipients: 2,
                size: 21 + 2 + 3 + 5,
                rcpt_domain: Some("x".into()),
            })]
        );
        assert!(matches!(
            Session::new(settings(Role::Auto)).body_chunk(3),
            Err(SessionError::OutOfOrder(_))
        ));
    }

    #[test]
    fn header_into_reuses_the_callers_buffer() {
        let mut s = Session::new(settings(Role::Auto));
        s.handle(C::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        })
        .unwrap();
        connect(&mut s, "c", "192.0.2.1");
        let (mut field, mut out) = (b"left over".to_vec(), Vec::new());
        assert!(matches!(
            s.header_into(b"To", b" b@x", &mut field, &mut out),
            Err(SessionError::OutOfOrder(_))
        ));
        s.handle(C::Mail(vec!["<>".into()])).unwrap();
        out.clear();
        out.push(Action::Abort);
        s.header_into(b"Subject", b" hi\n\tthere", &mut field, &mut out)
            .unwrap();
        assert_eq!(field, b"Subject: hi\r\n\tthere\r\n");
        // Appended after what the caller had queued; no reply (NR_HDR).
        assert_eq!(out, vec![Action::Abort, Action::FeedHeader]);
        s.header_into(b"To", b" b@x", &mut field, &mut out).unwrap();
        assert_eq!(field, b"To: b@x\r\n");
    }

    #[test]
    fn header_without_leading_space_flag_gets_one() {
        let mut s = Session::new(settings(Role::Auto));
        s.handle(C::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff & !protocol::HDR_LEADSPC,
        })
        .unwrap();
        connect(&mut s, "c", "192.0.2.1");
        s.handle(C::Mail(vec!["<>".into()])).unwrap();
        let out = s
            .handle(C::Header {
                name: "To".into(),
                value: b"b@x".to_vec(),
            })
            .unwrap();
        assert_eq!(out, vec![Action::Feed(b"To: b@x\r\n".to_vec())]);
    }

    #[test]
    fn role_follows_opendkim_rules() {
        type Case<'a> = (
            Role,
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            (bool, bool),
        );
        let cases: [Case; 9] = [
            (
                Role::Auto,
                "mx.example",
                "192.0.2.1",
                &[],
                &[],
                (true, false),
            ),
            (
                Role::Auto,
                "mx.example",
                "192.0.2.1",
                &[],
                &[("{auth_authen}", "alice")],
                (false, true),
            ),
            (Role::Auto, "lan", "10.1.2.3", &[], &[], (false, true)),
            (
                Role::Auto,
                "mx",
                "192.0.2.1",
                &[("{daemon_name}", "originating")],
                &[],
                (false, true),
            ),
            (
                Role::Auto,
                "mx",
                "192.0.2.1",
                &[("{daemon_name}", "smtpd")],
                &[],
                (true, false),
            ),
            // Postfix non_smtpd_milters: made-up session from localhost, port 0.
            (
                Role::Auto,
                "localhost",
                "127.0.0.1:0",
                &[("{daemon_name}", "mx.example")],
                &[],
                (false, true),
            ),
            // A real SMTP client on loopback has a port.
            (
                Role::Auto,
                "localhost",
                "127.0.0.1:4321",
                &[("{daemon_addr}", "127.0.0.1")],
                &[],
                (true, false),
            ),
            (Role::Outbound, "mx", "192.0.2.1", &[], &[], (false, true)),
            (
                Role::Both,
                "mx",
                "192.0.2.1",
                &[],
                &[("{auth_authen}", "a")],
                (true, true),
            ),
        ];
        for (role, host, ip, conn, mail, want) in cases {
            let mut s = negotiated(role);
            macro_(&mut s, b'C', conn);
            let (ip, port) = ip.split_once(':').unwrap_or((ip, "25"));
            connect_port(&mut s, host, ip, port.parse().unwrap());
            macro_(&mut s, b'M', mail);
            let out = s.handle(C::Mail(vec!["<a@example.org>".into()])).unwrap();
            let b = begin_of(&out);
            assert_eq!(
                (b.plan.verify, b.plan.sign),
                want,
                "{role:?} {host} {ip} {conn:?} {mail:?}"
            );
            assert_eq!(b.envelope.authenticated, !mail.is_empty());
        }
    }

    fn h(raw: &str) -> Header {
        Header::from_raw(raw.as_bytes().to_vec())
    }

    #[test]
    fn header_indices_are_per_name_bottom_up_before_insertions() {
        let headers = vec![
            h("Authentication-Results: other; dkim=pass\r\n"),
            h("Received: a\r\n"),
            h("authentication-results: mx.example; dkim=pass\r\n"),
            h("Subject: x\r\n"),
            h("Authentication-Results: mx.example; spf=pass\r\n"),
        ];
        let edits = Edits {
            remove: vec![4, 2],
            add: vec![
                Header::new(
                    "Authentication-Results",
                    " mx.example;\r\n\tdkim=none",
                    b"\r\n",
                ),
                Header::new("Received-SPF", " pass", b"\r\n"),
            ],
        };
        let done = Finished::new(Verdict::default(), edits, headers, HeaderSplitter::new(0));
        let mut s = negotiated(Role::Auto);
        connect(&mut s, "c", "192.0.2.1");
        s.handle(C::Mail(vec!["<>".into()])).unwrap();
        let out = s.end_of_message(&fate(Disposition::Accept, None, Some(done)));
        let chg = |index, name: &str| Response::ChangeHeader {
            index,
            name: name.into(),
            value: String::new(),
        };
        let ins = |name: &str, value: &str| Response::InsertHeader {
            index: 0,
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            out,
            vec![
                chg(3, "Authentication-Results"),
                chg(2, "authentication-results"),
                ins("Received-SPF", " pass"),
                ins("Authentication-Results", " mx.example;\n\tdkim=none"),
                Response::Continue,
            ]
        );
        assert!(s.msg.is_none());
    }

    /// A fate as the outcome layer makes it.
    fn fate(disposition: Disposition, answer: Option<Answer>, message: Option<Finished>) -> Fate {
        Fate {
            disposition,
            answer,
            reason: None,
            message,
            front: Front::Milter,
            meta: Meta::default(),
            envelope: Envelope::default(),
            elapsed: std::time::Duration::ZERO,
            end_of_data: None,
            refusal: None,
            dns: Default::default(),
            told: None,
        }
    }

    #[test]
    fn reject_tempfail_and_failure_are_reply_codes() {
        let mut s = negotiated(Role::Auto);
        let reject = Answer::refused("DMARC policy of example.org: reject 100%");
        let temp = Answer::try_later("DMARC temporary error for x\r\n");
        assert_eq!(
            s.end_of_message(&fate(Disposition::Reject, Some(reject), None)),
            vec![Response::ReplyCode(
                "550 5.7.1 Message refused: DMARC policy of example.org: reject 100%%".into()
            )]
        );
        assert_eq!(
            s.end_of_message(&fate(Disposition::Tempfail, Some(temp), None)),
            vec![Response::ReplyCode(
                "451 4.7.1 Try again later: DMARC temporary error for x??".into()
            )]
        );
        let failed = Fate::refused(
            Front::Milter,
            Meta::default(),
            Envelope::default(),
            Refusal::Failed("pipeline panicked".into()),
        );
        let Response::ReplyCode(t) = &s.end_of_message(&failed)[0] else {
            panic!()
        };
        assert!(t.starts_with("451 4.3.0 "), "{t}");
    }

    #[test]
    fn quarantine_hold_only_when_configured_and_allowed() {
        let done = fate(Disposition::Quarantine, None, None);
        let mut s = negotiated(Role::Auto);
        assert_eq!(s.end_of_message(&done), vec![Response::Continue]);
        s.settings.quarantine = MilterQuarantine::Hold;
        let out = s.end_of_message(&done);
        assert!(matches!(out[0], Response::Quarantine(_)), "{out:?}");
        assert_eq!(out[1], Response::Continue);
    }

    #[test]
    fn abort_mid_message_and_several_messages_per_connection() {
        let mut s = negotiated(Role::Auto);
        connect(&mut s, "c", "192.0.2.1");
        macro_(&mut s, b'M', &[("i", "Q1")]);
        s.handle(C::Mail(vec!["<a@x>".into()])).unwrap();
        s.handle(C::Header {
            name: "From".into(),
            value: b" a@x".to_vec(),
        })
        .unwrap();
        assert_eq!(s.handle(C::Abort).unwrap(), vec![Action::Abort]);
        assert!(s.msg.is_none());
        // Body after abort is out of order.
        assert!(s.handle(C::Body(b"x".to_vec())).is_err());
        // The next message has a fresh queue id and counters.
        macro_(&mut s, b'M', &[("i", "Q2")]);
        s.handle(C::Mail(vec!["<b@x>".into()])).unwrap();
        let out = s.handle(C::EndOfMessage(b"tail\r\n".to_vec())).unwrap();
        assert_eq!(
            out,
            vec![
                Action::Feed(b"\r\n".to_vec()),
                Action::Feed(b"tail\r\n".to_vec()),
                Action::Finish(Meta {
                    queue_id: Some("Q2".into()),
                    recipients: 0,
                    size: 8,
                    rcpt_domain: None,
                }),
            ]
        );
        s.end_of_message(&fate(
            Disposition::Tempfail,
            Some(Answer::internal_error()),
            None,
        ));
        // A second MAIL without end of message aborts the first.
        s.handle(C::Mail(vec!["<c@x>".into()])).unwrap();
        let out = s.handle(C::Mail(vec!["<d@x>".into()])).unwrap();
        assert_eq!(out[0], Action::Abort);
        assert_eq!(
            s.handle(C::Quit).unwrap(),
            vec![Action::Abort, Action::Close]
        );
    }

    #[test]
    fn macros_are_bounded() {
        let mut m = Macros::default();
        for i in 0..1000 {
            m.set(&format!("{{m{i}}}"), "x".repeat(5000));
        }
        assert_eq!(m.0.len(), MAX_MACROS);
        assert!(m.0.values().all(|v| v.len() == MAX_MACRO_VALUE));
        m.set("{m0}", "é".repeat(1000));
        assert!(m.get("m0").unwrap().len() <= MAX_MACRO_VALUE);
    }

    #[test]
    fn decoded_stream_drives_the_session() {
        // The codec and the session together, as the socket front uses them.
        let mut bytes = Vec::new();
        let mut opt = Vec::new();
        for v in [6u32, 0x1ff, 0x1f_ffff] {
            opt.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend(codec::encode_command(b'O', &opt));
        bytes.extend(codec::encode_command(b'C', b"h\x004\0\x19192.0.2.9\0"));
        bytes.extend(codec::encode_command(b'M', b"<a@x>\0"));
        bytes.extend(codec::encode_command(b'Q', b""));
        let mut s = Session::new(settings(Role::Auto));
        let mut actions = Vec::new();
        let mut rest = &bytes[..];
        while let Some((cmd, used)) = codec::decode(rest).unwrap() {
            actions.extend(s.handle(cmd).unwrap());
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert!(matches!(actions.last(), Some(Action::Close)));
        assert_eq!(
            begin_of(&actions).envelope.client_ip,
            Some("192.0.2.9".parse().unwrap())
        );
    }
}
