//! Finding the aggregate reports in what reporters mail us: whole messages
//! (RFC 5322, with attachments nested in forwarded `message/rfc822` parts),
//! mbox files, Maildir folders, and bare `.zip`/`.gz`/`.xml` attachments.
//!
//! Attachments are recognised by their first bytes (gzip `1f 8b`, zip
//! `PK\x03\x04`, XML `<`), never by their label: reporters label gzip as
//! `application/octet-stream` and zip as `application/x-zip-compressed`.
//! Every decompression is bounded by [`MAX_REPORT_BYTES`] and a zip by
//! [`MAX_ZIP_ENTRIES`], so a bomb gives an error, not an exhausted memory.
//!
//! Owns: inputs (files, folders, bytes) to [`Extracted`] reports, each
//! with where it came from. Must not: touch the store or print; a bad
//! attachment is a value, never a stop.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::feedback::ReceivedReport;

/// The most one report may decompress to (a big reporter's daily report
/// is a few megabytes).
pub const MAX_REPORT_BYTES: u64 = 50 * 1024 * 1024;
/// The most entries a report zip may hold (reporters send one).
pub const MAX_ZIP_ENTRIES: usize = 16;
/// The most one input file (or stdin) may hold.
pub const MAX_INPUT_BYTES: u64 = 512 * 1024 * 1024;
/// Forwarded messages nested deeper than this are not opened.
const MAX_NESTING: usize = 8;
/// Folders nested deeper than this are not walked.
const MAX_FOLDER_DEPTH: usize = 8;

/// One report found (or the reason an attachment held none).
#[derive(Debug)]
pub struct Extracted {
    /// Where it came from: the file, the message in an mbox, the attachment.
    pub source: String,
    /// The report, or why it could not be read.
    pub report: Result<ReceivedReport, String>,
}

/// One input: a file's (or stdin's) bytes with its name for messages.
#[derive(Debug)]
pub struct Input {
    /// The path, `-` for stdin, or the message in a Maildir.
    pub name: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gzip,
    Zip,
    Xml,
}

fn sniff(data: &[u8]) -> Option<Kind> {
    if data.starts_with(b"\x1f\x8b") {
        return Some(Kind::Gzip);
    }
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return Some(Kind::Zip);
    }
    let text = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let head = &text[start.unwrap_or(text.len())..];
    let window = &head[..head.len().min(4096)];
    let mentions = memchr::memmem::find(window, b"feedback").is_some();
    (head.starts_with(b"<") && (mentions || head.starts_with(b"<?xml"))).then_some(Kind::Xml)
}

/// The reports in one input, whatever its form (message, mbox, bare
/// attachment).
pub fn extract(input: &Input) -> Vec<Extracted> {
    let bytes = input.bytes.as_slice();
    if sniff(bytes).is_some() {
        return attachment(&input.name, bytes);
    }
    if bytes.starts_with(b"From ") {
        return split_mbox(bytes)
            .into_iter()
            .enumerate()
            .flat_map(|(i, m)| message(&format!("{} message {}", input.name, i + 1), m))
            .collect();
    }
    message(&input.name, bytes)
}

/// The messages of an mbox, each without its `From ` line.
fn split_mbox(bytes: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = vec![0];
    starts.extend(memchr::memmem::find_iter(bytes, b"\nFrom ").map(|i| i + 1));
    let mut out = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
        let chunk = &bytes[s..end];
        let body =
            memchr::memchr(b'\n', chunk).map_or(&chunk[chunk.len()..], |nl| &chunk[nl + 1..]);
        if !body.iter().all(u8::is_ascii_whitespace) {
            out.push(body);
        }
    }
    out
}

/// The reports attached to one message.
pub fn message(source: &str, bytes: &[u8]) -> Vec<Extracted> {
    let Some(msg) = MessageParser::default().parse(bytes) else {
        return vec![failed(source, "not a mail message")];
    };
    let mut out = Vec::new();
    walk(source, &msg, 0, &mut out);
    if out.is_empty() {
        out.push(failed(source, "no DMARC report attachment in the message"));
    }
    out
}

fn walk(source: &str, msg: &Message<'_>, depth: usize, out: &mut Vec<Extracted>) {
    for (i, part) in msg.parts.iter().enumerate() {
        let name = part
            .attachment_name()
            .map_or_else(|| format!("part {}", i + 1), str::to_string);
        let label = format!("{source}: {name}");
        match &part.body {
            PartType::Message(inner) if depth < MAX_NESTING => walk(&label, inner, depth + 1, out),
            PartType::Message(_) => out.push(failed(&label, "forwarded messages nested too deep")),
            PartType::Multipart(_) => {}
            _ if sniff(&part_bytes(msg, part)).is_some() => {
                out.extend(attachment(&label, &part_bytes(msg, part)));
            }
            _ if labelled_as_report(part) => {
                out.push(failed(&label, "not a report: neither gzip, zip nor XML"));
            }
            _ => {}
        }
    }
}

/// A part's bytes as sent. mail-parser hands text parts (`text/xml`)
/// over converted from their charset, which breaks a gzip labelled as
/// text: base64 text parts are decoded again from the raw message.
fn part_bytes<'a>(msg: &'a Message<'_>, part: &'a mail_parser::MessagePart<'_>) -> Cow<'a, [u8]> {
    use base64::Engine as _;
    let is_text = matches!(part.body, PartType::Text(_) | PartType::Html(_));
    if !is_text || part.encoding != mail_parser::Encoding::Base64 {
        return Cow::Borrowed(part.contents());
    }
    let raw = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    let clean: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(clean)
        .map_or(Cow::Borrowed(part.contents()), Cow::Owned)
}

/// Parts a reporter would have put a report in (by type or file name):
/// when they hold none, that is worth an error line.
fn labelled_as_report(part: &mail_parser::MessagePart<'_>) -> bool {
    let by_type = part.content_type().is_some_and(|ct| {
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match ct.ctype().to_ascii_lowercase().as_str() {
            "application" => [
                "gzip",
                "x-gzip",
                "zip",
                "x-zip-compressed",
                "xml",
                "octet-stream",
            ]
            .contains(&sub.as_str()),
            "text" => sub == "xml",
            _ => false,
        }
    });
    let by_name = part.attachment_name().is_some_and(|n| {
        let n = n.to_ascii_lowercase();
        n.ends_with(".zip") || n.ends_with(".gz") || n.ends_with(".xml")
    });
    by_type || by_name
}

/// The reports in one attachment (a zip may hold several).
pub fn attachment(source: &str, data: &[u8]) -> Vec<Extracted> {
    match sniff(data) {
        Some(Kind::Xml) => vec![parsed(source, data)],
        Some(Kind::Gzip) => match gunzip(data) {
            Ok(xml) => vec![parsed(source, &xml)],
            Err(why) => vec![failed(source, &why)],
        },
        Some(Kind::Zip) => unzip(source, data),
        None => vec![failed(source, "not a report: neither gzip, zip nor XML")],
    }
}

fn parsed(source: &str, xml: &[u8]) -> Extracted {
    Extracted {
        source: source.to_string(),
        report: ReceivedReport::parse(xml).map_err(|e| e.to_string()),
    }
}

fn failed(source: &str, why: &str) -> Extracted {
    Extracted {
        source: source.to_string(),
        report: Err(why.to_string()),
    }
}

/// Reads at most [`MAX_REPORT_BYTES`] from `r`.
fn bounded(r: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.take(MAX_REPORT_BYTES.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!(
            "{what}: decompresses to more than {} MiB",
            MAX_REPORT_BYTES / 1024 / 1024
        ));
    }
    Ok(out)
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let xml = bounded(flate2::read::MultiGzDecoder::new(data), "gzip")?;
    match sniff(&xml) {
        Some(Kind::Xml) => Ok(xml),
        _ => Err("gzip: the content is not XML".into()),
    }
}

fn unzip(source: &str, data: &[u8]) -> Vec<Extracted> {
    let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(data)) {
        Ok(a) => a,
        Err(e) => return vec![failed(source, &format!("zip: {e}"))],
    };
    if archive.len() > MAX_ZIP_ENTRIES {
        let why = format!(
            "zip: {} entries, more than {MAX_ZIP_ENTRIES}",
            archive.len()
        );
        return vec![failed(source, &why)];
    }
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                out.push(failed(source, &format!("zip entry {}: {e}", i + 1)));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_or_else(|_| format!("entry {}", i + 1), |n| n.into_owned());
        let label = format!("{source}: {name}");
        out.push(match bounded(entry, "zip") {
            Ok(xml) => parsed(&label, &xml),
            Err(why) => failed(&label, &why),
        });
    }
    if out.is_empty() {
        out.push(failed(source, "zip: no files"));
    }
    out
}

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InputError {
    /// The file or folder.
    pub path: String,
    /// The OS reason (or the size limit).
    pub reason: String,
}

/// Reads `r` whole (at most [`MAX_INPUT_BYTES`]).
pub fn read_all(name: &str, r: impl Read) -> Result<Input, InputError> {
    let mut bytes = Vec::new();
    let err = |reason: String| InputError {
        path: name.to_string(),
        reason,
    };
    r.take(MAX_INPUT_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| err(crate::keyfile::without_errno(&e.to_string()).to_string()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(err(format!(
            "larger than {} MiB",
            MAX_INPUT_BYTES / 1024 / 1024
        )));
    }
    Ok(Input {
        name: name.to_string(),
        bytes,
    })
}

/// The files a path stands for: itself, a Maildir's `cur/` and `new/`
/// messages, or every file under a folder; sorted, for a stable output.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    collect(path, 0, &mut out)?;
    Ok(out)
}

fn collect(path: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let err = |e: std::io::Error| InputError {
        path: path.display().to_string(),
        reason: crate::keyfile::without_errno(&e.to_string()).to_string(),
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_FOLDER_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Maildir: tmp/ holds messages still being written; dot files are
        // the MUA's own (dovecot-uidlist, .Trash is a folder and walked).
        if name == "tmp" || (name.starts_with('.') && entry.is_file()) {
            continue;
        }
        collect(&entry, depth + 1, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const XML: &str = "<feedback><report_metadata><org_name>r.example</org_name>\
        <report_id>7</report_id><date_range><begin>1</begin><end>2</end></date_range>\
        </report_metadata><policy_published><domain>example.com</domain></policy_published>\
        <record><row><source_ip>192.0.2.1</source_ip><count>5</count></row></record></feedback>";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zipped(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn only(found: Vec<Extracted>) -> Result<ReceivedReport, String> {
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().unwrap().report
    }

    #[test]
    fn attachments_are_recognised_by_content() {
        for data in [
            XML.as_bytes().to_vec(),
            gzip(XML.as_bytes()),
            zipped(&[("r.xml", XML.as_bytes())]),
        ] {
            let r = only(attachment("a", &data)).unwrap();
            assert_eq!((r.report_id.as_str(), r.messages()), ("7", 5));
        }
    }

    #[test]
    fn bad_attachments_are_errors() {
        let gz = gzip(XML.as_bytes());
        let truncated = &gz[..gz.len() / 2];
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_ZIP_ENTRIES)
            .map(|i| (format!("{i}.xml"), XML.as_bytes().to_vec()))
            .collect();
        let many: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        for (data, want) in [
            (truncated.to_vec(), "gzip: "),
            (gzip(b"hello"), "gzip: the content is not XML"),
            (zipped(&many), "entries, more than"),
            (b"%PDF-1.4".to_vec(), "neither gzip, zip nor XML"),
            (gzip(b"<feedback>"), "ends inside <feedback>"),
        ] {
            let err = only(attachment("a", &data)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..=(MAX_REPORT_BYTES / (1024 * 1024)) {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        let err = only(attachment("bomb", &bomb)).unwrap_err();
        assert!(err.contains("more than 50 MiB"), "{err}");
    }

    #[test]
    fn mbox_is_split_on_from_lines() {
        let mbox = b"From a@b Mon Dec  7 00:00:00 2026\nSubject: 1\n\nx\n\
            From c@d Mon Dec  7 00:00:00 2026\nSubject: 2\n\ny\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with(b"Subject: 2"));
    }

    #[test]
    fn a_gzip_labelled_text_xml_is_read_by_its_content() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(gzip(XML.as_bytes()));
        let msg = format!(
            "From: r@example.net\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nreport\r\n\
             --b\r\nContent-Type: text/xml; charset=utf-8; name=\"r.xml.gz\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        let r = only(message("m", msg.as_bytes())).unwrap();
        assert_eq!(r.messages(), 5);
    }

    #[test]
    fn a_message_without_a_report_says_so() {
        let msg = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
        let err = only(message("m", msg)).unwrap_err();
        assert_eq!(err, "no DMARC report attachment in the message");
    }
}
