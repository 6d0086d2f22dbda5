//! A small authoritative DNS server on loopback for integration tests.
//!
//! Serves the records of a zone-file text (parsed with
//! [`authgate::dns::zone::ZoneResolver`], so the same fixtures drive offline
//! and network tests) over UDP and TCP on `127.0.0.1`, one port for both.
//! Answers like an authoritative server: CNAME chains in the answer
//! section, SOA in the authority section of negative answers (RFC 2308 §3),
//! TC=1 over UDP when the answer exceeds the client's EDNS payload size
//! (RFC 6891 §6.2.5), so the client retries over TCP (RFC 7766).
//!
//! Names are handled as octets both ways: a query name's labels become the
//! zone's canonical text ([`authgate::dns::hickory::name_text`]), and zone
//! names go back on the wire label by label ([`authgate::dns::hickory::fqdn`]),
//! so owners such as `a\ b` or `a\.b` answer the query of those octets.
//!
//! Failure modes per name come from `;@servfail` / `;@refused` /
//! `;@timeout` in the zone text, or at run time from [`DnsServer::set_mode`].
//! Counters record every query received, by transport and by name.

// A shared helper: each test uses a different part of it, and a failed
// setup (bind, fixture) should abort the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use authgate::dns::hickory::{fqdn, name_text};
use authgate::dns::zone::{FailMode, Outcome, ZoneData, ZoneRecord, ZoneResolver};
use authgate::dns::{DnsSettings, RecordType, normalize_name};
use hickory_resolver::proto::op::{Edns, Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType as HType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How the server treats queries for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the zone.
    Normal,
    /// RCODE SERVFAIL.
    ServFail,
    /// RCODE REFUSED.
    Refused,
    /// Never answer (the client times out).
    Drop,
}

/// Transport a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagram.
    Udp,
    /// Stream.
    Tcp,
}

/// One query the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Query name, in canonical text (`a\032b.example` for `a b.example`).
    pub name: String,
    /// Query type mnemonic (`TXT`, `A`, ...).
    pub rtype: String,
    /// How it came in.
    pub transport: Transport,
}

struct State {
    zone: std::sync::RwLock<ZoneResolver>,
    modes: Mutex<HashMap<String, Mode>>,
    log: Mutex<Vec<Received>>,
}

/// A running server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DnsServer {
    /// Starts serving `zone_text` on `127.0.0.1:<free port>` (UDP and TCP).
    pub async fn start(zone_text: &str) -> Self {
        let zone = ZoneResolver::parse(zone_text, None).expect("zone text parses");
        let state = Arc::new(State {
            zone: std::sync::RwLock::new(zone),
            modes: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("local addr");
        let tasks = vec![
            tokio::spawn(serve_udp(udp, state.clone())),
            tokio::spawn(serve_tcp(tcp, state.clone())),
        ];
        Self { addr, state, tasks }
    }

    /// Starts serving a fixture file from `tests/fixtures/dns/`.
    pub async fn start_fixture(file: &str) -> Self {
        Self::start(&fixture(file)).await
    }

    /// The address for `dns.servers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Settings pointing at this server only (timeout 500 ms, 1 attempt).
    pub fn settings(&self) -> DnsSettings {
        DnsSettings {
            servers: vec![self.addr.to_string()],
            timeout_ms: 500,
            attempts: 1,
            ..DnsSettings::default()
        }
    }

    /// Serves `zone_text` from now on (a record published or revoked).
    pub fn set_zone(&self, zone_text: &str) {
        let zone = ZoneResolver::parse(zone_text, None).expect("zone text parses");
        *self.state.zone.write().unwrap() = zone;
    }

    /// Changes how queries for `name` are treated from now on.
    pub fn set_mode(&self, name: &str, mode: Mode) {
        self.state
            .modes
            .lock()
            .unwrap()
            .insert(normalize_name(name), mode);
    }

    /// Every query received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// Number of queries received (both transports).
    pub fn queries(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Number of queries received for `name` (any type, any transport).
    pub fn queries_for(&self, name: &str) -> usize {
        let name = normalize_name(name);
        self.received().iter().filter(|r| r.name == name).count()
    }

    /// Number of queries received over `transport`.
    pub fn queries_over(&self, transport: Transport) -> usize {
        self.received()
            .iter()
            .filter(|r| r.transport == transport)
            .count()
    }
}

/// Reads `tests/fixtures/dns/<file>`.
pub fn fixture(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dns")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Binds UDP and TCP on the same free loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("local addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

async fn serve_udp(socket: UdpSocket, state: Arc<State>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = reply(&state, &buf[..len], Transport::Udp) else {
            continue;
        };
        let _ = socket.send_to(&reply, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_conn(stream, state.clone()));
    }
}

/// RFC 7766 §8: each message is preceded by a two-byte length.
async fn serve_tcp_conn(mut stream: TcpStream, state: Arc<State>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(reply) = reply(&state, &buf, Transport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The wire reply to a wire query; `None` to stay silent.
fn reply(state: &State, wire: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(wire).ok()?;
    let q = query.queries.first()?.clone();
    let name = name_text(q.name());
    state.log.lock().unwrap().push(Received {
        name: name.clone(),
        rtype: q.query_type().to_string(),
        transport,
    });
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(q.clone());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    let mode = state
        .modes
        .lock()
        .unwrap()
        .get(&name)
        .copied()
        .unwrap_or(Mode::Normal);
    let rcode = match mode {
        Mode::Normal => answer(state, &name, q.query_type(), &mut response)?,
        Mode::ServFail => ResponseCode::ServFail,
        Mode::Refused => ResponseCode::Refused,
        Mode::Drop => return None,
    };
    response.metadata.response_code = rcode;
    let bytes = response.to_vec().ok()?;
    if transport == Transport::Udp && bytes.len() > usize::from(query.max_payload()) {
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// Fills the answer and authority sections; `None` to stay silent.
fn answer(state: &State, name: &str, qtype: HType, response: &mut Message) -> Option<ResponseCode> {
    let zone = state.zone.read().unwrap();
    let Some(rtype) = our_type(qtype) else {
        // Types the zone does not serve: the name's existence still shows.
        let code = if zone.exists(name) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        add_soa(&zone, name, response);
        return Some(code);
    };
    let resolution = zone.resolve(name, rtype);
    response.add_answers(resolution.aliases.iter().map(to_record));
    let code = match &resolution.outcome {
        Outcome::Found(records) => {
            response.add_answers(records.iter().map(to_record));
            return Some(ResponseCode::NoError);
        }
        Outcome::NxDomain => ResponseCode::NXDomain,
        Outcome::NoData => ResponseCode::NoError,
        Outcome::Failed(FailMode::ServFail) | Outcome::ChainTooLong => {
            return Some(ResponseCode::ServFail);
        }
        Outcome::Failed(FailMode::Refused) => return Some(ResponseCode::Refused),
        Outcome::Failed(FailMode::Timeout) => return None,
    };
    add_soa(&zone, &resolution.name, response);
    Some(code)
}

fn add_soa(zone: &ZoneResolver, name: &str, response: &mut Message) {
    if let Some(soa) = zone.soa_for(name) {
        response.add_authority(to_record(soa));
    }
}

fn our_type(t: HType) -> Option<RecordType> {
    Some(match t {
        HType::A => RecordType::A,
        HType::AAAA => RecordType::Aaaa,
        HType::MX => RecordType::Mx,
        HType::TXT => RecordType::Txt,
        HType::PTR => RecordType::Ptr,
        _ => return None,
    })
}

fn dns_name(name: &str) -> Name {
    fqdn(name).expect("zone names are valid")
}

fn to_record(r: &ZoneRecord) -> Record {
    let data = match &r.data {
        ZoneData::A(a) => RData::A(A(*a)),
        ZoneData::Aaaa(a) => RData::AAAA(AAAA(*a)),
        ZoneData::Mx(m) => RData::MX(MX::new(m.preference, dns_name(&m.exchange))),
        ZoneData::Txt(t) => RData::TXT(TXT::from_bytes(t.iter().map(Vec::as_slice).collect())),
        ZoneData::Ptr(p) => RData::PTR(PTR(dns_name(p))),
        ZoneData::Cname(c) => RData::CNAME(CNAME(dns_name(c))),
        ZoneData::Ns(n) => RData::NS(NS(dns_name(n))),
        ZoneData::Soa(s) => RData::SOA(SOA::new(
            dns_name(&s.mname),
            dns_name(&s.rname),
            s.serial,
            i32::try_from(s.refresh).unwrap_or(i32::MAX),
            i32::try_from(s.retry).unwrap_or(i32::MAX),
            i32::try_from(s.expire).unwrap_or(i32::MAX),
            s.minimum,
        )),
        ZoneData::Other(t) => panic!("test server cannot serve {t} records"),
    };
    Record::from_rdata(dns_name(&r.name), r.ttl, data)
}
