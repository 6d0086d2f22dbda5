//! No open relay (issue 18, "Security checks"): `authgate serve` connects to
//! the configured next hop and nowhere else, whatever a client says; and
//! XCLIENT/XFORWARD, which rewrite who the client is, are honoured only from
//! peers in `server.authorized_xforward_hosts`.
//!
//! Already covered elsewhere, not repeated here: the session state machine's
//! 550 to an untrusted XFORWARD/XCLIENT (`src/smtp/session.rs`,
//! `untrusted_clients_cannot_claim_another_address`), the hostile corpus's
//! untrusted XFORWARD/XCLIENT dialogues (`smtp-xforward-untrusted`,
//! `smtp-xclient-untrusted`), and trusted XFORWARD/XCLIENT reaching the next
//! hop (`serve::relays_with_authentication_results_and_the_next_hops_reply`,
//! `serve::xclient_from_a_before_queue_proxy_reaches_the_next_hop_as_xforward`).
//! What this adds: the whole proxy over TCP with a decoy listener, and what an
//! untrusted peer's claims do (nothing) to the A-R field, SPF, signing and the
//! next hop's XFORWARD.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use crate::serve::{Client, Sink, SinkMode, hello, start_data, start_proxy};

/// A listener that only counts the connections it gets.
async fn decoy() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (addr, hits)
}

/// Every way a client could name another host: address literals with and
/// without the decoy's port, source routes, the %-hack, quoted local parts,
/// XCLIENT/XFORWARD naming the decoy, ETRN/TURN/ATRN (ask a server to
/// connect out), VRFY/EXPN, and headers that some MTAs route by.
fn routing_attempts(decoy: SocketAddr) -> Vec<String> {
    let (ip, port) = (decoy.ip(), decoy.port());
    vec![
        format!("XCLIENT ADDR={ip} PORT={port} NAME=[{ip}] HELO=[{ip}]"),
        format!("EHLO [{ip}]:{port}"),
        format!("XFORWARD ADDR={ip} PORT={port} NAME=[{ip}] SOURCE=LOCAL"),
        format!("ETRN [{ip}]:{port}"),
        format!("ETRN @{ip}"),
        "TURN".into(),
        format!("ATRN [{ip}]"),
        format!("VRFY <b@[{ip}]:{port}>"),
        format!("EXPN b@[{ip}]"),
        format!("MAIL FROM:<@[{ip}]:a@[{ip}]>"),
        format!("MAIL FROM:<a@[{ip}]>"),
        // Then a valid sender, so the recipients below reach RCPT handling.
        format!("MAIL FROM:<a@example.org> ENVID={ip}:{port}"),
        format!("RCPT TO:<b@[{ip}]>"),
        format!("RCPT TO:<b@[{ip}]:{port}>"),
        format!("RCPT TO:<@[{ip}]:b@example.test>"),
        format!("RCPT TO:<@[{ip}],@relay.example:b@example.test>"),
        format!("RCPT TO:<b%example.test@[{ip}]>"),
        format!("RCPT TO:<b!{ip}!example.test@example.test>"),
        format!("RCPT TO:<\"b@[{ip}]:{port}\"@example.test> ORCPT=rfc822;b@[{ip}]:{port}"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_command_makes_the_proxy_connect_anywhere_but_the_next_hop() {
    let (decoy, hits) = decoy().await;
    let sink = Sink::start(false, SinkMode::Accept).await;
    // Loopback is trusted by default, so XCLIENT/XFORWARD are honoured here:
    // the worst case. Each client gets its own next-hop connection.
    let p = start_proxy(sink.addr, "", "[server]\nnext_hop_idle_secs = 0").await;
    let attempts = routing_attempts(decoy);
    let mut accepted = 0;
    // Round 0 waits for each reply; round 1 pipelines everything after the
    // XCLIENT restart in one write.
    for round in 0..2 {
        let mut c = hello(p.addr, "EHLO").await;
        let (xclient, rest) = attempts.split_at(1);
        c.send(&format!("{}\r\n", xclient[0])).await;
        c.expect(220).await;
        let mut cmds: Vec<String> = rest.to_vec();
        cmds.extend(["RCPT TO:<b@example.test>".to_string(), "DATA".to_string()]);
        if round == 1 {
            c.send(&cmds.iter().map(|c| format!("{c}\r\n")).collect::<String>())
                .await;
        }
        let mut last = 0;
        for cmd in &cmds {
            if round == 0 {
                c.send(&format!("{cmd}\r\n")).await;
            }
            // Any reply will do (address literals and source routes get
            // 501 from the parser, ETRN/EXPN 502, VRFY 252): what counts
            // is where authgate connects.
            let (code, text) = c.reply().await;
            assert!((200..600).contains(&code), "{cmd}: {code} {text}");
            last = code;
        }
        assert_eq!(last, 354, "DATA");
        c.send(&format!(
            "From: a@example.org\r\nTo: b@[{ip}]:{port}\r\nX-Original-To: b@[{ip}]\r\nDelivered-To: b@[{ip}]:{port}\r\nReturn-Path: <@[{ip}]:a@example.org>\r\nSubject: route me\r\n\r\nRCPT TO:<b@[{ip}]:{port}>\r\n.\r\n",
            ip = decoy.ip(),
            port = decoy.port()
        ))
        .await;
        c.expect(250).await;
        accepted += 1;
        c.send("QUIT\r\n").await;
        c.expect(221).await;
        assert!(c.closed().await);
    }
    assert!(p.server.shutdown(std::time::Duration::from_secs(5)).await);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the decoy was never contacted"
    );
    assert_eq!(accepted, 2, "both messages went out");
    let seen = sink.transactions();
    assert_eq!(seen.len(), 2, "both reached the configured next hop");
    assert_eq!(sink.connections.load(Ordering::SeqCst), 2, "one per client");
    // What reached the next hop is the client's own words, for the next hop's
    // relay policy to judge: authgate decides no route.
    assert!(
        seen[1]
            .rcpts
            .iter()
            .any(|r| r.contains(&decoy.port().to_string()))
    );
}

/// An SMTP proxy whose `authorized_xforward_hosts` is `hosts`, signing
/// example.com for `trust.internal_hosts = 10.0.0.0/8`.
async fn proxy_trusting(sink: &Sink, hosts: &str) -> crate::serve::Proxy {
    let keys = crate::oracles::test_keys();
    let extra = format!(
        "[server]\nauthorized_xforward_hosts = [{hosts}]\n[trust]\ninternal_hosts = [\"10.0.0.0/8\"]\n[[dkim.keys]]\nname = \"k\"\ndomain = \"example.com\"\nselector = \"rsa2048\"\nfile = {:?}\n[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"k\"]\n",
        keys.rsa.display().to_string()
    );
    start_proxy(sink.addr, "", &extra).await
}

/// EHLO; the capability text.
async fn ehlo(c: &mut Client) -> String {
    c.send("EHLO client.example\r\n").await;
    c.expect(250).await
}

/// A message from `from` to b@example.test; what the next hop received.
async fn send(c: &mut Client, sink: &Sink, from: &str) -> crate::serve::Seen {
    start_data(c, from).await;
    c.send(&format!(
        "From: {from}\r\nTo: b@example.test\r\nSubject: who am I\r\n\r\nhi\r\n.\r\n"
    ))
    .await;
    c.expect(250).await;
    sink.transactions().pop().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn xclient_and_xforward_from_an_unconfigured_peer_are_refused_and_ignored() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    // The test client is 127.0.0.1: not in the list.
    let p = proxy_trusting(&sink, "\"192.0.2.0/24\"").await;
    let mut c = Client::connect(p.addr).await;
    c.expect(220).await;
    let caps = ehlo(&mut c).await;
    assert!(
        !caps.contains("XCLIENT") && !caps.contains("XFORWARD"),
        "{caps}"
    );
    // 192.0.2.1 passes SPF for example.org; 10.1.2.3 would be signed;
    // LOGIN would count as authenticated.
    for cmd in [
        "XFORWARD ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org IDENT=4FORGED",
        "XCLIENT ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org",
        "XFORWARD ADDR=10.1.2.3",
        "XCLIENT ADDR=10.1.2.3 LOGIN=alice",
    ] {
        c.send(&format!("{cmd}\r\n")).await;
        let text = c.expect(550).await;
        assert!(text.starts_with("5."), "{cmd}: {text}");
    }
    let t = send(&mut c, &sink, "a@example.org").await;
    let data = String::from_utf8_lossy(&t.data).into_owned();
    assert!(
        !data.contains("192.0.2.1"),
        "no claimed address in A-R: {data}"
    );
    assert!(data.contains("spf=fail"), "SPF ran for 127.0.0.1: {data}");
    assert!(
        t.xforward
            .iter()
            .all(|x| !x.contains("192.0.2.1") && !x.contains("4FORGED")),
        "{:?}",
        t.xforward
    );
    // Not signed: the claimed internal address and login were not taken.
    let t = send(&mut c, &sink, "alice@example.com").await;
    assert!(
        !t.data.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(&t.data)
    );
    assert!(
        t.xforward.iter().all(|x| !x.contains("10.1.2.3")),
        "{:?}",
        t.xforward
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn xclient_and_xforward_from_a_configured_peer_are_honoured() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = proxy_trusting(&sink, "\"127.0.0.1/32\"").await;
    let mut c = Client::connect(p.addr).await;
    c.expect(220).await;
    let caps = ehlo(&mut c).await;
    assert!(
        caps.contains("XCLIENT") && caps.contains("XFORWARD"),
        "{caps}"
    );
    c.send("XFORWARD ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org IDENT=4REAL\r\n")
        .await;
    c.expect(250).await;
    let t = send(&mut c, &sink, "a@example.org").await;
    let data = String::from_utf8_lossy(&t.data).into_owned();
    assert!(data.contains("spf=pass"), "SPF ran for 192.0.2.1: {data}");
    let xf = t.xforward.join(" ");
    assert!(
        xf.contains("ADDR=192.0.2.1") && xf.contains("IDENT=4REAL"),
        "{xf}"
    );
    // XCLIENT with an internal address: the session restarts and is signed.
    c.send("XCLIENT ADDR=10.1.2.3 NAME=[10.1.2.3]\r\n").await;
    c.expect(220).await;
    ehlo(&mut c).await;
    let t = send(&mut c, &sink, "alice@example.com").await;
    assert!(
        t.data.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(&t.data)
    );
    assert!(
        t.xforward.join(" ").contains("ADDR=10.1.2.3"),
        "{:?}",
        t.xforward
    );
}
