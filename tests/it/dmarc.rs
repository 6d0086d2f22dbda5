//! DMARC (RFC 9989) against the fixture zone `tests/fixtures/dmarc/policies.zone`.
//!
//! Each row names the RFC text it checks. `Mode::Psl` rows run the RFC 7489
//! mode (PSL Organizational Domains, `pct`).

use authgate::dmarc::{
    self, Disposition, DmarcOptions, DmarcResult, EvalInputs, FromProblem, MultiDomainFrom, Policy,
    SpfVerdict,
};
use authgate::dns::zone::ZoneResolver;
use authgate::message::headers::Header;

use crate::support::fixtures;

fn zone() -> ZoneResolver {
    let text = std::fs::read_to_string(fixtures().join("dmarc/policies.zone")).unwrap();
    ZoneResolver::parse(&text, None).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Bis,
    Psl,
}

struct Case {
    what: &'static str,
    author: &'static str,
    spf: Option<(SpfVerdict, &'static str)>,
    dkim: &'static [&'static str],
    mode: Mode,
    result: DmarcResult,
    policy: Option<Policy>,
    disposition: Disposition,
}

const fn case(
    what: &'static str,
    author: &'static str,
    spf: Option<(SpfVerdict, &'static str)>,
    dkim: &'static [&'static str],
    result: DmarcResult,
    policy: Option<Policy>,
    disposition: Disposition,
) -> Case {
    Case {
        what,
        author,
        spf,
        dkim,
        mode: Mode::Bis,
        result,
        policy,
        disposition,
    }
}

const fn psl(c: Case) -> Case {
    Case {
        mode: Mode::Psl,
        ..c
    }
}

use Disposition::{None as DNone, Quarantine as DQuar, Reject as DRej};
use DmarcResult::{Fail, None as NoneR, Pass, PermError, TempError};
use Policy::{None as PNone, Quarantine as PQuar, Reject as PRej};
use SpfVerdict::Pass as SPass;

const NOAUTH: &[&str] = &[];

fn cases() -> Vec<Case> {
    vec![
        // p / sp / np (RFC 9989 4.7, 4.10.1, 3.2.13)
        case(
            "p at the author",
            "example.com",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "sp for an existing subdomain",
            "mail.example.com",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "np for a non-existent subdomain",
            "ghost.example.com",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "np for a deeper non-existent name",
            "a.b.ghost.example.com",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "existence test SERVFAIL is temperror",
            "ghost2.example.com",
            None,
            NOAUTH,
            TempError,
            None,
            DNone,
        ),
        case(
            "subdomain's own record wins",
            "sub.example.com",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "np without sp: existing uses p",
            "live.nponly.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "np without sp: non-existent uses np",
            "ghost.nponly.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "no record anywhere",
            "nothing.invalid",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        // Tree walk and Organizational Domain (4.10, 4.10.1, 4.10.2)
        case(
            "org domain is the shortest record",
            "x.mid.org.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "12 labels: jump to 7, record at org",
            "a.b.c.d.e.f.g.h.i.j.deep.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "12 labels: 7-label record is found",
            "a.b.c.d.e.f.g.h.i.j.seven.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "B.4.3 author with own record under psd=y",
            "giant.bank.example",
            Some((SPass, "mail.giant.bank.example")),
            &["mail.mega.bank.example"],
            Pass,
            Some(PNone),
            DNone,
        ),
        case(
            "B.4.3 DKIM under another org fails",
            "giant.bank.example",
            None,
            &["mail.mega.bank.example"],
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "PSD record: existing name takes sp",
            "exists.bank.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "PSD record: non-existent name takes np",
            "unknown.bank.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "single-label PSD: np",
            "ghost.tld",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "single-label PSD: existing name gets p",
            "real.tld",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "PSD's own name: p",
            "bank.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "psd=n: policy of the declared org",
            "x.dept.corp.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "psd=n: parent's DKIM not aligned",
            "x.dept.corp.example",
            None,
            &["corp.example"],
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "psd=n: sibling under it aligned",
            "x.dept.corp.example",
            None,
            &["other.dept.corp.example"],
            Pass,
            Some(PQuar),
            DNone,
        ),
        // Alignment matrix (4.4): relaxed/strict x SPF/DKIM x same/sub/parent/other
        case(
            "relaxed SPF same",
            "relaxed.example",
            Some((SPass, "relaxed.example")),
            NOAUTH,
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "relaxed SPF sub",
            "relaxed.example",
            Some((SPass, "bounce.relaxed.example")),
            NOAUTH,
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "relaxed SPF other",
            "relaxed.example",
            Some((SPass, "other.example")),
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "relaxed DKIM same",
            "relaxed.example",
            None,
            &["relaxed.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "relaxed DKIM sub, any case",
            "relaxed.example",
            None,
            &["MAIL.Relaxed.Example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "relaxed DKIM parent of author",
            "a.relaxed.example",
            None,
            &["relaxed.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "relaxed DKIM other",
            "relaxed.example",
            None,
            &["other.example"],
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "strict SPF same",
            "strict.example",
            Some((SPass, "STRICT.example")),
            NOAUTH,
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "strict SPF sub",
            "strict.example",
            Some((SPass, "mail.strict.example")),
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "strict DKIM same",
            "strict.example",
            None,
            &["strict.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "strict DKIM sub",
            "strict.example",
            None,
            &["mail.strict.example"],
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "strict DKIM other",
            "strict.example",
            None,
            &["other.example"],
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "SPF softfail never aligns",
            "relaxed.example",
            Some((SpfVerdict::SoftFail, "relaxed.example")),
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "aligned SPF temperror is temperror",
            "relaxed.example",
            Some((SpfVerdict::TempError, "relaxed.example")),
            NOAUTH,
            TempError,
            Some(PRej),
            DNone,
        ),
        case(
            "aligned DKIM beats SPF temperror",
            "relaxed.example",
            Some((SpfVerdict::TempError, "relaxed.example")),
            &["relaxed.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        case(
            "any passing DKIM may align",
            "relaxed.example",
            None,
            &["other.example", "relaxed.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        // t=y (4.7 t): one level below
        case(
            "t=y reject -> quarantine",
            "testing.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DQuar,
        ),
        case(
            "t=y quarantine -> none",
            "testq.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DNone,
        ),
        case(
            "pct ignored by RFC 9989",
            "pct.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // Temporary errors (5.3.6)
        case(
            "SERVFAIL on the author's record",
            "broken.example",
            None,
            NOAUTH,
            TempError,
            None,
            DNone,
        ),
        case(
            "timeout during the tree walk",
            "x.walkfail.example",
            None,
            NOAUTH,
            TempError,
            None,
            DNone,
        ),
        case(
            "SERVFAIL in an alignment walk",
            "r2.example",
            None,
            &["sub.r2.example"],
            TempError,
            Some(PRej),
            DNone,
        ),
        case(
            "SERVFAIL in an alignment walk, SPF passes",
            "r2.example",
            Some((SPass, "r2.example")),
            &["sub.r2.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        // Record syntax (4.7, 4.8, 4.10 step 2, 4.10.1)
        case(
            "no v= tag: not a record",
            "nov.example",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        case(
            "v= not first: not a record",
            "vlate.example",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        case(
            "v= value is case sensitive",
            "lowerv.example",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        case(
            "invalid p, no rua: no processing",
            "badp.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        case(
            "invalid p with rua: p=none",
            "badprua.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "invalid sp, no rua: no processing",
            "badsp.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        case(
            "p absent with rua: p=none",
            "nop.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            // 4.10.1: a record that "does not contain a valid p tag" and
            // has no valid rua gets no DMARC processing (4.7 p points here).
            "p absent, no rua: no processing",
            "nop2.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        case(
            "duplicate p: first wins",
            "dup.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        case(
            "unknown tags and junk ignored",
            "unk.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "two records: discarded",
            "multi.example",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        case(
            "two records: walk goes on to the parent",
            "m.parent.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "non-DMARC TXT beside the record",
            "mixed.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "character-strings are joined",
            "split.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        case(
            "tag names and keywords any case",
            "case.example",
            None,
            &["a.case.example"],
            Fail,
            Some(PRej),
            DRej,
        ),
        // IDN (5.3.1: U-labels become A-labels)
        case(
            "U-label author, A-label d=",
            "Bücher.example",
            None,
            &["xn--bcher-kva.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        // Tree walk vs PSL: a private PSL suffix
        case(
            "github.io: tree walk finds the parent record",
            "foo.github.io",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // RFC 7489 mode (PSL)
        psl(case(
            "PSL: co.uk org domain",
            "mail.example.co.uk",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        )),
        psl(case(
            "PSL: co.uk relaxed alignment",
            "mail.example.co.uk",
            None,
            &["example.co.uk"],
            Pass,
            Some(PRej),
            DNone,
        )),
        psl(case(
            "PSL: private suffix github.io",
            "foo.github.io",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        )),
        psl(case(
            "PSL: IDN org domain",
            "Mail.Bücher.DE",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        )),
        psl(case(
            "PSL: intermediate record ignored",
            "x.mid.org.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        )),
        psl(case(
            "PSL: two records end discovery",
            "m.parent.example",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        )),
        psl(case(
            "PSL: pct sampled out",
            "pct.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DQuar,
        )),
        psl(case(
            "PSL: np still read",
            "ghost.example.com",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        )),
        psl(case(
            "PSL: timeout at the org domain",
            "x.walkfail.example",
            None,
            NOAUTH,
            TempError,
            None,
            DNone,
        )),
        // 4.10.1: empty sp is an sp tag that is not valid; no rua: no processing
        case(
            "empty sp, no rua: no processing",
            "emptysp.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        // 4.10.1: ...with a valid rua: act as p=none
        case(
            "empty sp with rua: p=none",
            "mail.emptysprua.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        // 4.10.1: an invalid np makes the whole record unusable without rua
        case(
            "invalid np, no rua: no processing",
            "badnp.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        // 4.10.1: an invalid np with rua: p=none, even for the domain itself
        case(
            "invalid np with rua: p=none",
            "badnprua.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        // 4.10.1: rua needs a syntactically valid URI (a bare address is not one)
        case(
            "invalid p, rua without a valid URI: no processing",
            "badrua.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        ),
        // 4.7 np: "If the np tag is absent, the policy specified by the sp
        // tag (if ...present) or the policy specified by the p tag ... MUST
        // be applied for non-existent subdomains."
        case(
            "np absent: non-existent subdomain takes sp",
            "ghost.org.example",
            None,
            NOAUTH,
            Fail,
            Some(PQuar),
            DQuar,
        ),
        case(
            "np and sp absent: non-existent subdomain takes p",
            "ghost.relaxed.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // 4.8: invalid adkim/aspf values fall back to the default r
        case(
            "invalid adkim: relaxed",
            "badalign.example",
            None,
            &["mail.badalign.example"],
            Pass,
            Some(PRej),
            DNone,
        ),
        // 4.8: ...for aspf too
        case(
            "invalid aspf: relaxed",
            "badalign.example",
            Some((SPass, "bounce.badalign.example")),
            NOAUTH,
            Pass,
            Some(PRej),
            DNone,
        ),
        // 4.8: an invalid t value is the default n: policy applied as is
        case(
            "invalid t: n",
            "badt.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // 4.8, 4.10 step 2: psd=yes is not psd=y: the walk goes on (default u)
        case(
            "invalid psd: u, walk continues",
            "x.sub.badpsd.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // 4.7: pct, rf, ri are not DMARC tags any more: ignored
        case(
            "removed tags pct/rf/ri ignored",
            "removed.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // 4.8 dmarc-sep, equals: WSP around ; and =, trailing ;
        case(
            "whitespace and trailing separator",
            "ws.example",
            None,
            &["mail.ws.example"],
            Fail,
            Some(PQuar),
            DQuar,
        ),
        // 4.10 step 2: non-DMARC1 strings are discarded before counting
        case(
            "one v=DMARC1 among look-alikes",
            "mixed2.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DRej,
        ),
        // 4.10.1 note: PSD policy is not used when the Org Domain has a record
        case(
            "org record beats the PSD's np",
            "ghost.giant.bank.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        // 4.10.1: a one-label Author Domain: its own record, p applies
        case(
            "one-label author: own PSD record gives p",
            "TLD.",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        ),
        // 4.10: a one-label Author Domain has no parent to walk to
        case(
            "one-label author without record: none",
            "localhost",
            None,
            NOAUTH,
            NoneR,
            None,
            DNone,
        ),
        // 5.3.6: a temporary error at the single-label end of the walk
        case(
            "SERVFAIL at a single-label parent: temperror",
            "a.b.failtld",
            None,
            NOAUTH,
            TempError,
            None,
            DNone,
        ),
        // 4.10.1 and RFC 7489 6.6.3 step 6 alike: no p and no rua.
        psl(case(
            "PSL: p absent, no rua: no processing",
            "nop2.example",
            None,
            NOAUTH,
            PermError,
            None,
            DNone,
        )),
        psl(case(
            "PSL: p absent with rua: p=none",
            "nop.example",
            None,
            NOAUTH,
            Fail,
            Some(PNone),
            DNone,
        )),
        // RFC 7489 6.3 pct is still honoured in PSL mode.
        psl(case(
            "PSL: pct=0 beside removed rf/ri",
            "removed.example",
            None,
            NOAUTH,
            Fail,
            Some(PRej),
            DQuar,
        )),
    ]
}

fn opts(mode: Mode) -> DmarcOptions {
    DmarcOptions {
        use_psl: mode == Mode::Psl,
        // Always outside a pct sample below 100.
        sample: || 99,
        ..DmarcOptions::default()
    }
}

#[tokio::test]
async fn rfc_9989_cases() {
    let z = zone();
    let mut failures = Vec::new();
    for c in cases() {
        let dkim: Vec<String> = c.dkim.iter().map(|d| d.to_string()).collect();
        let inputs = EvalInputs {
            author_domain: c.author,
            spf: c.spf,
            dkim_pass_domains: &dkim,
        };
        let o = dmarc::evaluate(&z, &inputs, &opts(c.mode)).await;
        if (o.result, o.policy, o.disposition) != (c.result, c.policy, c.disposition) {
            failures.push(format!(
                "{}: want {:?}/{:?}/{:?}, got {:?}/{:?}/{:?} ({})",
                c.what,
                c.result,
                c.policy,
                c.disposition,
                o.result,
                o.policy,
                o.disposition,
                o.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn eval(author: &str, dkim: &[&str]) -> dmarc::DmarcOutcome {
    let dkim: Vec<String> = dkim.iter().map(|d| d.to_string()).collect();
    let inputs = EvalInputs {
        author_domain: author,
        spf: None,
        dkim_pass_domains: &dkim,
    };
    dmarc::evaluate(&zone(), &inputs, &DmarcOptions::default()).await
}

#[tokio::test]
async fn deep_walk_makes_at_most_eight_queries_and_skips_the_middle() {
    let o = eval("a.b.c.d.e.f.g.h.i.j.deep.example", &[]).await;
    assert_eq!(o.policy_domain.as_deref(), Some("deep.example"));
    // author + 7 shortened names; the psd=n record at 11 labels is never seen.
    assert_eq!(o.dns_queries, 8);
}

// RFC 9989 §4.10.1: with no record at the Author Domain the walk starts at
// its "immediate parent"; a one-label name (`From: user@localhost`, a TLD)
// has none, and the walk stops "when there are no more labels" (§4.10 step
// 7), so `_dmarc.localhost` is the only query and the result is `none`.
#[tokio::test]
async fn one_label_author_asks_only_its_own_name() {
    let o = eval("localhost", &["localhost"]).await;
    assert_eq!(o.result, DmarcResult::None);
    assert_eq!(o.dns_queries, 1);
    // A one-label Author Domain with a record: that record, `p` (its own).
    let o = eval("tld", &[]).await;
    assert_eq!(o.policy_domain.as_deref(), Some("tld"));
    assert_eq!(o.policy, Some(Policy::None));
    assert_eq!(o.dns_queries, 1);
}

// RFC 9989 §4.10 step 2 and §4.10.1: a walk for a name under a PSD goes on
// to the single-label parent and finds its `psd=y` record there.
#[tokio::test]
async fn walk_reaches_a_single_label_psd_record() {
    let o = eval("a.b.c.tld", &[]).await;
    assert_eq!(o.policy_domain.as_deref(), Some("tld"));
    // a.b.c.tld, b.c.tld, c.tld, tld; then the existence test for np.
    assert_eq!(o.dns_queries, 5);
    assert_eq!(o.policy, Some(Policy::Reject));
}

#[tokio::test]
async fn walks_share_answers_within_a_message() {
    // Policy walk and the author's alignment walk ask the same names once.
    let o = eval("x.mid.org.example", &["y.org.example"]).await;
    assert_eq!(o.result, DmarcResult::Pass);
    assert_eq!(o.org_domain.as_deref(), Some("org.example"));
    // x.mid, mid, org, example; then y.org (org/example memoised).
    assert_eq!(o.dns_queries, 5, "{o:?}");
}

#[tokio::test]
async fn testing_flag_and_ar_entry() {
    let o = eval("testing.example", &[]).await;
    assert!(o.testing);
    // What production writes: local policy applies the lowered disposition.
    let inputs = authgate::policy::Inputs {
        dmarc: Some(&o),
        ..Default::default()
    };
    let d = authgate::policy::decide(&authgate::policy::Actions::default(), &inputs);
    let entry = dmarc::authres_entry(&o, d.applied, d.override_reason.as_deref());
    let ar = authgate::authres::build("mx", &[entry]);
    assert!(
        ar.starts_with(" mx;\r\n\tdmarc=fail (p=reject dis=quarantine testing mode t=y "),
        "{ar}"
    );
    assert!(ar.ends_with(") header.from=testing.example"), "{ar}");
}

#[tokio::test]
async fn pct_sample_inside_applies_the_full_policy() {
    let inputs = EvalInputs {
        author_domain: "pct.example",
        spf: None,
        dkim_pass_domains: &[],
    };
    let mut o = opts(Mode::Psl);
    o.sample = || 29;
    let out = dmarc::evaluate(&zone(), &inputs, &o).await;
    assert_eq!(out.disposition, Disposition::Reject);
}

fn from(values: &[&str]) -> Vec<Header> {
    let mut h: Vec<Header> = values
        .iter()
        .map(|v| Header::new("From", v, b"\r\n"))
        .collect();
    h.push(Header::new("Subject", "x", b"\r\n"));
    h
}

#[tokio::test]
async fn multi_from_follows_section_5_3_1() {
    let z = zone();
    let none: Vec<String> = Vec::new();
    let run = |values: &'static [&'static str], multi: MultiDomainFrom| {
        let z = &z;
        let none = &none;
        async move {
            let o = DmarcOptions {
                multi_domain_from: multi,
                ..DmarcOptions::default()
            };
            dmarc::check(z, &from(values), None, none, &o).await
        }
    };
    // One domain in several addresses: evaluated.
    let v = run(&["a@example.com, b@EXAMPLE.com"], MultiDomainFrom::Skip).await;
    assert_eq!(v.outcome.result, DmarcResult::Fail);
    assert!(v.from_problems.is_empty());
    // Different domains: not evaluated by default, flagged.
    let v = run(&["a@example.com, b@testing.example"], MultiDomainFrom::Skip).await;
    assert_eq!(v.outcome.result, DmarcResult::None);
    assert!(matches!(&v.from_problems[..], [FromProblem::MultipleDomains(d)] if d.len() == 2));
    // ...or evaluated with the strictest outcome when configured.
    let v = run(
        &["a@testing.example, b@example.com"],
        MultiDomainFrom::Strictest,
    )
    .await;
    assert_eq!(v.per_domain.len(), 2);
    assert_eq!(v.outcome.domain, "example.com");
    assert_eq!(v.outcome.disposition, Disposition::Reject);
    // Two From fields with one domain: evaluated, flagged.
    let v = run(&["a@example.com", "b@example.com"], MultiDomainFrom::Skip).await;
    assert_eq!(v.outcome.result, DmarcResult::Fail);
    assert_eq!(v.from_problems, vec![FromProblem::MultipleFields(2)]);
    // Empty, group-only and missing From: none, flagged; never a panic.
    for values in [
        &[""][..],
        &["undisclosed-recipients:;"][..],
        &[][..],
        &["<>"][..],
    ] {
        let v = run(values, MultiDomainFrom::Strictest).await;
        assert_eq!(v.outcome.result, DmarcResult::None, "{values:?}");
        assert!(!v.from_problems.is_empty(), "{values:?}");
    }
    // Group syntax with members.
    let v = run(
        &["team: a@relaxed.example, b@relaxed.example;"],
        MultiDomainFrom::Skip,
    )
    .await;
    assert_eq!(v.outcome.domain, "relaxed.example");
}
