//! Zone files layered over a live resolver.
//!
//! Owns the rule that lets an admin try a record before publishing it: a
//! name that owns records (or a `;@` directive) in the zone files is
//! answered from them; every other name, including empty non-terminals of
//! the zone, goes to the upstream resolver. A CNAME in the zone whose
//! target the zone does not own is followed upstream (RFC 1034 §3.6.2).

use super::zone::{Outcome, ZoneResolver};
use super::{Answer, Lookup, RecordType};

/// [`ZoneResolver`] answers first for the names it owns, `upstream` for the rest.
pub struct Overlay<L> {
    zone: ZoneResolver,
    upstream: L,
}

impl<L: Lookup> Overlay<L> {
    /// Layers `zone` over `upstream`.
    pub fn new(zone: ZoneResolver, upstream: L) -> Self {
        Self { zone, upstream }
    }

    /// The zone layer.
    pub fn zone(&self) -> &ZoneResolver {
        &self.zone
    }

    /// The upstream layer.
    pub fn upstream(&self) -> &L {
        &self.upstream
    }

    async fn overlay_lookup(&self, name: &str, rtype: RecordType) -> Answer {
        if !self.zone.owns(name) {
            return self.upstream.lookup(name, rtype).await;
        }
        let resolution = self.zone.resolve(name, rtype);
        let left_zone = !resolution.aliases.is_empty()
            && matches!(resolution.outcome, Outcome::NxDomain | Outcome::NoData)
            && !self.zone.owns(&resolution.name);
        if !left_zone {
            return self.zone.answer(&resolution, rtype);
        }
        let alias_ttl = resolution.alias_ttl();
        let answer = self.upstream.lookup(&resolution.name, rtype).await;
        Answer {
            ttl: answer.ttl.min(alias_ttl),
            ..answer
        }
    }
}

impl<L: Lookup> Lookup for Overlay<L> {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        self.overlay_lookup(name, rtype).await
    }
}

super::resolver_via_lookup!(impl<L: Lookup> for Overlay<L>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsError, Resolver};

    fn overlay() -> Overlay<ZoneResolver> {
        let upstream = ZoneResolver::parse(
            "example.com. TXT \"published\"\nexample.com. A 192.0.2.1\nkey.provider.net. TXT \"k=rsa\"\n",
            None,
        )
        .unwrap();
        let zone = ZoneResolver::parse(
            "$ORIGIN example.com.\n_dmarc TXT \"v=DMARC1; p=none\"\nsel._domainkey CNAME key.provider.net.\n;@servfail bad\n",
            None,
        )
        .unwrap();
        Overlay::new(zone, upstream)
    }

    #[tokio::test]
    async fn zone_names_shadow_upstream_and_others_pass_through() {
        let o = overlay();
        assert_eq!(
            o.txt("_dmarc.example.com").await.unwrap(),
            [b"v=DMARC1; p=none".to_vec()]
        );
        assert_eq!(o.txt("example.com").await.unwrap(), [b"published".to_vec()]);
        assert_eq!(o.txt("other.example.com").await, Err(DnsError::NxDomain));
    }

    #[tokio::test]
    async fn zone_cname_to_foreign_name_is_followed_upstream() {
        let o = overlay();
        assert_eq!(
            o.txt("sel._domainkey.example.com").await.unwrap(),
            [b"k=rsa".to_vec()]
        );
    }

    #[tokio::test]
    async fn zone_failure_directives_apply() {
        let o = overlay();
        assert!(matches!(
            o.a("bad.example.com").await,
            Err(DnsError::Temporary(_))
        ));
    }
}
