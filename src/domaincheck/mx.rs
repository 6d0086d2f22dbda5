//! MX and reverse-DNS findings: the MX records (RFC 5321 §5.1), null MX
//! (RFC 7505), each host's A/AAAA, and forward-confirmed reverse DNS of
//! each address (the PTR name resolves back to the address).
//!
//! Owns: the MX and rDNS findings (at most `MAX_HOSTS` hosts). Must not:
//! connect to the hosts (no SMTP or TLS probing).

use std::net::IpAddr;

use super::{Area, Finding, Level, add, unchecked};
use crate::dns::{DnsError, Mx, Resolver, reverse_name};

/// MX hosts looked at, at most.
const MAX_HOSTS: usize = 10;

pub(super) async fn check<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    const A: Area = Area::Mx;
    let mxs = match r.mx(domain).await {
        Ok(v) => v,
        Err(DnsError::NxDomain) => {
            return add(
                out,
                A,
                Level::Error,
                format!("{domain} does not exist (NXDOMAIN)."),
                None,
            );
        }
        Err(DnsError::NoData) => Vec::new(),
        Err(DnsError::Temporary(why)) => return unchecked(out, A, domain, &why),
    };
    let is_null = |m: &Mx| m.exchange.is_empty() || m.exchange == ".";
    if mxs.iter().any(is_null) {
        if mxs.len() == 1 && mxs[0].preference == 0 {
            return add(
                out,
                A,
                Level::Ok,
                format!("null MX (RFC 7505): {domain} accepts no mail."),
                None,
            );
        }
        return add(
            out,
            A,
            Level::Error,
            format!(
                "{domain} has a null MX (\".\") next to other MX records (or not at preference 0): RFC 7505 §3 forbids that, and senders may bounce."
            ),
            Some(format!(
                "{domain}. IN MX 0 .   (and delete the other MX records), or delete the null MX"
            )),
        );
    }
    if mxs.is_empty() {
        let fix = Some(format!(
            "{domain}. IN MX 10 mail.{domain}.   (or, if {domain} receives no mail: {domain}. IN MX 0 .)"
        ));
        return add(
            out,
            A,
            Level::Warning,
            format!(
                "{domain} has no MX record: senders fall back to its A/AAAA address (RFC 5321 §5.1); publish an MX, or a null MX if it receives no mail."
            ),
            fix,
        );
    }
    let mut hosts: Vec<&Mx> = mxs.iter().collect();
    hosts.sort_by_key(|m| m.preference);
    for m in hosts.into_iter().take(MAX_HOSTS) {
        host(r, &m.exchange, out).await;
    }
}

/// One MX host: its addresses, then reverse DNS of each.
async fn host<R: Resolver>(r: &R, host: &str, out: &mut Vec<Finding>) {
    const A: Area = Area::Mx;
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut failed = None;
    match r.a(host).await {
        Ok(v) => addrs.extend(v.into_iter().map(IpAddr::V4)),
        Err(DnsError::Temporary(why)) => failed = Some(why),
        Err(_) => {}
    }
    match r.aaaa(host).await {
        Ok(v) => addrs.extend(v.into_iter().map(IpAddr::V6)),
        Err(DnsError::Temporary(why)) => failed = Some(why),
        Err(_) => {}
    }
    if let (true, Some(why)) = (addrs.is_empty(), failed) {
        return unchecked(out, A, host, &why);
    }
    if addrs.is_empty() {
        return add(
            out,
            A,
            Level::Error,
            format!("MX host {host} has no A or AAAA record: mail to it cannot be delivered."),
            Some(format!(
                "{host}. IN A 192.0.2.25   (the address of your mail server)"
            )),
        );
    }
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    add(
        out,
        A,
        Level::Ok,
        format!("MX host {host}: {}.", list.join(", ")),
        None,
    );
    for ip in addrs {
        fcrdns(r, host, ip, out).await;
    }
}

/// Forward-confirmed reverse DNS of `ip`, which `host` resolves to.
async fn fcrdns<R: Resolver>(r: &R, host: &str, ip: IpAddr, out: &mut Vec<Finding>) {
    const A: Area = Area::Rdns;
    let fix = Some(format!(
        "{}. IN PTR {host}.   (ask the provider of {ip} to set it)",
        reverse_name(ip)
    ));
    let names = match r.ptr(ip).await {
        Ok(v) => v,
        Err(DnsError::Temporary(why)) => return unchecked(out, A, &reverse_name(ip), &why),
        Err(_) => Vec::new(),
    };
    if names.is_empty() {
        return add(
            out,
            A,
            Level::Warning,
            format!(
                "{ip} (MX host {host}) has no PTR record: many receivers distrust mail from addresses without reverse DNS."
            ),
            fix,
        );
    }
    for name in &names {
        let back: Vec<IpAddr> = match ip {
            IpAddr::V4(_) => r
                .a(name)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(IpAddr::V4)
                .collect(),
            IpAddr::V6(_) => r
                .aaaa(name)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(IpAddr::V6)
                .collect(),
        };
        if back.contains(&ip) {
            return add(
                out,
                A,
                Level::Ok,
                format!("{ip} has PTR {name}, which resolves back to it."),
                None,
            );
        }
    }
    add(
        out,
        A,
        Level::Warning,
        format!(
            "{ip} (MX host {host}) has PTR {}, which does not resolve back to {ip}: the reverse DNS is not forward-confirmed.",
            names.join(", ")
        ),
        fix,
    );
}
