//! Milter cases: the MTA's bytes (all at once, then end of stream) go to
//! the milter connection loop (`authgate::milter::drive`) over an
//! in-memory pipe. Observed: the reply packets' command bytes in order and
//! how the connection ended (`ok`, or the error that ended it).

use std::time::Duration;

use authgate::config::ListenerSettings;
use authgate::milter::codec;
use authgate::role::ListenProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use toml::Value;

use crate::manifest::Case;
use crate::{Observed, template};

const HANG: Duration = Duration::from_secs(60);

/// Runs the case at `scale`; what it did.
pub fn run(case: &Case, scale: usize, rt: &tokio::runtime::Runtime) -> Observed {
    let input = template::expand(&case.input, scale);
    let snap = crate::smtp::snapshot();
    let listener = ListenerSettings {
        protocol: ListenProtocol::Milter,
        ..ListenerSettings::default()
    };
    let settings = authgate::milter::session_settings(&listener, &snap);
    let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let result = rt.block_on(async move {
        let (mut mta, ours) = tokio::io::duplex(64 * 1024);
        let conn = tokio::spawn(authgate::milter::drive(ours, settings, snap, shutdown_rx));
        let (mut r, mut w) = tokio::io::split(&mut mta);
        let write = async {
            let _ = w.write_all(&input).await;
            let _ = w.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out).await;
            out
        };
        tokio::time::timeout(HANG, async {
            let ((), out) = tokio::join!(write, read);
            (out, conn.await)
        })
        .await
    });
    let mut o = Observed::new();
    let Ok((out, end)) = result else {
        o.insert("end".into(), Value::String("hung".into()));
        return o;
    };
    let end = match end {
        Err(e) => format!("panic: {e}"),
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => format!("error: {e}"),
    };
    o.insert("end".into(), Value::String(end));
    let mut replies = Vec::new();
    let mut texts = Vec::new();
    let mut buf = &out[..];
    while let Ok(Some((cmd, data, used))) = codec::decode_reply(buf) {
        replies.push(Value::String((cmd as char).to_string()));
        texts.push(format!(
            "{}:{}",
            cmd as char,
            String::from_utf8_lossy(&data)
        ));
        buf = &buf[used..];
    }
    o.insert("replies".into(), Value::Array(replies));
    o.insert("reply_text".into(), Value::String(texts.join("|")));
    o.insert("trailing".into(), Value::Integer(buf.len() as i64));
    o
}
