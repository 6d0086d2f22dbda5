//! The client side of a proxy session as a pure state machine.
//!
//! Owns: which commands are valid when, what we answer ourselves (EHLO,
//! NOOP, sequence and syntax errors, limits) and what must go to the next
//! hop first (MAIL, RCPT, RSET, XFORWARD), the envelope and XFORWARD/XCLIENT
//! facts, and how the next hop's end-of-data replies map back to the client
//! (LMTP: one per accepted recipient, in RCPT order). Must not: touch
//! sockets, clocks or the message (the I/O layer moves bytes and runs the
//! pipeline).

use std::collections::VecDeque;
use std::net::IpAddr;

use smtp_proto::Request;

use super::reply::Reply;
use super::xforward::{Attrs, advertised};

/// What the next hop offered in its EHLO/LHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopCaps {
    /// XFORWARD attribute names, when offered.
    pub xforward: Option<Vec<String>>,
    /// `8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `DSN`.
    pub dsn: bool,
    /// `PIPELINING`.
    pub pipelining: bool,
    /// `SIZE` (Dovecot's LMTP does not offer it).
    pub size: bool,
}

impl HopCaps {
    /// Reads the capability lines of an EHLO/LHLO reply.
    pub fn from_ehlo(reply: &Reply) -> HopCaps {
        let has = |kw: &str| advertised(&reply.lines, kw).is_some();
        HopCaps {
            xforward: advertised(&reply.lines, "XFORWARD"),
            eight_bit: has("8BITMIME"),
            smtputf8: has("SMTPUTF8"),
            dsn: has("DSN"),
            pipelining: has("PIPELINING"),
            size: has("SIZE"),
        }
    }
}

/// Fixed facts of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The client speaks LMTP (LHLO, per-recipient replies).
    pub lmtp: bool,
    /// Our name in 220 and EHLO replies.
    pub hostname: String,
    /// SIZE we advertise and enforce (0: none).
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// What the next hop offered.
    pub hop: HopCaps,
    /// The client may send XFORWARD and XCLIENT.
    pub trusted: bool,
    /// The TCP peer (`None`: a Unix socket).
    pub peer_ip: Option<IpAddr>,
}

/// What the I/O layer must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write this reply.
    Reply(Reply),
    /// Send `prelude` (each must get a 2xx), then `command` to the next hop,
    /// and give the reply to [`Session::forwarded`].
    Forward {
        /// Commands to send first (XFORWARD).
        prelude: Vec<Vec<u8>>,
        /// The client's command, as received.
        command: Vec<u8>,
    },
    /// The next hop has an open transaction: send it `RSET`, then write this.
    ResetThenReply(Reply),
    /// Write [`Session::go_ahead`] and read the message (dot-stuffed, up to `.`).
    Data,
    /// Read exactly `size` raw bytes (BDAT); after the last chunk the
    /// message is complete. `refuse`: read and discard, then answer this.
    Chunk {
        /// Bytes in the chunk.
        size: usize,
        /// `LAST` was given.
        last: bool,
        /// Discard the chunk and answer this instead.
        refuse: Option<Reply>,
    },
    /// Write this reply and close.
    Quit(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before HELO/EHLO/LHLO.
    Greeted,
    /// Between transactions.
    Ready,
    /// MAIL accepted.
    Mail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Mail { from: String, size: u64 },
    Rcpt { to: String },
    Rset,
}

/// The current transaction's envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// MAIL FROM address (`""`: null sender).
    pub mail_from: String,
    /// SIZE= declared by the client.
    pub declared_size: u64,
    /// Recipients the next hop accepted, in RCPT order.
    pub rcpts: Vec<String>,
    /// BDAT chunks are being received.
    pub bdat: bool,
    /// Bytes received in BDAT chunks so far.
    pub bdat_bytes: u64,
}

/// One client session.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    /// Forwarded commands whose next-hop replies are still to come, in
    /// order (MAIL and RCPT may be pipelined to a hop with PIPELINING).
    pending: VecDeque<Pending>,
    helo: Option<String>,
    /// Per-transaction XFORWARD attributes (Postfix resends them before each MAIL).
    xforward: Attrs,
    /// Per-session XCLIENT attributes.
    xclient: Attrs,
    tx: Transaction,
    /// The next hop has no transaction open: nothing since its EHLO, its
    /// last `RSET` or its last end-of-data reply started one. An `RSET`
    /// then changes nothing there and is answered here.
    hop_idle: bool,
}

fn reply(code: u16, status: &str, text: &str) -> Step {
    Step::Reply(Reply::new(code, status, text))
}

impl Session {
    /// A new session; write [`Session::greeting`] first.
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            state: State::Greeted,
            pending: VecDeque::new(),
            helo: None,
            xforward: Attrs::default(),
            xclient: Attrs::default(),
            tx: Transaction::default(),
            hop_idle: true,
        }
    }

    /// The I/O layer reset the next hop (`RSET` sent) or the hop finished
    /// a transaction (its end-of-data reply): it has none open now.
    pub fn hop_reset(&mut self) {
        self.hop_idle = true;
    }

    /// The next hop has no transaction open and no reply outstanding: its
    /// connection can serve another client.
    pub fn hop_reusable(&self) -> bool {
        self.hop_idle && self.pending.is_empty()
    }

    /// The 220 banner.
    pub fn greeting(&self) -> Reply {
        let proto = if self.cfg.lmtp { "LMTP" } else { "ESMTP" };
        Reply::new(220, "", format!("{} {proto} authgate", self.cfg.hostname))
    }

    /// The current transaction.
    pub fn transaction(&self) -> &Transaction {
        &self.tx
    }

    /// The client address: XFORWARD, XCLIENT, else the TCP peer.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.xforward
            .addr()
            .or_else(|| self.xclient.addr())
            .or(self.cfg.peer_ip)
    }

    /// The client's HELO name: XFORWARD, XCLIENT, else its own EHLO.
    pub fn client_helo(&self) -> Option<String> {
        self.xforward
            .get("HELO")
            .or_else(|| self.xclient.get("HELO"))
            .map(str::to_string)
            .or_else(|| self.helo.clone())
    }

    /// The SASL login XCLIENT reported, if any.
    pub fn login(&self) -> Option<&str> {
        self.xclient.get("LOGIN").filter(|l| !l.is_empty())
    }

    /// The MTA's queue id (XFORWARD IDENT).
    pub fn queue_id(&self) -> Option<&str> {
        self.xforward.get("IDENT")
    }

    /// Handles one command line (with its line ending).
    pub fn command(&mut self, line: &[u8]) -> Step {
        let verb_end = line
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let verb = String::from_utf8_lossy(&line[..verb_end]).to_ascii_uppercase();
        match verb.as_str() {
            "XFORWARD" => return self.xforward_cmd(&line[verb_end..]),
            "XCLIENT" => return self.xclient_cmd(&line[verb_end..]),
            _ => {}
        }
        match Request::parse(&mut line.iter()) {
            Ok(req) => self.request(req, line),
            Err(
                e @ (smtp_proto::Error::InvalidSenderAddress
                | smtp_proto::Error::InvalidRecipientAddress),
            ) => match address_literal(line) {
                Some((masked, literal)) => match Request::parse(&mut masked.iter()) {
                    Ok(Request::Mail { from }) => {
                        let address = unmask(&from.address, &literal);
                        self.mail(&address, from.size as u64, line)
                    }
                    Ok(Request::Rcpt { to }) => self.rcpt(&unmask(&to.address, &literal), line),
                    _ => bad_address(&e),
                },
                None => bad_address(&e),
            },
            Err(smtp_proto::Error::UnknownCommand) => {
                reply(500, "5.5.2", "Error: command not recognized")
            }
            Err(smtp_proto::Error::SyntaxError { syntax }) => {
                reply(501, "5.5.4", &format!("Syntax: {syntax}"))
            }
            Err(smtp_proto::Error::InvalidParameter { param }) => {
                reply(501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            Err(smtp_proto::Error::UnsupportedParameter { param }) => {
                reply(555, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            Err(_) => reply(500, "5.5.2", "Error: bad command"),
        }
    }

    fn request(&mut self, req: Request<std::borrow::Cow<'_, str>>, line: &[u8]) -> Step {
        match req {
            Request::Ehlo { host } | Request::Helo { host } if self.cfg.lmtp => {
                let _ = host;
                reply(500, "5.5.1", "Error: this is LMTP, use LHLO")
            }
            Request::Lhlo { host } if !self.cfg.lmtp => {
                let _ = host;
                reply(500, "5.5.1", "Error: this is SMTP, use EHLO")
            }
            Request::Ehlo { host } | Request::Lhlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::Mail { from } => self.mail(&from.address, from.size as u64, line),
            Request::Rcpt { to } => self.rcpt(&to.address, line),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.tx = Transaction::default();
                self.xforward = Attrs::default();
                if self.state == State::Mail {
                    self.state = State::Ready;
                }
                if self.hop_idle {
                    // Postfix's SMTP client sends RSET before it reuses a
                    // connection: one round trip to the hop saved per message.
                    return reply(250, "2.0.0", "Ok");
                }
                self.hop_idle = true;
                self.pending.push_back(Pending::Rset);
                Step::Forward {
                    prelude: Vec::new(),
                    command: b"RSET\r\n".to_vec(),
                }
            }
            Request::Noop { .. } => reply(250, "2.0.0", "Ok"),
            Request::Quit => Step::Quit(Reply::new(221, "2.0.0", "Bye")),
            Request::Vrfy { .. } => reply(252, "2.0.0", "Send some mail, I'll try my best"),
            Request::Help { .. } => reply(214, "2.0.0", "See RFC 5321"),
            Request::StartTls => reply(
                502,
                "5.5.1",
                "Error: STARTTLS is not offered on this hop (loopback filter)",
            ),
            Request::Auth { .. } => reply(502, "5.5.1", "Error: authentication not enabled"),
            _ => reply(502, "5.5.1", "Error: command not implemented"),
        }
    }

    fn hello(&mut self, host: &str, extended: bool) -> Step {
        self.helo = Some(host.to_string());
        let was_open = self.state == State::Mail;
        self.state = State::Ready;
        self.tx = Transaction::default();
        let r = if extended {
            self.ehlo_reply()
        } else {
            Reply::new(250, "", self.cfg.hostname.clone())
        };
        if was_open {
            Step::ResetThenReply(r)
        } else {
            Step::Reply(r)
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![self.cfg.hostname.clone(), "PIPELINING".to_string()];
        if self.cfg.max_message_size > 0 {
            lines.push(format!("SIZE {}", self.cfg.max_message_size));
        } else {
            lines.push("SIZE".into());
        }
        let hop = &self.cfg.hop;
        if hop.eight_bit {
            lines.push("8BITMIME".into());
        }
        if hop.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        if hop.dsn {
            lines.push("DSN".into());
        }
        lines.push("CHUNKING".into());
        if self.cfg.trusted {
            lines.push("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE".into());
            lines.push("XCLIENT NAME ADDR PORT PROTO HELO LOGIN".into());
        }
        Reply {
            code: 250,
            status: None,
            lines,
        }
    }

    fn mail(&mut self, from: &str, size: u64, line: &[u8]) -> Step {
        match self.state {
            State::Greeted => return reply(503, "5.5.1", "Error: send HELO/EHLO first"),
            State::Mail => return reply(503, "5.5.1", "Error: nested MAIL command"),
            State::Ready => {}
        }
        let max = self.cfg.max_message_size;
        if max > 0 && size > max {
            return reply(552, "5.3.4", "Message size exceeds fixed limit");
        }
        self.pending.push_back(Pending::Mail {
            from: from.to_string(),
            size,
        });
        self.hop_idle = false;
        let prelude = match &self.cfg.hop.xforward {
            Some(supported) => {
                let mut attrs = self.xclient.clone();
                attrs.merge(&self.xforward);
                attrs.xforward_commands(supported)
            }
            None => Vec::new(),
        };
        // SIZE is ours: we offer and enforce it whatever the next hop does.
        // A hop that did not offer it refuses the parameter (Dovecot LMTP:
        // "555 5.5.4 Unsupported parameters"), so it is dropped for that hop.
        let command = if self.cfg.hop.size {
            line.to_vec()
        } else {
            without_param(line, "SIZE")
        };
        Step::Forward { prelude, command }
    }

    fn rcpt(&mut self, to: &str, line: &[u8]) -> Step {
        // A MAIL still waiting for its reply counts: the client pipelined
        // RCPT behind it, and the hop answers both in order (a refused MAIL
        // makes the hop refuse the RCPT too).
        let mail_pending = self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Mail { .. }));
        if self.state != State::Mail && !mail_pending {
            return reply(503, "5.5.1", "Error: need MAIL command");
        }
        let rcpts_pending = self
            .pending
            .iter()
            .filter(|p| matches!(p, Pending::Rcpt { .. }))
            .count();
        if self.tx.rcpts.len() + rcpts_pending >= self.cfg.max_recipients {
            return reply(452, "4.5.3", "Error: too many recipients");
        }
        // smtp-proto returns `<postmaster>` as an empty address.
        let to = if to.is_empty() { "postmaster" } else { to };
        self.pending.push_back(Pending::Rcpt { to: to.to_string() });
        Step::Forward {
            prelude: Vec::new(),
            command: line.to_vec(),
        }
    }

    fn data(&mut self) -> Step {
        if self.state != State::Mail {
            return reply(503, "5.5.1", "Error: need MAIL command");
        }
        if self.tx.bdat {
            return reply(503, "5.5.1", "Error: DATA after BDAT");
        }
        if self.tx.rcpts.is_empty() {
            return reply(554, "5.5.1", "Error: no valid recipients");
        }
        Step::Data
    }

    fn bdat(&mut self, size: usize, last: bool) -> Step {
        let refuse = if self.state != State::Mail {
            Some(Reply::new(503, "5.5.1", "Error: need MAIL command"))
        } else if self.tx.rcpts.is_empty() {
            Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
        } else {
            None
        };
        if refuse.is_none() {
            self.tx.bdat = true;
            self.tx.bdat_bytes += size as u64;
        }
        Step::Chunk { size, last, refuse }
    }

    /// The reply to a non-final BDAT chunk.
    pub fn chunk_received(&self, size: usize) -> Reply {
        Reply::new(250, "2.0.0", format!("{size} octets received"))
    }

    /// The attributes of an XFORWARD/XCLIENT command, or the refusal.
    fn attrs(&self, verb: &str, args: &[u8]) -> Result<Attrs, Step> {
        if !self.cfg.trusted {
            return Err(reply(550, "5.7.0", "Error: insufficient authorization"));
        }
        if self.state == State::Mail {
            return Err(reply(503, "5.5.1", "Error: MAIL transaction in progress"));
        }
        Attrs::parse(String::from_utf8_lossy(args).trim()).map_err(|e| {
            reply(
                501,
                "5.5.4",
                &format!("Syntax: {verb} attribute=value... ({e})"),
            )
        })
    }

    fn xforward_cmd(&mut self, args: &[u8]) -> Step {
        match self.attrs("XFORWARD", args) {
            Ok(a) => {
                self.xforward.merge(&a);
                reply(250, "2.0.0", "Ok")
            }
            Err(step) => step,
        }
    }

    fn xclient_cmd(&mut self, args: &[u8]) -> Step {
        match self.attrs("XCLIENT", args) {
            Ok(a) => {
                // XCLIENT_README: the session starts over; the client says EHLO again.
                self.xclient.merge(&a);
                self.state = State::Greeted;
                self.helo = None;
                self.tx = Transaction::default();
                Step::Reply(self.greeting())
            }
            Err(step) => step,
        }
    }

    /// The next hop's reply to a [`Step::Forward`]; returns the reply for
    /// the client.
    pub fn forwarded(&mut self, hop: Reply) -> Reply {
        match self.pending.pop_front() {
            Some(Pending::Mail { from, size }) if hop.is_positive() => {
                self.state = State::Mail;
                self.tx = Transaction {
                    mail_from: from,
                    declared_size: size,
                    ..Transaction::default()
                };
            }
            Some(Pending::Rcpt { to }) if hop.is_positive() => self.tx.rcpts.push(to),
            _ => {}
        }
        hop
    }

    /// The next hop answered end of data (`hop`: one reply from an SMTP
    /// hop, one per recipient from an LMTP hop). Returns the replies for the
    /// client and ends the transaction.
    pub fn data_replies(&mut self, hop: Vec<Reply>) -> Vec<Reply> {
        let n = self.tx.rcpts.len().max(1);
        let out = if !self.cfg.lmtp {
            hop.into_iter().take(1).collect()
        } else if hop.len() == n {
            hop
        } else {
            let first = hop
                .into_iter()
                .next()
                .unwrap_or_else(|| Reply::new(451, "4.3.0", "Error: no reply from next hop"));
            vec![first; n]
        };
        self.end_transaction();
        out
    }

    /// The message is not relayed (refused, or a local failure): the same
    /// reply for every recipient (LMTP) or once (SMTP).
    pub fn data_failed(&mut self, why: Reply) -> Vec<Reply> {
        let n = if self.cfg.lmtp {
            self.tx.rcpts.len().max(1)
        } else {
            1
        };
        self.end_transaction();
        vec![why; n]
    }

    fn end_transaction(&mut self) {
        self.tx = Transaction::default();
        self.xforward = Attrs::default();
        self.state = State::Ready;
    }

    /// Replies the I/O layer owes when the next hop fails mid-session.
    pub fn hop_failed() -> Reply {
        Reply::new(
            421,
            "4.4.2",
            "Error: next hop connection lost, try again later",
        )
    }

    /// The greeting instead of [`Session::greeting`] when no next hop
    /// could be reached (connect, greeting or EHLO/LHLO failed): there is
    /// no session then, only `hostname`'s refusal before closing.
    pub fn hop_unavailable(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.4.1",
            format!("{hostname} next hop unavailable, try again later"),
        )
    }

    /// The reply before closing an idle session at shutdown.
    pub fn shutting_down() -> Reply {
        Reply::new(421, "4.3.2", "Service shutting down, try again later")
    }

    /// The reply before closing a session whose client went silent (a
    /// command, or DATA past its per-read or whole-message limit).
    pub fn timed_out() -> Reply {
        Reply::new(421, "4.4.2", "Timeout exceeded, closing connection")
    }

    /// The reply to a command line longer than the I/O layer reads (it
    /// skips the line; the session goes on).
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Error: line too long")
    }

    /// The 354 that starts the message after [`Step::Data`] (no enhanced
    /// status code: RFC 2034 gives none to 3xx).
    pub fn go_ahead() -> Reply {
        Reply::new(354, "", "End data with <CR><LF>.<CR><LF>")
    }
}

/// `line` (a MAIL or RCPT command) without its `NAME=value` ESMTP parameter;
/// only the words after the closing `>` of the path are looked at, so a
/// quoted local part can never be cut.
fn without_param(line: &[u8], name: &str) -> Vec<u8> {
    let Some(end) = line.iter().rposition(|&b| b == b'>') else {
        return line.to_vec();
    };
    let (path, rest) = line.split_at(end + 1);
    let body_len = rest
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(0, |i| i + 1);
    let (params, eol) = rest.split_at(body_len);
    let is_param = |w: &&[u8]| {
        w.split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .eq_ignore_ascii_case(name.as_bytes())
    };
    if !params.split(|&b| b == b' ').any(|w| is_param(&w)) {
        // Nothing to drop: the line goes on exactly as the client wrote it.
        return line.to_vec();
    }
    let mut out = path.to_vec();
    for word in params.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let key = word.split(|&b| b == b'=').next().unwrap_or_default();
        if !key.eq_ignore_ascii_case(name.as_bytes()) {
            out.push(b' ');
            out.extend_from_slice(word);
        }
    }
    out.extend_from_slice(eol);
    out
}

/// The 501 for an address smtp-proto refused.
fn bad_address(e: &smtp_proto::Error) -> Step {
    if matches!(e, smtp_proto::Error::InvalidSenderAddress) {
        reply(501, "5.1.7", "Bad sender address syntax")
    } else {
        reply(501, "5.1.3", "Bad recipient address syntax")
    }
}

/// The domain an address literal stands in for while smtp-proto parses
/// the command (it refuses `user@[192.0.2.1]`, which RFC 5321 §4.1.3
/// allows and Postfix passes on).
const LITERAL_STANDIN: &str = "address-literal.invalid";

/// A MAIL/RCPT line whose address ends in an address literal
/// (`<user@[192.0.2.1]>`, `<user@[IPv6:2001:db8::1]>`): the line with the
/// literal replaced by [`LITERAL_STANDIN`], and the literal, brackets
/// included. `None` when there is no such literal.
fn address_literal(line: &[u8]) -> Option<(Vec<u8>, String)> {
    let open = line.iter().position(|&b| b == b'<')?;
    let close = open + line[open..].iter().position(|&b| b == b'>')?;
    let path = &line[open..close];
    let at = path.windows(2).rposition(|w| w == b"@[")?;
    let literal = &path[at + 1..];
    let body = literal.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-');
    if body.is_empty() || !body.iter().all(ok) {
        return None;
    }
    let start = open + at + 1;
    let mut masked = line[..start].to_vec();
    masked.extend_from_slice(LITERAL_STANDIN.as_bytes());
    masked.extend_from_slice(&line[close..]);
    Some((masked, String::from_utf8_lossy(literal).into_owned()))
}

/// `address` with [`LITERAL_STANDIN`] back to `literal`.
fn unmask(address: &str, literal: &str) -> String {
    match address.strip_suffix(LITERAL_STANDIN) {
        Some(local) => format!("{local}{literal}"),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lmtp: bool) -> SessionConfig {
        SessionConfig {
            lmtp,
            hostname: "filter.example.test".into(),
            max_message_size: 1000,
            max_recipients: 2,
            hop: HopCaps {
                xforward: Some(vec![
                    "NAME".into(),
                    "ADDR".into(),
                    "HELO".into(),
                    "IDENT".into(),
                ]),
                eight_bit: true,
                smtputf8: true,
                dsn: true,
                pipelining: true,
                size: true,
            },
            trusted: true,
            peer_ip: Some("127.0.0.1".parse().unwrap()),
        }
    }

    fn ok() -> Reply {
        Reply::new(250, "2.0.0", "Ok")
    }

    fn code(step: &Step) -> u16 {
        match step {
            Step::Reply(r) | Step::Quit(r) | Step::ResetThenReply(r) => r.code,
            other => panic!("not a reply: {other:?}"),
        }
    }

    /// Runs commands; forwarded ones get `hop` replies in order.
    fn run(s: &mut Session, script: &[(&str, Option<Reply>)]) -> Vec<u16> {
        script
            .iter()
            .map(|(line, hop)| {
                let step = s.command(format!("{line}\r\n").as_bytes());
                match step {
                    Step::Forward { .. } => s.forwarded(hop.clone().unwrap()).code,
                    Step::Data => 354,
                    other => code(&other),
                }
            })
            .collect()
    }

    #[test]
    fn address_literals_are_addresses() {
        let mut s = Session::new(cfg(false));
        let codes = run(
            &mut s,
            &[
                ("EHLO mx.example.test", None),
                ("MAIL FROM:<a@[192.0.2.1]> SIZE=100", Some(ok())),
                ("RCPT TO:<postmaster@[IPv6:2001:db8::1]>", Some(ok())),
                ("RCPT TO:<b@[not a literal]>", None),
                ("RCPT TO:<c@[]>", None),
                ("DATA", None),
            ],
        );
        assert_eq!(codes, [250, 250, 250, 501, 501, 354]);
        assert_eq!(s.transaction().mail_from, "a@[192.0.2.1]");
        assert_eq!(s.transaction().rcpts, ["postmaster@[IPv6:2001:db8::1]"]);
        let mut s = Session::new(cfg(false));
        let codes = run(
            &mut s,
            &[
                ("EHLO mx.example.test", None),
                ("MAIL FROM:<a@[192.0.2.1>", None),
            ],
        );
        assert_eq!(codes, [250, 501]);
    }

    #[test]
    fn a_transaction_mirrors_the_next_hop() {
        let mut s = Session::new(cfg(false));
        let codes = run(
            &mut s,
            &[
                ("EHLO mx.example.test", None),
                ("MAIL FROM:<a@example.org> SIZE=100", Some(ok())),
                ("RCPT TO:<bob@example.test> NOTIFY=NEVER", Some(ok())),
                (
                    "RCPT TO:<nobody@example.test>",
                    Some(Reply::new(550, "5.1.1", "unknown")),
                ),
                ("DATA", None),
            ],
        );
        assert_eq!(codes, [250, 250, 250, 550, 354]);
        assert_eq!(s.transaction().rcpts, ["bob@example.test"]);
        assert_eq!(s.transaction().mail_from, "a@example.org");
        let r = s.data_replies(vec![Reply::new(250, "2.0.0", "Ok: queued as X")]);
        assert_eq!(r.len(), 1);
        assert!(s.transaction().rcpts.is_empty());
        // A second transaction on the same connection.
        assert_eq!(run(&mut s, &[("MAIL FROM:<>", Some(ok()))]), [250]);
    }

    #[test]
    fn rcpt_may_follow_a_mail_whose_reply_is_still_to_come() {
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None)]);
        // Pipelined to the hop: MAIL, then two RCPTs, before any reply.
        let fwd = |step: Step| matches!(step, Step::Forward { .. });
        assert!(fwd(s.command(b"MAIL FROM:<a@example.org>\r\n")));
        assert!(fwd(s.command(b"RCPT TO:<b@example.test>\r\n")));
        assert!(fwd(s.command(b"RCPT TO:<c@example.test>\r\n")));
        // max_recipients is 2: the pending ones count.
        assert_eq!(code(&s.command(b"RCPT TO:<d@example.test>\r\n")), 452);
        s.forwarded(ok());
        s.forwarded(ok());
        s.forwarded(Reply::new(550, "5.1.1", "unknown"));
        assert_eq!(s.transaction().rcpts, ["b@example.test"]);
        assert!(matches!(s.command(b"DATA\r\n"), Step::Data));
        s.data_replies(vec![ok()]);

        // The hop refuses MAIL: its 503 for the RCPT passes through and
        // nothing is left open.
        assert!(fwd(s.command(b"MAIL FROM:<a@example.org>\r\n")));
        assert!(fwd(s.command(b"RCPT TO:<b@example.test>\r\n")));
        assert_eq!(s.forwarded(Reply::new(451, "4.3.0", "later")).code, 451);
        assert_eq!(s.forwarded(Reply::new(503, "5.5.1", "need MAIL")).code, 503);
        assert!(s.transaction().rcpts.is_empty());
        assert_eq!(code(&s.command(b"DATA\r\n")), 503);
        // Without MAIL sent at all, RCPT is still refused here.
        assert_eq!(code(&s.command(b"RCPT TO:<b@example.test>\r\n")), 503);
    }

    #[test]
    fn rset_reaches_the_next_hop_only_when_it_has_a_transaction_open() {
        let forwards = |step: Step| matches!(step, Step::Forward { ref command, .. } if command == b"RSET\r\n");
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None)]);
        // Nothing open at the hop (Postfix's RSET before reusing a connection).
        assert_eq!(code(&s.command(b"RSET\r\n")), 250);
        // MAIL accepted: the hop has a transaction, RSET goes there.
        run(&mut s, &[("MAIL FROM:<a@example.org>", Some(ok()))]);
        assert!(forwards(s.command(b"RSET\r\n")));
        s.forwarded(ok());
        assert_eq!(code(&s.command(b"RSET\r\n")), 250);
        // MAIL refused by the hop: we cannot know what it kept, so RSET goes there.
        let refused = Reply::new(451, "4.3.0", "try later");
        run(&mut s, &[("MAIL FROM:<a@example.org>", Some(refused))]);
        assert!(forwards(s.command(b"RSET\r\n")));
        s.forwarded(ok());
        // A relayed message: the hop's end-of-data reply closed it.
        run(
            &mut s,
            &[
                ("MAIL FROM:<a@example.org>", Some(ok())),
                ("RCPT TO:<b@example.test>", Some(ok())),
                ("DATA", None),
            ],
        );
        s.hop_reset();
        s.data_replies(vec![ok()]);
        assert_eq!(code(&s.command(b"RSET\r\n")), 250);
        // DATA refused by the hop (no hop_reset): its MAIL transaction is still open.
        run(
            &mut s,
            &[
                ("MAIL FROM:<a@example.org>", Some(ok())),
                ("RCPT TO:<b@example.test>", Some(ok())),
                ("DATA", None),
            ],
        );
        s.data_replies(vec![Reply::new(554, "5.5.1", "no valid recipients")]);
        assert!(forwards(s.command(b"RSET\r\n")));
    }

    #[test]
    fn size_parameter_is_dropped_for_a_hop_without_size() {
        for (line, want) in [
            (
                "MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME\r\n",
                "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n",
            ),
            ("MAIL FROM:<> size=9\r\n", "MAIL FROM:<>\r\n"),
            (
                "MAIL FROM:<\"SIZE=1 x\"@example.org> SIZE=1\r\n",
                "MAIL FROM:<\"SIZE=1 x\"@example.org>\r\n",
            ),
            (
                "MAIL FROM:<a@b> BODY=7BIT SIZEX=2\r\n",
                "MAIL FROM:<a@b> BODY=7BIT SIZEX=2\r\n",
            ),
            // Without SIZE= the line is not rebuilt (found by the fuzzer:
            // a space was added before an odd first word).
            ("MAIL FROM:<>\x0c\n", "MAIL FROM:<>\x0c\n"),
            (
                "MAIL FROM:<a@b>BODY=7BIT\r\n",
                "MAIL FROM:<a@b>BODY=7BIT\r\n",
            ),
        ] {
            assert_eq!(
                String::from_utf8(without_param(line.as_bytes(), "SIZE")).unwrap(),
                want
            );
        }
        let mut c = cfg(true);
        c.hop.size = false;
        let mut s = Session::new(c);
        run(&mut s, &[("LHLO x", None)]);
        match s.command(b"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\n") {
            Step::Forward { command, .. } => {
                assert_eq!(command, b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_are_forwarded_verbatim_with_xforward_first() {
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None)]);
        let step =
            s.command(b"XFORWARD NAME=client.example ADDR=192.0.2.7 IDENT=Q1 SOURCE=REMOTE\r\n");
        assert_eq!(code(&step), 250);
        assert_eq!(s.client_ip(), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(s.queue_id(), Some("Q1"));
        let line = b"MAIL FROM:<a@example.org> BODY=8BITMIME ENVID=abc+2Bd RET=HDRS\r\n";
        match s.command(line) {
            Step::Forward { prelude, command } => {
                assert_eq!(command, line);
                assert_eq!(
                    prelude,
                    [b"XFORWARD NAME=client.example ADDR=192.0.2.7 IDENT=Q1\r\n".to_vec()]
                );
            }
            other => panic!("{other:?}"),
        }
        s.forwarded(ok());
        let r = s.data_failed(Reply::new(550, "5.7.1", "no"));
        assert_eq!(r.len(), 1);
        // XFORWARD is per transaction.
        assert_eq!(s.queue_id(), None);
    }

    #[test]
    fn sequence_errors_and_limits_are_answered_locally() {
        let mut s = Session::new(cfg(false));
        assert_eq!(run(&mut s, &[("MAIL FROM:<a@b>", None)]), [503]);
        run(&mut s, &[("EHLO x", None)]);
        assert_eq!(
            run(
                &mut s,
                &[
                    ("RCPT TO:<a@b>", None),
                    ("DATA", None),
                    ("MAIL FROM:<a@b> SIZE=5000", None),
                    ("MAIL FROM:<a@b>", Some(ok())),
                    ("MAIL FROM:<a@b>", None),
                    ("DATA", None),
                    ("RCPT TO:<x@b>", Some(ok())),
                    ("RCPT TO:<y@b>", Some(ok())),
                    ("RCPT TO:<z@b>", None),
                    ("FOO", None),
                    ("STARTTLS", None),
                    ("NOOP", None),
                    ("MAIL FROM:<bad", None),
                ]
            ),
            [
                503, 503, 552, 250, 503, 554, 250, 250, 452, 500, 502, 250, 501
            ]
        );
    }

    #[test]
    fn lmtp_gives_one_reply_per_recipient_in_order() {
        let mut s = Session::new(cfg(true));
        let codes = run(
            &mut s,
            &[
                ("EHLO x", None),
                ("LHLO x", None),
                ("MAIL FROM:<a@example.org>", Some(ok())),
                ("RCPT TO:<alice@example.test>", Some(ok())),
                ("RCPT TO:<bob@example.test>", Some(ok())),
            ],
        );
        assert_eq!(codes, [500, 250, 250, 250, 250]);
        let hop = vec![
            Reply::new(250, "2.0.0", "<alice@example.test> Saved"),
            Reply::new(452, "4.2.2", "<bob@example.test> Quota exceeded"),
        ];
        assert_eq!(s.data_replies(hop.clone()), hop);
        // From an SMTP next hop: its one reply for each recipient.
        run(
            &mut s,
            &[
                ("MAIL FROM:<a@example.org>", Some(ok())),
                ("RCPT TO:<alice@example.test>", Some(ok())),
                ("RCPT TO:<bob@example.test>", Some(ok())),
            ],
        );
        assert_eq!(s.data_replies(vec![ok()]), vec![ok(), ok()]);
    }

    #[test]
    fn xclient_restarts_the_session_and_sets_the_client() {
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None)]);
        let step = s.command(b"XCLIENT ADDR=198.51.100.9 HELO=mail.example.org LOGIN=bob\r\n");
        assert_eq!(code(&step), 220);
        assert_eq!(s.client_ip(), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(s.client_helo().as_deref(), Some("mail.example.org"));
        assert_eq!(s.login(), Some("bob"));
        assert_eq!(run(&mut s, &[("MAIL FROM:<a@b>", None)]), [503]);
    }

    #[test]
    fn untrusted_clients_cannot_claim_another_address() {
        let mut s = Session::new(SessionConfig {
            trusted: false,
            ..cfg(false)
        });
        run(&mut s, &[("EHLO x", None)]);
        assert_eq!(code(&s.command(b"XFORWARD ADDR=10.0.0.1\r\n")), 550);
        assert_eq!(code(&s.command(b"XCLIENT ADDR=10.0.0.1\r\n")), 550);
        assert_eq!(s.client_ip(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ehlo_mid_transaction_resets_the_next_hop() {
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None), ("MAIL FROM:<a@b>", Some(ok()))]);
        assert!(matches!(s.command(b"EHLO y\r\n"), Step::ResetThenReply(_)));
        assert_eq!(run(&mut s, &[("RCPT TO:<a@b>", None)]), [503]);
    }

    #[test]
    fn bdat_without_recipients_is_read_then_refused() {
        let mut s = Session::new(cfg(false));
        run(&mut s, &[("EHLO x", None), ("MAIL FROM:<a@b>", Some(ok()))]);
        match s.command(b"BDAT 10 LAST\r\n") {
            Step::Chunk {
                size: 10,
                last: true,
                refuse: Some(r),
            } => assert_eq!(r.code, 554),
            other => panic!("{other:?}"),
        }
        run(&mut s, &[("RCPT TO:<a@b>", Some(ok()))]);
        assert!(matches!(
            s.command(b"BDAT 5\r\n"),
            Step::Chunk {
                size: 5,
                last: false,
                refuse: None
            }
        ));
        assert_eq!(run(&mut s, &[("DATA", None)]), [503]);
    }

    #[test]
    fn postmaster_without_domain_is_kept() {
        let mut s = Session::new(cfg(false));
        run(
            &mut s,
            &[
                ("EHLO x", None),
                ("MAIL FROM:<a@b>", Some(ok())),
                ("RCPT TO:<postmaster>", Some(ok())),
            ],
        );
        assert_eq!(s.transaction().rcpts, ["postmaster"]);
    }

    #[test]
    fn replies_owed_by_the_io_layer_keep_their_codes_and_texts() {
        for (reply, want) in [
            (
                Session::hop_unavailable("filter.example.test"),
                "421 4.4.1 filter.example.test next hop unavailable, try again later\r\n",
            ),
            (
                Session::hop_failed(),
                "421 4.4.2 Error: next hop connection lost, try again later\r\n",
            ),
            (
                Session::shutting_down(),
                "421 4.3.2 Service shutting down, try again later\r\n",
            ),
            (
                Session::timed_out(),
                "421 4.4.2 Timeout exceeded, closing connection\r\n",
            ),
            (
                Session::line_too_long(),
                "500 5.5.2 Error: line too long\r\n",
            ),
            (
                Session::go_ahead(),
                "354 End data with <CR><LF>.<CR><LF>\r\n",
            ),
        ] {
            assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), want);
        }
    }

    #[test]
    fn data_is_answered_with_the_go_ahead() {
        let mut s = Session::new(cfg(false));
        run(
            &mut s,
            &[
                ("EHLO mx.example.test", None),
                ("MAIL FROM:<a@example.org>", Some(ok())),
                ("RCPT TO:<b@example.test>", Some(ok())),
            ],
        );
        assert_eq!(s.command(b"DATA\r\n"), Step::Data);
        assert_eq!(Session::go_ahead().code, 354);
    }

    #[test]
    fn ehlo_offers_what_the_next_hop_can_take() {
        let mut s = Session::new(SessionConfig {
            hop: HopCaps::default(),
            ..cfg(false)
        });
        let Step::Reply(r) = s.command(b"EHLO x\r\n") else {
            panic!()
        };
        let text = r.lines.join("\n");
        assert!(text.contains("PIPELINING") && text.contains("SIZE 1000"));
        assert!(text.contains("XFORWARD NAME ADDR"));
        assert!(!text.contains("SMTPUTF8") && !text.contains("DSN") && !text.contains("STARTTLS"));
    }
}
