//! Milter packets: framing, decoding of MTA commands, encoding of replies.
//!
//! Owns: the wire format of the Sendmail milter protocol (version 6, as
//! spoken by Sendmail 8.14+ and Postfix 2.6+; see Sendmail's
//! `include/libmilter/mfdef.h` and Postfix's MILTER_README): a 32-bit
//! big-endian length (command byte included), one command byte, then data.
//! Strings are NUL-terminated. Must not: keep state between packets or
//! decide anything; [`super::session`] does that.
//!
//! Untrusted input: every length is checked before anything is allocated,
//! and a packet longer than [`MAX_PACKET`] is refused as soon as its length
//! field is read, so a lying length never makes us buffer it.

use std::net::IpAddr;

/// Largest packet (command byte plus data) accepted. Postfix sends body
/// chunks of at most 65535 bytes and headers up to `header_size_limit`
/// (100 KiB by default); Sendmail's largest (`SMFIP_MDS_1M`) is 1 MiB.
pub const MAX_PACKET: usize = 1 << 20;

/// Protocol version we speak.
pub const VERSION: u32 = 6;

/// `SMFIF_*`: modifications the filter may request at end of message.
pub mod actions {
    /// Add headers (`SMFIR_ADDHEADER`, `SMFIR_INSHEADER`).
    pub const ADDHDRS: u32 = 0x01;
    /// Change or delete headers (`SMFIR_CHGHEADER`).
    pub const CHGHDRS: u32 = 0x10;
    /// Quarantine the message (`SMFIR_QUARANTINE`; Postfix: HOLD queue).
    pub const QUARANTINE: u32 = 0x20;
    /// Name the macros we want per stage in the negotiation (version 6).
    pub const SETSYMLIST: u32 = 0x100;
}

/// `SMFIP_*`: events the MTA should not send (`NO*`), events the filter
/// will not reply to (`NR_*`), and header value formatting.
pub mod protocol {
    /// Do not send CONNECT.
    pub const NOCONNECT: u32 = 0x01;
    /// Do not send HELO.
    pub const NOHELO: u32 = 0x02;
    /// Do not send MAIL.
    pub const NOMAIL: u32 = 0x04;
    /// Do not send RCPT.
    pub const NORCPT: u32 = 0x08;
    /// Do not send body chunks.
    pub const NOBODY: u32 = 0x10;
    /// Do not send headers.
    pub const NOHDRS: u32 = 0x20;
    /// Do not send end of headers.
    pub const NOEOH: u32 = 0x40;
    /// No reply to each header.
    pub const NR_HDR: u32 = 0x80;
    /// Do not send unknown SMTP commands.
    pub const NOUNKNOWN: u32 = 0x100;
    /// Do not send DATA.
    pub const NODATA: u32 = 0x200;
    /// The MTA understands `SMFIR_SKIP`.
    pub const SKIP: u32 = 0x400;
    /// Also send rejected recipients.
    pub const RCPT_REJ: u32 = 0x800;
    /// No reply to CONNECT.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x1_0000;
    /// No reply to unknown commands.
    pub const NR_UNKN: u32 = 0x2_0000;
    /// No reply to end of headers.
    pub const NR_EOH: u32 = 0x4_0000;
    /// No reply to body chunks.
    pub const NR_BODY: u32 = 0x8_0000;
    /// Header values keep the space after the colon (both directions).
    pub const HDR_LEADSPC: u32 = 0x10_0000;
}

/// Address family of the connecting client (`SMFIA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `U`: unknown (no address follows).
    Unknown,
    /// `L`: a Unix socket.
    Unix,
    /// `4`: IPv4.
    Inet,
    /// `6`: IPv6.
    Inet6,
}

/// One command from the MTA (`SMFIC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `O`: option negotiation.
    OptNeg {
        /// Protocol version the MTA speaks.
        version: u32,
        /// `SMFIF_*` actions the MTA allows.
        actions: u32,
        /// `SMFIP_*` protocol steps the MTA can leave out.
        protocol: u32,
    },
    /// `D`: macros for the command `stage` (the command byte they belong to).
    Macro {
        /// Command byte the macros go with (`C`, `H`, `M`, `R`, `T`, `N`, `E`...).
        stage: u8,
        /// Name/value pairs, names as sent (`i`, `{auth_authen}`).
        pairs: Vec<(String, String)>,
    },
    /// `C`: the SMTP client connected.
    Connect {
        /// Client host name (or `[address]` when it has none).
        hostname: String,
        /// Address family.
        family: Family,
        /// Client port (0 when unknown).
        port: u16,
        /// Address text (IP literal or socket path); empty for `U`.
        address: String,
    },
    /// `H`: HELO/EHLO argument.
    Helo(String),
    /// `M`: MAIL FROM; first the `<address>`, then ESMTP parameters.
    Mail(Vec<String>),
    /// `R`: RCPT TO; first the `<address>`, then ESMTP parameters.
    Rcpt(Vec<String>),
    /// `T`: DATA.
    Data,
    /// `L`: one header field.
    Header {
        /// Field name.
        name: String,
        /// Field value as sent (folded lines separated by LF).
        value: Vec<u8>,
    },
    /// `N`: end of headers.
    Eoh,
    /// `B`: a body chunk.
    Body(Vec<u8>),
    /// `E`: end of message (may carry a last body chunk).
    EndOfMessage(Vec<u8>),
    /// `A`: abort the current message.
    Abort,
    /// `Q`: close the connection.
    Quit,
    /// `K`: close this SMTP session; the MTA reuses the connection.
    QuitNewConnection,
    /// `U`: an SMTP command the MTA did not recognise.
    Unknown(Vec<u8>),
}

/// One reply to the MTA (`SMFIR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `O`: our side of the option negotiation.
    OptNeg {
        /// Version we speak.
        version: u32,
        /// `SMFIF_*` actions we may use.
        actions: u32,
        /// `SMFIP_*` steps to leave out / not reply to.
        protocol: u32,
        /// With [`actions::SETSYMLIST`]: the macro names wanted per stage
        /// (`SMFIM_*` number, space-separated names).
        macros: &'static [(u32, &'static str)],
    },
    /// `c`: go on.
    Continue,
    /// `a`: accept (no more events for this message).
    Accept,
    /// `t`: temporary failure with the MTA's default text.
    TempFail,
    /// `y`: an SMTP reply (`550 5.7.1 text`), final for the message.
    ReplyCode(String),
    /// `i`: insert a header at `index` (0 = topmost).
    InsertHeader {
        /// Position; 0 is the top.
        index: u32,
        /// Field name.
        name: String,
        /// Field value (folded lines separated by LF).
        value: String,
    },
    /// `m`: change the `index`th (1-based) field called `name`; an empty
    /// value deletes it.
    ChangeHeader {
        /// Occurrence of `name`, 1-based.
        index: u32,
        /// Field name.
        name: String,
        /// New value; empty deletes the field.
        value: String,
    },
    /// `q`: put the message on hold, with a reason.
    Quarantine(String),
}

/// Why bytes from the MTA are not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The length field is 0 (no command byte).
    #[error("empty milter packet")]
    Empty,
    /// The length field is larger than [`MAX_PACKET`].
    #[error("milter packet of {0} bytes exceeds the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    /// A command byte we do not know.
    #[error("unknown milter command 0x{0:02x}")]
    UnknownCommand(u8),
    /// The data does not fit the command's layout.
    #[error("malformed milter command {command:?}: {why}")]
    Malformed {
        /// The command byte, as a character.
        command: char,
        /// What is wrong.
        why: &'static str,
    },
}

/// Decodes the first packet in `buf`. `Ok(None)`: more bytes are needed;
/// `Ok(Some((command, used)))`: `used` bytes were consumed. A length field
/// over [`MAX_PACKET`] fails as soon as the four length bytes are there.
pub fn decode(buf: &[u8]) -> Result<Option<(Command, usize)>, CodecError> {
    let Some((cmd, data, used)) = frame(buf)? else {
        return Ok(None);
    };
    Ok(Some((parse(cmd, data)?, used)))
}

/// A packet framed but not parsed: command byte, data (borrowed from the
/// read buffer), and the bytes it takes there.
pub type Frame<'a> = (u8, &'a [u8], usize);

/// One framed packet at the start of `buf`; `None` until it is complete.
/// The same length checks as [`decode`].
pub fn frame(buf: &[u8]) -> Result<Option<Frame<'_>>, CodecError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_be_bytes([
        len_bytes[0],
        len_bytes[1],
        len_bytes[2],
        len_bytes[3],
    ]))
    .unwrap_or(usize::MAX);
    if len == 0 {
        return Err(CodecError::Empty);
    }
    if len > MAX_PACKET {
        return Err(CodecError::TooLarge(len));
    }
    Ok(buf
        .get(4..4 + len)
        .map(|packet| (packet[0], &packet[1..], 4 + len)))
}

/// Parses one packet's command byte and data.
pub fn parse(cmd: u8, data: &[u8]) -> Result<Command, CodecError> {
    let bad = |why| CodecError::Malformed {
        command: char::from(cmd),
        why,
    };
    Ok(match cmd {
        b'O' => {
            let v = |i: usize| {
                data.get(i * 4..i * 4 + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| bad("needs version, actions and protocol"))
            };
            Command::OptNeg {
                version: v(0)?,
                actions: v(1)?,
                protocol: v(2)?,
            }
        }
        b'D' => {
            let (&stage, rest) = data.split_first().ok_or_else(|| bad("no stage"))?;
            let strings = nul_strings(rest).ok_or_else(|| bad("unterminated string"))?;
            if strings.len() % 2 != 0 {
                return Err(bad("macro name without value"));
            }
            let pairs = strings
                .chunks_exact(2)
                .map(|p| (lossy(p[0]), lossy(p[1])))
                .collect();
            Command::Macro { stage, pairs }
        }
        b'C' => parse_connect(data).ok_or_else(|| bad("bad connect data"))?,
        b'H' => Command::Helo(one_string(data).ok_or_else(|| bad("needs one string"))?),
        b'M' | b'R' => {
            let args: Vec<String> = nul_strings(data)
                .filter(|v| v.first().is_some_and(|a| !a.is_empty()))
                .ok_or_else(|| bad("needs an address"))?
                .into_iter()
                .map(lossy)
                .collect();
            if cmd == b'M' {
                Command::Mail(args)
            } else {
                Command::Rcpt(args)
            }
        }
        b'L' => {
            let (name, value) = header_parts(data)?;
            Command::Header {
                name: lossy(name),
                value: value.to_vec(),
            }
        }
        b'T' => Command::Data,
        b'N' => Command::Eoh,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfMessage(data.to_vec()),
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown(data.strip_suffix(b"\0").unwrap_or(data).to_vec()),
        other => return Err(CodecError::UnknownCommand(other)),
    })
}

/// The name and value of a header packet (`L`: `name\0value\0`), borrowed
/// from the packet.
pub fn header_parts(data: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    let bad = CodecError::Malformed {
        command: 'L',
        why: "needs a name and a value",
    };
    let body = data.strip_suffix(b"\0").ok_or(bad.clone())?;
    let nul = memchr::memchr(0, body).ok_or(bad.clone())?;
    let (name, value) = (&body[..nul], &body[nul + 1..]);
    if name.is_empty() || memchr::memchr(0, value).is_some() {
        return Err(bad);
    }
    Ok((name, value))
}

/// `hostname\0 family [port(u16) address\0]`.
fn parse_connect(data: &[u8]) -> Option<Command> {
    let nul = data.iter().position(|&b| b == 0)?;
    let hostname = lossy(&data[..nul]);
    let rest = &data[nul + 1..];
    let (&fam, rest) = rest.split_first()?;
    let family = match fam {
        b'U' => Family::Unknown,
        b'L' => Family::Unix,
        b'4' => Family::Inet,
        b'6' => Family::Inet6,
        _ => return None,
    };
    if family == Family::Unknown {
        return Some(Command::Connect {
            hostname,
            family,
            port: 0,
            address: String::new(),
        });
    }
    let port = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
    let address = one_string(&rest[2..])?;
    Some(Command::Connect {
        hostname,
        family,
        port,
        address,
    })
}

/// Splits NUL-terminated strings; `None` if the last one is unterminated.
fn nul_strings(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let body = data.strip_suffix(b"\0")?;
    Some(body.split(|&b| b == 0).collect())
}

fn one_string(data: &[u8]) -> Option<String> {
    match nul_strings(data)?.as_slice() {
        [s] => Some(lossy(s)),
        _ => None,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The client address of a CONNECT, when it is an IP (Sendmail writes IPv6
/// as `IPv6:2001:db8::1`, sometimes bracketed).
pub fn client_ip(family: Family, address: &str) -> Option<IpAddr> {
    if !matches!(family, Family::Inet | Family::Inet6) {
        return None;
    }
    let a = address.trim_start_matches('[').trim_end_matches(']');
    let a = a
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
        .map_or(a, |_| &a[5..]);
    a.parse().ok()
}

/// Appends the encoded `response` to `out` (straight into `out`: the length
/// field is written once the data is there).
pub fn encode(response: &Response, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let data = out.len();
    out.push(0);
    let cmd = match response {
        Response::OptNeg {
            version,
            actions,
            protocol,
            macros,
        } => {
            for v in [version, actions, protocol] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            for (stage, names) in *macros {
                out.extend_from_slice(&stage.to_be_bytes());
                push_str(out, names);
            }
            b'O'
        }
        Response::Continue => b'c',
        Response::Accept => b'a',
        Response::TempFail => b't',
        Response::ReplyCode(text) => {
            push_str(out, text);
            b'y'
        }
        Response::InsertHeader { index, name, value } => {
            out.extend_from_slice(&index.to_be_bytes());
            push_str(out, name);
            push_str(out, value);
            b'i'
        }
        Response::ChangeHeader { index, name, value } => {
            out.extend_from_slice(&index.to_be_bytes());
            push_str(out, name);
            push_str(out, value);
            b'm'
        }
        Response::Quarantine(reason) => {
            push_str(out, reason);
            b'q'
        }
    };
    out[data] = cmd;
    // Our own replies are small (a header or a reply line); saturate rather
    // than wrap if a caller ever passes something absurd.
    let len = u32::try_from(out.len() - data).unwrap_or(u32::MAX);
    out[start..data].copy_from_slice(&len.to_be_bytes());
}

/// A string with NULs removed (they would end it early), then a NUL.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

/// Encodes a command (the MTA side): for tests, fuzzing and the protocol
/// client in the integration tests.
pub fn encode_command(cmd: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(data);
    out
}

/// Decodes a reply (the MTA side): `(command byte, data)` and bytes used.
/// Replies are framed like commands.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(u8, Vec<u8>, usize)>, CodecError> {
    Ok(frame(buf)?.map(|(cmd, data, used)| (cmd, data.to_vec(), used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(cmd: u8, data: &[u8]) -> Result<Command, CodecError> {
        let bytes = encode_command(cmd, data);
        decode(&bytes).map(|o| {
            let (c, used) = o.unwrap();
            assert_eq!(used, bytes.len());
            c
        })
    }

    #[test]
    fn negotiation_reply_carries_the_macro_lists() {
        // Sendmail's libmilter layout: three 32-bit words, then per stage a
        // 32-bit SMFIM_* number and a NUL-terminated list of names.
        let mut out = Vec::new();
        encode(
            &Response::OptNeg {
                version: 6,
                actions: 0x131,
                protocol: 0x8_0000,
                macros: &[(0, "{daemon_name}"), (5, "i")],
            },
            &mut out,
        );
        let mut want = Vec::new();
        for v in [6u32, 0x131, 0x8_0000, 0] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.extend_from_slice(b"{daemon_name}\0");
        want.extend_from_slice(&5u32.to_be_bytes());
        want.extend_from_slice(b"i\0");
        let len = u32::try_from(want.len() + 1).unwrap();
        assert_eq!(out[..4], len.to_be_bytes());
        assert_eq!(out[4], b'O');
        assert_eq!(out[5..], want[..]);
    }

    #[test]
    fn decodes_the_commands_postfix_sends() {
        let mut optneg = Vec::new();
        for v in [6u32, 0x1ff, 0x1f_ffff] {
            optneg.extend_from_slice(&v.to_be_bytes());
        }
        let cases: Vec<(u8, Vec<u8>, Command)> = vec![
            (
                b'O',
                optneg,
                Command::OptNeg {
                    version: 6,
                    actions: 0x1ff,
                    protocol: 0x1f_ffff,
                },
            ),
            (
                b'D',
                b"Cj\0mx.example\0{daemon_name}\0smtpd\0".to_vec(),
                Command::Macro {
                    stage: b'C',
                    pairs: vec![
                        ("j".into(), "mx.example".into()),
                        ("{daemon_name}".into(), "smtpd".into()),
                    ],
                },
            ),
            (
                b'C',
                b"client.example\x004\x1f\x90192.0.2.1\0".to_vec(),
                Command::Connect {
                    hostname: "client.example".into(),
                    family: Family::Inet,
                    port: 8080,
                    address: "192.0.2.1".into(),
                },
            ),
            (
                b'C',
                b"localhost\0U".to_vec(),
                Command::Connect {
                    hostname: "localhost".into(),
                    family: Family::Unknown,
                    port: 0,
                    address: String::new(),
                },
            ),
            (
                b'H',
                b"helo.example\0".to_vec(),
                Command::Helo("helo.example".into()),
            ),
            (
                b'M',
                b"<a@example.org>\0SIZE=10\0".to_vec(),
                Command::Mail(vec!["<a@example.org>".into(), "SIZE=10".into()]),
            ),
            (
                b'L',
                b"Subject\0 hi\n\tthere\0".to_vec(),
                Command::Header {
                    name: "Subject".into(),
                    value: b" hi\n\tthere".to_vec(),
                },
            ),
            (b'N', vec![], Command::Eoh),
            (
                b'B',
                b"body\r\n".to_vec(),
                Command::Body(b"body\r\n".to_vec()),
            ),
            (b'E', vec![], Command::EndOfMessage(vec![])),
            (b'A', vec![], Command::Abort),
            (b'Q', vec![], Command::Quit),
            (b'K', vec![], Command::QuitNewConnection),
            (b'T', vec![], Command::Data),
            (
                b'U',
                b"XYZZY\0".to_vec(),
                Command::Unknown(b"XYZZY".to_vec()),
            ),
        ];
        for (cmd, data, want) in cases {
            assert_eq!(one(cmd, &data).unwrap(), want, "{}", char::from(cmd));
        }
    }

    #[test]
    fn partial_packets_need_more() {
        let bytes = encode_command(b'H', b"helo\0");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn hostile_packets_are_typed_errors() {
        let huge = u32::try_from(MAX_PACKET + 1).unwrap().to_be_bytes();
        assert_eq!(
            decode(&huge),
            Err(CodecError::TooLarge(MAX_PACKET + 1)),
            "refused before the data arrives"
        );
        assert_eq!(
            decode(&u32::MAX.to_be_bytes()),
            Err(CodecError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(decode(&[0, 0, 0, 0]), Err(CodecError::Empty));
        assert_eq!(one(b'Z', b""), Err(CodecError::UnknownCommand(b'Z')));
        for (cmd, data) in [
            (b'O', &b"\0\0\0\x06"[..]),
            (b'D', b""),
            (b'D', b"Cname\0"),
            (b'C', b"host"),
            (b'C', b"host\0X"),
            (b'C', b"host\x004\x00"),
            (b'C', b"host\x004\x00\x19addr"),
            (b'H', b"unterminated"),
            (b'H', b"a\0b\0"),
            (b'M', b""),
            (b'M', b"\0"),
            (b'L', b"Subject\0"),
            (b'L', b"\0value\0"),
            (b'L', b"a\0b\0c\0"),
        ] {
            assert!(
                matches!(one(cmd, data), Err(CodecError::Malformed { .. })),
                "{} {data:?}",
                char::from(cmd)
            );
        }
    }

    #[test]
    fn replies_encode_as_libmilter_expects() {
        let mut out = Vec::new();
        encode(
            &Response::InsertHeader {
                index: 0,
                name: "X-A".into(),
                value: " b".into(),
            },
            &mut out,
        );
        assert_eq!(out, b"\0\0\0\x0ci\0\0\0\0X-A\0 b\0");
        out.clear();
        encode(&Response::Continue, &mut out);
        assert_eq!(out, b"\0\0\0\x01c");
        out.clear();
        encode(&Response::ReplyCode("550 5.7.1 no\0pe".into()), &mut out);
        assert_eq!(out, b"\0\0\0\x10y550 5.7.1 nope\0");
        let (cmd, data, used) = decode_reply(&out).unwrap().unwrap();
        assert_eq!(
            (cmd, data.as_slice(), used),
            (b'y', &b"550 5.7.1 nope\0"[..], 20)
        );
    }

    #[test]
    fn replies_append_to_what_is_queued() {
        let mut out = b"\0\0\0\x01c".to_vec();
        encode(&Response::Quarantine("held".into()), &mut out);
        encode(&Response::Accept, &mut out);
        assert_eq!(out, b"\0\0\0\x01c\0\0\0\x06qheld\0\0\0\0\x01a");
    }

    #[test]
    fn header_packets_split_without_copies() {
        assert_eq!(
            header_parts(b"Subject\0 hi\n\tthere\0"),
            Ok((&b"Subject"[..], &b" hi\n\tthere"[..]))
        );
        assert_eq!(header_parts(b"X\0\0"), Ok((&b"X"[..], &b""[..])));
        for bad in [
            &b""[..],
            b"\0",
            b"\0value\0",
            b"Subject\0",
            b"Subject\0value",
            b"Subject",
            b"Subject\0va\0lue\0",
        ] {
            assert!(
                matches!(
                    header_parts(bad),
                    Err(CodecError::Malformed { command: 'L', .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_ip_reads_the_forms_mtas_send() {
        let cases = [
            (Family::Inet, "192.0.2.1", Some("192.0.2.1")),
            (Family::Inet6, "2001:db8::1", Some("2001:db8::1")),
            (Family::Inet6, "IPv6:2001:db8::1", Some("2001:db8::1")),
            (Family::Inet6, "[IPv6:2001:db8::1]", Some("2001:db8::1")),
            (Family::Unix, "/var/run/x", None),
            (Family::Inet, "nonsense", None),
        ];
        for (fam, addr, want) in cases {
            let want: Option<IpAddr> = want.map(|w| w.parse().unwrap());
            assert_eq!(client_ip(fam, addr), want, "{addr}");
        }
    }
}
