//! RFC 9991 failure reports built from hostile input: the header block and
//! the Authentication-Results value come from the message.
//!
//! Input: byte 0 picks redaction (bit 0) and the kind (bits 1-2), the rest
//! is split at the first NUL into header block and A-R value.
//! Asserts: composing never fails for a DMARC report, the mail has CRLF line
//! ends only, and the MIME boundary occurs exactly where we put it (the
//! Content-Type parameter, three delimiters, the close), so nothing from the
//! message can end a part or start one.
#![no_main]

use authgate::report::failure::{
    AuthFailure, DkimFailure, FailureInput, FailureReporter, compose_failure,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let (header, ar) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let kind = [
        AuthFailure::Dmarc,
        AuthFailure::Signature,
        AuthFailure::BodyHash,
        AuthFailure::Spf,
    ][usize::from((mode >> 1) & 3)];
    let text = String::from_utf8_lossy(ar).into_owned();
    let input = FailureInput {
        auth_failure: kind,
        arrival: 1_796_640_000,
        client_ip: None,
        mail_from: Some(text.clone()),
        rcpt_to: None,
        envelope_id: Some(text.clone()),
        reported_domain: text.clone(),
        auth_results: text.clone(),
        header: header.to_vec(),
        delivery: None,
        dkim_aligned_failed: true,
        spf_aligned_failed: true,
        dkim: Some(DkimFailure {
            domain: text.clone(),
            selector: text.clone(),
            identity: text,
            canonicalized_header: Some(header.to_vec()),
            canonicalized_body: None,
        }),
        spf_dns: None,
    };
    let reporter = FailureReporter {
        from: "dmarc@receiver.example".into(),
        to: vec!["ruf@example.com".into()],
        user_agent: "authgate/0.1.0".into(),
        message_id_host: "receiver.example".into(),
        redaction_key: (mode & 1 == 1).then(|| b"key".to_vec()),
    };
    let Ok(mail) = compose_failure(&input, &reporter, 1_796_640_060) else {
        panic!("a report with its DKIM facts must compose");
    };
    for (i, &b) in mail.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(
                i.checked_sub(1).map(|j| mail[j]),
                Some(b'\r'),
                "bare LF at {i}"
            );
        }
    }
    let text = String::from_utf8_lossy(&mail);
    // The boundary parameter of the report's own Content-Type: the hostile
    // text may say `boundary="` earlier (in Subject), but never at the start
    // of a line, where a header field begins.
    let ct = text
        .find("\r\nContent-Type: multipart/report")
        .expect("Content-Type");
    let start = ct + text[ct..].find("boundary=\"").expect("boundary") + "boundary=\"".len();
    let boundary = &text[start..start + text[start..].find('"').expect("quote")];
    assert_eq!(text.matches(boundary).count(), 5, "{text}");
});
