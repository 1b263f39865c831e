//! The covenant as code: every validation error names its line; minimisation
//! never lets through a path the rule does not allow; the shipped pilots say
//! what their covenants intend.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use ketenpoort::config::{ConfigError, Source};
use ketenpoort::policy::fields::FieldPath;
use ketenpoort::policy::partners::Partners;
use ketenpoort::policy::{Direction, Pilot, PolicySet, PseudonymKeys, Query, RefusalReason};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::date;

const PARTNERS: &str = r#"
[[partner]]
id = "gemeente"
name = "Gemeente"
kind = "municipality"
oin = "00000099000000101000"
backend = "https://localhost:9001"
[[partner.service]]
name = "dossier"
path = "/dossiers/{vnummer}"
methods = ["GET"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
geboortedatum = "identity"
"adres.woonplaats" = "contact"
"adres.straat" = "contact"
"procedures[].status" = "procedure"
"procedures[].besluit" = "procedure"
"medisch.bijzonderheden" = "health"
"strafblad.samenvatting" = "criminal"

[[partner]]
id = "dtv"
name = "DT&V"
kind = "chain"
oin = "00000099000000201000"

[[partner]]
id = "ngo"
name = "NGO"
kind = "ngo"
kvk = "99000101"
mailbox = true
[[partner.service]]
name = "bericht"
methods = ["POST"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
onderwerp = "guidance"

[[partner]]
id = "onderzoek"
name = "Onderzoek"
kind = "research"
kvk = "99000201"

[[partner]]
id = "buitenstaander"
name = "Buitenstaander"
kind = "chain"
oin = "00000099000000999000"
"#;

const HEAD: &str = r#"[pilot]
id = "test"
name = "LVV Test"
partners = ["gemeente", "dtv", "ngo", "onderzoek"]
[pilot.covenant]
id = "LVV-TEST"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2027-12-31

[purposes.casusoverleg]
description = "Casusoverleg"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[purposes.medisch]
description = "Medisch traject"
legal_basis = "AVG art. 9(2)(h); UAVG art. 30"
retention_days = 365
special_categories = ["health"]

[purposes.monitoring]
description = "Monitoring"
legal_basis = "AVG art. 89"
retention_days = 1095
"#;

const RULE: &str = r#"
[[rules]]
id = "casus"
purpose = "casusoverleg"
service = "gemeente/dossier"
consumers = ["dtv", "ngo"]
response = ["vnummer", "naam", "adres.woonplaats", "procedures[].status"]
"#;

fn partners() -> Partners {
    Partners::from_source(&Source {
        file: "partners.toml".into(),
        text: PARTNERS.into(),
    })
    .expect("test partners validate")
}

fn pilot(text: &str) -> Result<Pilot, ConfigError> {
    Pilot::from_source(
        &Source {
            file: "pilots/test.toml".into(),
            text: text.into(),
        },
        &partners(),
        PARTNERS.as_bytes(),
    )
}

fn set(text: &str) -> PolicySet {
    let p = pilot(text).expect("valid");
    PolicySet {
        partners: Arc::new(partners()),
        pilots: [(p.id.to_string(), p)].into(),
    }
}

/// Asserts the file is refused at the line holding `marker`, with a reason
/// containing `reason`.
fn refused_at(text: &str, marker: &str, reason: &str) {
    let e = pilot(text).expect_err("must be refused");
    let line = text
        .lines()
        .position(|l| l.contains(marker))
        .expect("marker in text")
        + 1;
    assert_eq!(
        e.at.map(|a| a.0),
        Some(line),
        "wrong line for {reason:?}: {e}"
    );
    assert!(e.reason.contains(reason), "expected {reason:?} in: {e}");
    assert!(
        e.to_string()
            .starts_with(&format!("pilots/test.toml:{line}:")),
        "{e}"
    );
}

#[test]
fn the_base_file_validates() {
    let p = pilot(&format!("{HEAD}{RULE}")).unwrap();
    assert_eq!(p.rules.len(), 1);
    assert!(p.version.starts_with("sha256:"));
}

#[test]
fn unknown_partner_in_pilot_is_refused() {
    let t = HEAD.replace(r#""onderzoek"]"#, r#""onderzoek", "nobody"]"#);
    refused_at(&t, "nobody", "unknown partner 'nobody'");
}

#[test]
fn unknown_consumer_is_refused() {
    let t = format!(
        "{HEAD}{}",
        RULE.replace(r#"["dtv", "ngo"]"#, r#"["dtv", "spook"]"#)
    );
    refused_at(&t, "spook", "unknown partner 'spook'");
}

#[test]
fn unknown_provider_and_service_are_refused() {
    let t = format!(
        "{HEAD}{}",
        RULE.replace("gemeente/dossier", "spook/dossier")
    );
    refused_at(&t, "spook/dossier", "unknown partner 'spook'");
    let t = format!(
        "{HEAD}{}",
        RULE.replace("gemeente/dossier", "gemeente/spook")
    );
    refused_at(&t, "gemeente/spook", "unknown service 'spook'");
    let t = format!("{HEAD}{}", RULE.replace("gemeente/dossier", "gemeente"));
    refused_at(&t, "service = \"gemeente\"", "provider/service");
}

#[test]
fn unknown_field_is_refused() {
    let t = format!("{HEAD}{}", RULE.replace("\"naam\"", "\"bsn\""));
    refused_at(&t, "bsn", "unknown field 'bsn'");
    let t = format!("{HEAD}{}", RULE.replace("\"naam\"", "\"naam..x\""));
    refused_at(&t, "naam..x", "not a field path");
}

#[test]
fn unknown_purpose_is_refused() {
    let t = format!(
        "{HEAD}{}",
        RULE.replace(
            "purpose = \"casusoverleg\"",
            "purpose = \"nieuwsgierigheid\""
        )
    );
    refused_at(&t, "nieuwsgierigheid", "unknown purpose");
}

#[test]
fn partner_that_did_not_sign_is_refused() {
    let t = format!(
        "{HEAD}{}",
        RULE.replace(r#"["dtv", "ngo"]"#, r#"["dtv", "buitenstaander"]"#)
    );
    refused_at(&t, "buitenstaander", "did not sign");
    let t = format!(
        "{}{RULE}",
        HEAD.replace(
            r#"["gemeente", "dtv", "ngo", "onderzoek"]"#,
            r#"["dtv", "ngo", "onderzoek"]"#
        )
    );
    refused_at(&t, "gemeente/dossier", "provider 'gemeente' did not sign");
}

#[test]
fn special_category_field_needs_the_category_in_the_purpose() {
    let t = format!(
        "{HEAD}{}",
        RULE.replace("\"naam\"", "\"medisch.bijzonderheden\"")
    );
    refused_at(&t, "medisch.bijzonderheden", "holds health data");
    // A parent path that takes a health field along is refused too.
    let t = format!("{HEAD}{}", RULE.replace("\"naam\"", "\"medisch\""));
    refused_at(&t, "\"medisch\"", "holds health data");
    // In the medical track it is allowed.
    let ok = format!(
        "{HEAD}{}",
        RULE.replace("\"naam\"", "\"medisch.bijzonderheden\"")
            .replace("casusoverleg\"\nservice", "medisch\"\nservice")
    );
    pilot(&ok).unwrap();
}

#[test]
fn special_category_needs_a_basis_that_allows_it() {
    let t = HEAD.replace("AVG art. 9(2)(h); UAVG art. 30", "AVG art. 6(1)(e)");
    refused_at(
        &t,
        "special_categories = [\"health\"]",
        "does not cite GDPR art. 9(2)",
    );
    let t = HEAD.replace(
        "retention_days = 730\n",
        "retention_days = 730\nspecial_categories = [\"criminal\"]\n",
    );
    refused_at(&t, "[\"criminal\"]", "GDPR art. 10");
    let t = HEAD.replace(
        "special_categories = [\"health\"]",
        "special_categories = [\"contact\"]",
    );
    refused_at(&t, "[\"contact\"]", "not a special category");
}

#[test]
fn two_rules_for_the_same_purpose_service_and_consumer_are_refused() {
    let second = RULE
        .replace("id = \"casus\"", "id = \"casus-2\"")
        .replace(r#"["dtv", "ngo"]"#, r#"["onderzoek", "dtv"]"#);
    let t = format!("{HEAD}{RULE}{second}");
    let line = t
        .lines()
        .position(|l| l.contains(r#"["onderzoek", "dtv"]"#))
        .unwrap()
        + 1;
    let e = pilot(&t).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(line), "{e}");
    assert!(
        e.reason
            .contains("one rule per purpose, service and consumer"),
        "{e}"
    );
}

#[test]
fn duplicate_rule_id_is_refused() {
    let second = RULE.replace(r#"["dtv", "ngo"]"#, r#"["onderzoek"]"#);
    let t = format!("{HEAD}{RULE}{second}");
    let e = pilot(&t).unwrap_err();
    assert!(e.reason.contains("used twice"), "{e}");
}

#[test]
fn bad_dates_are_refused() {
    let t = HEAD.replace("valid_until = 2027-12-31", "valid_until = 2018-12-31");
    refused_at(&t, "valid_until", "before valid_from");
    let t = HEAD.replace(
        "valid_from = 2019-01-01",
        "valid_from = 2019-01-01T10:00:00Z",
    );
    refused_at(&t, "valid_from", "must be a date");
    let t = HEAD.replace("valid_from = 2019-01-01", "valid_from = \"1 januari 2019\"");
    refused_at(&t, "valid_from", "");
    let t = HEAD.replace("valid_from = 2019-01-01", "valid_from = 2019-02-30");
    assert!(pilot(&format!("{t}{RULE}")).is_err());
}

#[test]
fn pilot_id_must_match_file_name_and_unknown_keys_are_refused() {
    refused_at(
        &HEAD.replace("id = \"test\"", "id = \"anders\""),
        "anders",
        "file name",
    );
    let t = format!("{HEAD}{}", RULE.replace("response =", "antwoord ="));
    refused_at(&t, "antwoord", "unknown field `antwoord`");
}

#[test]
fn transform_errors_are_refused() {
    let t = format!(
        "{HEAD}{RULE}transforms = [{{ field = \"geboortedatum\", generalise = \"year\" }}]\n"
    );
    refused_at(&t, "transforms", "does not allow");
    let t = format!("{HEAD}{RULE}transforms = [{{ field = \"naam\", generalise = \"week\" }}]\n");
    refused_at(&t, "transforms", "month");
    let t = format!("{HEAD}{RULE}transforms = [{{ field = \"naam\" }}]\n");
    refused_at(&t, "transforms", "exactly one of");
}

#[test]
fn mailbox_service_answers_nothing() {
    let rule = "\n[[rules]]\nid = \"b\"\npurpose = \"casusoverleg\"\nservice = \"ngo/bericht\"\nconsumers = [\"gemeente\"]\nresponse = [\"vnummer\"]\n";
    refused_at(&format!("{HEAD}{rule}"), "id = \"b\"", "mailbox");
    let ok = rule.replace(
        "response = [\"vnummer\"]",
        "request = [\"vnummer\", \"onderwerp\"]",
    );
    pilot(&format!("{HEAD}{ok}")).unwrap();
}

fn q<'a>(consumer: &'a str, purpose: &'a str) -> Query<'a> {
    Query {
        pilot: "test",
        consumer,
        provider: "gemeente",
        service: "dossier",
        purpose,
        today: date!(2024 - 06 - 01),
        call: None,
    }
}

#[test]
fn decide_allows_minimises_and_refuses_with_reasons() {
    let s = set(&format!("{HEAD}{RULE}"));
    let keys = PseudonymKeys::default();
    let doc = json!({"vnummer": "5550001234", "naam": "Test Persoon", "geboortedatum": "1990-01-01",
        "adres": {"woonplaats": "Utrecht", "straat": "Teststraat 1"},
        "procedures": [{"status": "lopend", "besluit": "afwijzing"}],
        "medisch": {"bijzonderheden": "synthetisch"}});
    let d = s.decide(&q("dtv", "casusoverleg"), Direction::Response, &doc, &keys);
    assert!(d.outcome.is_ok());
    assert_eq!(
        d.minimised.unwrap(),
        json!({"vnummer": "5550001234", "naam": "Test Persoon", "adres": {"woonplaats": "Utrecht"},
               "procedures": [{"status": "lopend"}]})
    );
    assert_eq!(d.rule_id.as_deref(), Some("casus"));
    assert!(d.policy_version.unwrap().starts_with("sha256:"));
    assert_eq!(d.legal_basis.as_deref(), Some("AVG art. 6(1)(e)"));
    assert!(d.withheld.iter().any(|w| w == "medisch.bijzonderheden"));
    assert!(d.withheld.iter().any(|w| w == "adres.straat"));
    // The request direction of this rule allows nothing.
    let d = s.decide(&q("dtv", "casusoverleg"), Direction::Request, &doc, &keys);
    assert_eq!(d.minimised.unwrap(), json!({}));

    let reason = |q: Query| {
        s.decide(&q, Direction::Response, &doc, &keys)
            .outcome
            .unwrap_err()
            .reason
    };
    assert_eq!(
        reason(q("onderzoek", "casusoverleg")),
        RefusalReason::NoRule
    );
    assert_eq!(
        reason(q("buitenstaander", "casusoverleg")),
        RefusalReason::PartnerNotInPilot
    );
    assert_eq!(reason(q("dtv", "medisch")), RefusalReason::NoRule);
    assert_eq!(
        reason(q("dtv", "nieuwsgierigheid")),
        RefusalReason::UnknownPurpose
    );
    assert_eq!(
        reason(Query {
            pilot: "elders",
            ..q("dtv", "casusoverleg")
        }),
        RefusalReason::UnknownPilot
    );
    assert_eq!(
        reason(Query {
            provider: "spook",
            ..q("dtv", "casusoverleg")
        }),
        RefusalReason::UnknownProvider
    );
    assert_eq!(
        reason(Query {
            service: "spook",
            ..q("dtv", "casusoverleg")
        }),
        RefusalReason::UnknownService
    );
    assert_eq!(
        reason(Query {
            today: date!(2028 - 01 - 01),
            ..q("dtv", "casusoverleg")
        }),
        RefusalReason::CovenantExpired
    );
    assert_eq!(
        reason(Query {
            today: date!(2018 - 12 - 31),
            ..q("dtv", "casusoverleg")
        }),
        RefusalReason::CovenantNotYetValid
    );
    // The last and first day of the covenant count.
    assert!(
        s.authorise(&Query {
            today: date!(2027 - 12 - 31),
            ..q("dtv", "casusoverleg")
        })
        .is_ok()
    );
    assert!(
        s.authorise(&Query {
            today: date!(2019 - 01 - 01),
            ..q("dtv", "casusoverleg")
        })
        .is_ok()
    );
}

// ---------------------------------------------------------------------------
// Properties

const NAMES: &[&str] = &[
    "vnummer",
    "naam",
    "geboortedatum",
    "adres",
    "woonplaats",
    "straat",
    "procedures",
    "status",
    "besluit",
    "medisch",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9 -]{0,12}".prop_map(Value::String),
        Just(json!("1990-05-17")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// The schema the properties minimise against: leaves, lists of scalars and
/// lists of objects, as a service declares them.
const DECLARED: &[&str] = &[
    "vnummer",
    "naam",
    "geboortedatum",
    "adres.woonplaats",
    "adres.straat",
    "procedures[].status",
    "procedures[].besluit",
    "medisch.status[]",
];

/// Allowed paths: declared leaves or their ancestors, in any mix.
fn arb_paths() -> impl Strategy<Value = Vec<String>> {
    let path = prop::sample::select(vec![
        "vnummer",
        "naam",
        "geboortedatum",
        "adres",
        "adres.woonplaats",
        "adres.straat",
        "procedures",
        "procedures[].status",
        "procedures[].besluit",
        "medisch",
        "medisch.status[]",
    ])
    .prop_map(str::to_string);
    prop::collection::vec(path, 0..5)
}

/// Every leaf path of a document in declared form: `[]` after a member that
/// holds a list, so a scalar, a list of scalars and a list of objects differ.
fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                leaf_paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn declared_allowed(allowed: &[FieldPath]) -> Vec<String> {
    DECLARED
        .iter()
        .filter(|d| {
            let d = FieldPath::parse(d).unwrap();
            allowed.iter().any(|a| a.covers(&d))
        })
        .map(|d| d.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// For every rule and any document, every delivered leaf is a declared,
    /// allowed path with the declared shape; nothing from an undeclared or
    /// wrongly shaped position leaves; minimising twice changes nothing.
    #[test]
    fn only_declared_allowed_leaves_of_the_declared_shape_leave(
        doc in arb_json().prop_filter("a document is an object", Value::is_object),
        allowed in arb_paths(),
    ) {
        use ketenpoort::policy::minimise::{minimise, Tree};
        let paths: Vec<FieldPath> = allowed.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let declared: Vec<FieldPath> = DECLARED.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let ok = declared_allowed(&paths);
        let tree = Tree::new(&declared, &paths, &[]);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let once = minimise(&doc, &tree, &key);
        let mut leaves = Vec::new();
        leaf_paths(&once.value, "", &mut leaves);
        for leaf in &leaves {
            // An emptied parent (`adres: {}`) has no leaf; a list leaf may be empty.
            prop_assert!(ok.iter().any(|d| d == leaf) || leaf.is_empty(),
                "leaf {} is not a declared, allowed path of {:?}", leaf, allowed);
        }
        for d in once.disclosed.iter().chain(&once.withheld) {
            prop_assert!(DECLARED.iter().any(|x| x == d) || ["adres", "procedures[]", "medisch"].contains(&d.as_str()),
                "{} named, but it is no declared path", d);
        }
        for d in &once.disclosed {
            prop_assert!(ok.iter().any(|o| o == d), "{} disclosed without a rule", d);
        }
        let twice = minimise(&once.value, &tree, &key);
        prop_assert_eq!(&twice.value, &once.value);
        prop_assert!(twice.withheld.is_empty() && twice.undeclared == 0,
            "second pass withheld {:?} and {} undeclared", twice.withheld, twice.undeclared);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Date transforms keep minimisation idempotent; pseudonyms are keyed on
    /// every pass (a pseudonym is never taken over as it came).
    #[test]
    fn transforms_stay_inside_the_declared_allowed_paths(
        doc in arb_json().prop_filter("a document", Value::is_object),
        allowed in arb_paths(),
        picks in prop::collection::vec((0usize..8, 1u8..3), 0..3),
    ) {
        use ketenpoort::policy::minimise::{minimise, Granularity, Transform, Tree};
        let paths: Vec<FieldPath> = allowed.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let declared: Vec<FieldPath> = DECLARED.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let transforms: Vec<(FieldPath, Transform)> = picks
            .iter()
            .map(|(i, k)| (declared[*i].clone(), match k {
                1 => Transform::Generalise(Granularity::Year),
                _ => Transform::Generalise(Granularity::Month),
            }))
            .collect();
        let tree = Tree::new(&declared, &paths, &transforms);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let once = minimise(&doc, &tree, &key);
        let twice = minimise(&once.value, &tree, &key);
        prop_assert_eq!(&twice.value, &once.value);
        let ok = declared_allowed(&paths);
        let mut leaves = Vec::new();
        leaf_paths(&once.value, "", &mut leaves);
        for leaf in leaves.iter().filter(|l| !l.is_empty()) {
            prop_assert!(ok.contains(leaf), "leaf {} not allowed", leaf);
        }
    }
}

// ---------------------------------------------------------------------------
// The shipped pilots

fn shipped() -> (PolicySet, PseudonymKeys) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let s = PolicySet::load(&root.join("partners.toml"), &root.join("pilots"))
        .expect("shipped config validates");
    (s, PseudonymKeys::default())
}

fn shipped_q<'a>(
    pilot: &'a str,
    consumer: &'a str,
    provider: &'a str,
    service: &'a str,
    purpose: &'a str,
) -> Query<'a> {
    Query {
        pilot,
        consumer,
        provider,
        service,
        purpose,
        today: date!(2026 - 11 - 28),
        call: None,
    }
}

#[test]
fn shipped_pilots_are_the_five() {
    let (s, _) = shipped();
    let ids: Vec<_> = s.pilots.keys().cloned().collect();
    assert_eq!(
        ids,
        [
            "amsterdam",
            "eindhoven",
            "groningen",
            "rotterdam",
            "utrecht"
        ]
    );
}

#[test]
fn shipped_flows_are_allowed_or_refused_as_the_covenant_intends() {
    let (s, _) = shipped();
    let ok = |q: Query| s.authorise(&q).map(|_| ()).map_err(|r| r.reason);
    // Case consultation: DT&V's departure dossier to the municipality and the NGOs.
    assert_eq!(
        ok(shipped_q(
            "utrecht",
            "gemeente-utrecht",
            "dtv",
            "vertrekdossier",
            "casusoverleg"
        )),
        Ok(())
    );
    assert_eq!(
        ok(shipped_q(
            "groningen",
            "ngo-inlia",
            "dtv",
            "vertrekdossier",
            "casusoverleg"
        )),
        Ok(())
    );
    // Health data only in the medical track: the casusoverleg rule carries none.
    let g = s
        .authorise(&shipped_q(
            "utrecht",
            "gemeente-utrecht",
            "dtv",
            "vertrekdossier",
            "casusoverleg",
        ))
        .unwrap();
    for p in g.rule.allowed(Direction::Response) {
        assert!(
            !g.rule
                .service
                .categories_of(p)
                .iter()
                .any(|c| c.is_special()),
            "{p}"
        );
    }
    assert_eq!(
        ok(shipped_q(
            "utrecht",
            "gemeente-utrecht",
            "dtv",
            "vertrekdossier",
            "medisch"
        )),
        Ok(())
    );
    // An NGO of another pilot gets nothing here.
    assert_eq!(
        ok(shipped_q(
            "utrecht",
            "ngo-inlia",
            "dtv",
            "vertrekdossier",
            "casusoverleg"
        )),
        Err(RefusalReason::PartnerNotInPilot)
    );
    // The programme office signed but receives nothing personal.
    for pilot in s.pilots.values() {
        for rule in &pilot.rules {
            assert!(
                !rule.consumers.contains(&"programmabureau".to_string()),
                "{}",
                rule.id
            );
        }
    }
    // Researchers get the monitoring rule only, pseudonymised, dates generalised.
    assert_eq!(
        ok(shipped_q(
            "eindhoven",
            "onderzoek",
            "gemeente-eindhoven",
            "lvv-dossier",
            "casusoverleg"
        )),
        Err(RefusalReason::NoRule)
    );
    // Rotterdam's covenant has ended.
    assert_eq!(
        ok(shipped_q(
            "rotterdam",
            "gemeente-rotterdam",
            "dtv",
            "vertrekdossier",
            "casusoverleg"
        )),
        Err(RefusalReason::CovenantExpired)
    );
    // Criminal data only where the pilot's admission purpose carries it.
    assert_eq!(
        ok(shipped_q(
            "groningen",
            "gemeente-groningen",
            "avim",
            "identificatie",
            "toelating"
        )),
        Ok(())
    );
    assert_eq!(
        ok(shipped_q(
            "utrecht",
            "gemeente-utrecht",
            "avim",
            "identificatie",
            "toelating"
        )),
        Err(RefusalReason::NoRule)
    );
}

#[test]
fn researchers_never_see_a_vnummer_or_a_full_date() {
    let (s, keys) = shipped();
    for pilot in ["groningen", "utrecht", "amsterdam", "eindhoven"] {
        let g = format!("gemeente-{pilot}");
        let q = shipped_q(pilot, "onderzoek", &g, "lvv-dossier", "monitoring");
        let doc = json!({"vnummer": "5550001234", "naam": "Test Persoon", "geboortedatum": "1990-05-17",
            "nationaliteit": "XX", "opvang": {"startdatum": "2019-04-02", "locatie": "A"},
            "uitstroom": {"datum": "2020-01-15", "soort": "terugkeer"}, "gezondheid": {"ggz_indicatie": "ja"}});
        let d = s.decide(&q, Direction::Response, &doc, &keys);
        let out = serde_json::to_string(&d.minimised.expect("allowed")).unwrap();
        for secret in [
            "5550001234",
            "Test Persoon",
            "1990-05-17",
            "2019-04-02",
            "2020-01-15",
            "ggz",
            "\"A\"",
        ] {
            assert!(!out.contains(secret), "{pilot}: {secret} in {out}");
        }
        assert!(out.contains("\"1990\"") && out.contains("ps1:"), "{out}");
    }
}

#[test]
fn pseudonyms_differ_across_pilots_and_purposes_but_not_within() {
    let (s, _) = shipped();
    let mut secrets = std::collections::HashMap::new();
    secrets.insert("utrecht".to_string(), [1u8; 32]);
    secrets.insert("groningen".to_string(), [2u8; 32]);
    let keys = PseudonymKeys::new(secrets);
    let doc = json!({"vnummer": "5550001234"});
    let pseudo = |pilot: &str| {
        let g = format!("gemeente-{pilot}");
        let d = s.decide(
            &shipped_q(pilot, "onderzoek", &g, "lvv-dossier", "monitoring"),
            Direction::Response,
            &doc,
            &keys,
        );
        d.minimised.unwrap()["vnummer"].clone()
    };
    assert_eq!(pseudo("utrecht"), pseudo("utrecht"));
    assert_ne!(pseudo("utrecht"), pseudo("groningen"));
    let k = |purpose| keys.key("utrecht", purpose);
    assert_ne!(
        ring::hmac::sign(&k("monitoring"), b"x").as_ref(),
        ring::hmac::sign(&k("casusoverleg"), b"x").as_ref()
    );
}

/// Keys are derived once per (pilot, purpose) when the policy loads. A
/// pseudonym links a researcher's records over years, so the key made ahead
/// must be the key derived on demand, and both the key of the first release.
#[test]
fn pseudonym_keys_made_ahead_are_the_keys_derived_on_demand() {
    let (s, _) = shipped();
    let secrets: std::collections::HashMap<String, [u8; 32]> =
        s.pilots.keys().map(|p| (p.clone(), [7u8; 32])).collect();
    let on_demand = PseudonymKeys::new(secrets.clone());
    let ahead = PseudonymKeys::new(secrets).derived_for(&s);
    let mut pairs = 0;
    for pilot in s.pilots.values() {
        for purpose in pilot.purposes.keys() {
            let k = ahead.key(&pilot.id, purpose);
            assert!(matches!(k, std::borrow::Cow::Borrowed(_)), "{purpose}");
            assert_eq!(
                ring::hmac::sign(&k, b"5550001234").as_ref(),
                ring::hmac::sign(&on_demand.key(&pilot.id, purpose), b"5550001234").as_ref()
            );
            pairs += 1;
        }
    }
    assert!(pairs > 5, "{pairs}");
    // The derivation of the first release: HMAC(HMAC(secret, label), v-nummer).
    let base = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let label = ring::hmac::sign(&base, b"ketenpoort/pseudonym/v1/utrecht/casusoverleg");
    let first = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, label.as_ref());
    assert_eq!(
        ring::hmac::sign(&first, b"5550001234").as_ref(),
        ring::hmac::sign(&ahead.key("utrecht", "casusoverleg"), b"5550001234").as_ref()
    );
}

#[test]
fn diff_shows_flows_that_appear_and_disappear() {
    use ketenpoort::policy::diff::{Change, diff};
    let a = set(&format!("{HEAD}{RULE}"));
    let b = set(&format!(
        "{HEAD}{}",
        RULE.replace("\"naam\", ", "\"geboortedatum\", ")
            .replace(r#"["dtv", "ngo"]"#, r#"["dtv", "onderzoek"]"#)
    ));
    let changes = diff(&a, &b);
    let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Removed(f, _) if f.to == "ngo")),
        "{text:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Added(f, _) if f.to == "onderzoek")),
        "{text:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Changed { flow, gained, lost }
            if flow.to == "dtv" && gained.contains("geboortedatum") && lost.contains("naam"))),
        "{text:?}"
    );
    assert!(diff(&a, &a).is_empty());
}

/// Attack: a partner named like the gateway itself. The gateway's own
/// records (officers' look-ups of persons, strangers' refusals, retention)
/// carry `ketenpoort` as sender or recipient, and a partner sees the
/// records it is party to (Logboek read API, its officer's console), so a
/// partner of that id would see who was looked up and when.
#[test]
fn the_gateways_own_name_is_no_partner_id() {
    let text = format!(
        "{PARTNERS}\n[[partner]]\nid = \"ketenpoort\"\nname = \"Gateway\"\nkind = \"chain\"\noin = \"00000099000000999001\"\n"
    );
    let err = Partners::from_source(&Source {
        file: "partners.toml".into(),
        text,
    })
    .expect_err("a partner named like the gateway must be refused")
    .to_string();
    assert!(err.contains("gateway's own name"), "{err}");
}
