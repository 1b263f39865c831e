//! Administrators change a pilot's covenant through the console: validated
//! as at load, shown as a flow diff, applied to the running gateway, recorded;
//! the covenant as a picture; the DPIA annex held to the running policy.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::Method;
use serde_json::json;

async fn console(f: &Fixture, method: Method, path: &str, token: &str, body: &str) -> Reply {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

fn user(
    f: &Fixture,
    name: &str,
    role: ketenpoort::console::users::Role,
    pilot: Option<&str>,
) -> String {
    let t = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        name,
        role,
        None,
        pilot.map(String::from),
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    t
}

/// The proef pilot with one more rule: ngo-pinned may read DT&V's list.
fn with_new_rule(text: &str) -> String {
    format!(
        "{text}\n[[rules]]\nid = \"proef-lijst-ngo\"\npurpose = \"casusoverleg\"\nservice = \"dtv/lijst\"\nconsumers = [\"ngo-pinned\"]\nresponse = [\"vnummer\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_admin_changes_a_covenant_safely() {
    use ketenpoort::console::users::Role;
    let f = fixture().await;
    let admin = user(&f, "beheer", Role::PolicyAdmin, None);
    let admin_oud = user(&f, "beheer-oud", Role::PolicyAdmin, Some("oud"));
    let officer = user(&f, "fg", Role::PrivacyOfficer, None);

    let r = console(&f, Method::GET, "/api/v1/pilots", &admin, "").await;
    let pilots = r.json()["pilots"].as_array().unwrap().clone();
    assert_eq!(
        pilots
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["oud", "proef"]
    );
    let r = console(&f, Method::GET, "/api/v1/pilots", &admin_oud, "").await;
    let editable: Vec<bool> = r.json()["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["editable"].as_bool().unwrap())
        .collect();
    assert_eq!(editable, [true, false]);

    let r = console(&f, Method::GET, "/api/v1/pilots/proef/policy", &admin, "").await;
    assert_eq!(r.status, 200);
    let policy = r.json();
    let text = policy["file"].as_str().unwrap().to_string();
    let v1 = policy["version"].as_str().unwrap().to_string();
    assert!(
        policy["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "proef-casus")
    );

    // Before: ngo-pinned may not read the list.
    let path = "/v1/pilots/proef/services/dtv/lijst/a";
    let purpose = [("ketenpoort-purpose", "casusoverleg")];
    let r = f
        .ngo_pinned
        .send(Method::GET, path, &purpose, None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Only policy admins change, and only their own pilot.
    let new = with_new_rule(&text);
    assert_eq!(
        console(
            &f,
            Method::PUT,
            "/api/v1/pilots/proef/policy",
            &officer,
            &new
        )
        .await
        .status,
        403
    );
    assert_eq!(
        console(
            &f,
            Method::PUT,
            "/api/v1/pilots/proef/policy",
            &admin_oud,
            &new
        )
        .await
        .status,
        403
    );
    assert_eq!(
        console(
            &f,
            Method::PUT,
            "/api/v1/pilots/proef/policy",
            "kp_nope",
            &new
        )
        .await
        .status,
        401
    );

    // An invalid file changes nothing and says which line.
    let bad = new.replace(
        "consumers = [\"ngo-pinned\"]",
        "consumers = [\"ngo-onbekend\"]",
    );
    let line = bad
        .lines()
        .position(|l| l.contains("ngo-onbekend"))
        .unwrap()
        + 1;
    let r = console(&f, Method::PUT, "/api/v1/pilots/proef/policy", &admin, &bad).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json()["line"], line, "{:?}", r.json());
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("unknown partner 'ngo-onbekend'")
    );
    assert_eq!(
        std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap(),
        text
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"].version,
        v1
    );

    // A dry run shows the new flow and applies nothing.
    let r = console(
        &f,
        Method::PUT,
        "/api/v1/pilots/proef/policy?dry_run=true",
        &admin,
        &new,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let changes = r.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0]
            .as_str()
            .unwrap()
            .starts_with("+ proef [casusoverleg] dtv → ngo-pinned via dtv/lijst")
    );
    assert_eq!(r.json()["applied"], false);
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"].version,
        v1
    );

    // Applied: the running gateway allows it, and the change is in the log.
    let r = console(&f, Method::PUT, "/api/v1/pilots/proef/policy", &admin, &new).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["applied"], true);
    let record = r.json()["record"].as_u64().unwrap();
    let rec = record_of(&f, record).await;
    assert_eq!(rec.entry.kind, ketenpoort::audit::RecordKind::PolicyChange);
    assert_eq!(rec.entry.sender, "console:beheer");
    assert_eq!(rec.entry.reason, format!("replaces {v1}"));
    // It opens a flow, so it waits for both its ends to sign; the console
    // says for whom and which flow, and the old version stays in force.
    let covenant = r.json()["covenant"].clone();
    assert_eq!(covenant["in_force"], false, "{covenant:?}");
    assert_eq!(covenant["message"], "waiting for: dtv, ngo-pinned");
    assert!(
        covenant["flows"]["ngo-pinned"][0]
            .as_str()
            .unwrap()
            .contains("dtv → ngo-pinned via dtv/lijst"),
        "{covenant:?}"
    );
    let r = f
        .ngo_pinned
        .send(Method::GET, path, &purpose, None)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "not before the partners signed");
    let version = covenant["version"].as_str().unwrap().to_string();
    let dtv = f.pki.oin_cert(DTV_OIN);
    for (cert, client) in [
        (&dtv, f.pki.client(f.gw.addr, &dtv)),
        (
            &f.pki.ngo_pinned,
            f.pki.client(f.gw.addr, &f.pki.ngo_pinned),
        ),
    ] {
        let jws = ketenpoort::covenant::jws::sign_pem(
            &ketenpoort::covenant::jws::acceptance("proef", &version),
            &cert.cert_pem,
            &cert.key_pem,
        )
        .unwrap();
        let hex = ketenpoort::policy::terms::version_hex(&version);
        let r = client
            .send_bytes(
                Method::POST,
                &format!("/v1/pilots/proef/covenant/versions/{hex}/signatures"),
                "application/jose",
                jws.into(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{:?}", r.json());
    }
    let r = f
        .ngo_pinned
        .send(Method::GET, path, &purpose, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap(),
        new
    );

    // History: the first version and the change, with its flow diff.
    let r = console(
        &f,
        Method::GET,
        "/api/v1/pilots/proef/history",
        &officer,
        "",
    )
    .await;
    let versions = r.json()["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["by"], "beheer");
    // The history shows who signed what.
    let signed: Vec<&str> = versions[0]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["partner"].as_str().unwrap())
        .collect();
    assert_eq!(signed, ["ngo-pinned", "dtv"], "{:?}", versions[0]);
    assert!(
        versions[0]["changes"][0]
            .as_str()
            .unwrap()
            .contains("ngo-pinned")
    );
    assert_eq!(versions[1]["version"], v1.as_str());
    let r = console(&f, Method::GET, "/api/v1/pilots/proef/policy", &admin, "").await;
    assert_eq!(r.json()["last_changed"]["by"], "beheer");

    // Explain, as `policy explain` does.
    let body = json!({"from": "dtv", "to": "gemeente", "service": "dtv/dossier", "purpose": "casusoverleg",
                      "document": {"vnummer": "5550001234", "medisch": {"bijzonderheden": "x"}}});
    let r = console(
        &f,
        Method::POST,
        "/api/v1/pilots/proef/policy/explain",
        &admin,
        &body.to_string(),
    )
    .await;
    let text = r.json()["explanation"].as_str().unwrap().to_string();
    assert!(
        text.contains("ALLOWED by rule proef-casus") && text.contains("withheld:  medisch"),
        "{text}"
    );
    f.gw.stop().await;
}

async fn record_of(f: &Fixture, id: u64) -> ketenpoort::audit::Record {
    let view = f.gw.gateway.audit.view().clone();
    tokio::task::spawn_blocking(move || view.record(id).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_picture_is_xml_and_names_every_partner() {
    let f = fixture().await;
    let t = user(
        &f,
        "fg",
        ketenpoort::console::users::Role::PrivacyOfficer,
        None,
    );
    let r = console(&f, Method::GET, "/api/v1/pilots/proef/flows.svg", &t, "").await;
    assert_eq!(r.content_type, "image/svg+xml");
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let partners: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-partner"))
        .collect();
    let pilot = &f.gw.gateway.policy.current().policy.pilots["proef"];
    for p in &pilot.partners {
        assert!(partners.contains(&p.as_str()), "{p} not drawn");
    }
    f.gw.stop().await;
}

#[test]
fn shipped_flow_pictures_mark_special_categories() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let set =
        ketenpoort::policy::PolicySet::load(&root.join("partners.toml"), &root.join("pilots"))
            .unwrap();
    for pilot in set.pilots.values() {
        let svg = ketenpoort::policy::graph::svg(&set, pilot);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let drawn: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-partner"))
            .collect();
        for p in &pilot.partners {
            assert!(drawn.contains(&p.as_str()), "{}: {p}", pilot.id);
        }
        assert!(
            svg.contains("⚠health"),
            "{}: the medical track is marked",
            pilot.id
        );
        let dot = ketenpoort::policy::graph::dot(&set, pilot);
        assert!(dot.starts_with("digraph") && dot.contains("color=red"));
    }
}

#[test]
fn the_committed_dpia_annex_matches_the_policy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = ketenpoort::policy::PolicySet::load(
        &root.join("config/partners.toml"),
        &root.join("config/pilots"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ketenpoort::dpia::render(&set, dir.path()).unwrap();
    assert_eq!(files.len(), set.pilots.len() * 3 + 1);
    for f in files {
        let name = f.file_name().unwrap();
        let committed =
            std::fs::read_to_string(root.join("dpia/annex").join(name)).unwrap_or_else(|_| {
                panic!(
                    "dpia/annex/{} is missing: run `ketenpoort dpia render`",
                    name.to_string_lossy()
                )
            });
        assert!(
            committed == std::fs::read_to_string(&f).unwrap(),
            "dpia/annex/{} no longer matches the policy: run `ketenpoort dpia render` and commit",
            name.to_string_lossy()
        );
    }
    let utrecht = std::fs::read_to_string(root.join("dpia/annex/utrecht.md")).unwrap();
    for must in [
        "## Purposes, legal bases and retention",
        "## Recipients and categories of data",
        "## Special categories",
        "LVV-UTR-IUC",
        "programmabureau",
    ] {
        assert!(utrecht.contains(must), "{must}");
    }
}
