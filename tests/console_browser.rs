//! The console page in a real browser: headless Chromium driven over the
//! WebDriver protocol (chromedriver), as a privacy officer would use it: a
//! Dutch browser gets the page in Dutch; the latest records show on opening;
//! a V-nummer search and the access report never put the V-nummer in a URL
//! (every URL the browser asked for is read from its network log); a
//! record's inclusion proof is checked in the browser; axe-core finds no
//! WCAG 2.1 A/AA violation in any view; one pass with the keyboard alone
//! reaches search and report. An administrator edits a rule and applies it.
//!
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver)
//! and `npm` (to fetch axe-core once into the target dir); scripts/test.sh
//! installs them. Outside CI, a machine without them skips this test with a
//! message; in CI (CI=true) it fails instead.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::browser::Driver;
use common::fixture::*;
use hyper::Method;
use serde_json::json;

const V: &str = "5550001234";
/// Exchanges about `V` (and a list call) for the records to show.
async fn exchanges(f: &Fixture) {
    for (client, path) in [
        (
            &f.gemeente,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            "/v1/pilots/proef/services/dtv/lijst/a".to_string(),
        ),
    ] {
        let r = client
            .send(
                Method::GET,
                &path,
                &[("ketenpoort-purpose", "casusoverleg")],
                None,
            )
            .await
            .unwrap();
        assert!(r.status.is_success() || r.status == 403);
    }
}

fn officer(f: &Fixture, name: &str) -> String {
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        name,
        ketenpoort::console::users::Role::PrivacyOfficer,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    token
}

async fn screenshot(driver: &Driver, name: &str) {
    let png = driver.cmd(Method::GET, "/screenshot", None).await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&out, bytes).unwrap();
    eprintln!("screenshot: {}", out.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dutch_officer_sees_latest_records_searches_checks_a_proof_and_reads_the_report() {
    let Some(driver) = Driver::start("nl-NL,nl").await else {
        return;
    };
    let f = fixture().await;
    exchanges(&f).await;
    let token = officer(&f, "fg-test");
    let console = format!("https://127.0.0.1:{}/", f.gw.console.port());
    driver
        .cmd(Method::POST, "/url", Some(json!({"url": console})))
        .await;
    // A Dutch browser, the first time: Dutch.
    driver
        .until(
            "return document.getElementById('token').offsetParent !== null",
            "the login form",
        )
        .await;
    assert_eq!(
        driver.script("return document.documentElement.lang").await,
        "nl"
    );
    assert_eq!(
        driver
            .script("return document.getElementById('login-h').textContent")
            .await,
        "Inloggen"
    );
    driver.axe("login").await;
    // axe does find what it should: a field without a label.
    driver
        .script("const i = document.createElement('input'); i.id = 'kp-bare'; document.getElementById('login-form').appendChild(i); return true")
        .await;
    let found = driver.axe_violations().await;
    assert!(
        found
            .iter()
            .any(|v| v.as_str().unwrap().starts_with("label")),
        "{found:?}"
    );
    driver
        .script("document.getElementById('kp-bare').remove(); return true")
        .await;
    driver.log_in(f.gw.console, &token).await;

    // The latest records on opening, newest first, without a search.
    let ids = driver
        .until(
            "const r = [...document.querySelectorAll('#rows tr.rec button.open')].map((b) => Number(b.textContent)); return r.length >= 2 ? r : null",
            "the latest records",
        )
        .await;
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let text = driver
        .script("return document.getElementById('rows').innerText")
        .await;
    assert!(
        text.as_str().unwrap().contains("Gemeente Proef"),
        "full names: {text}"
    );
    driver.axe("records").await;

    // A search by person, with a filter: the filter goes into the address
    // bar, the V-nummer does not.
    driver.type_into("#q-subject", V).await;
    driver.type_into("#q-pilot", "proef").await;
    driver.click("#search-btn").await;
    driver
        .until(
            "return document.getElementById('count').textContent.includes('Gevonden')",
            "search results",
        )
        .await;
    let rows = driver
        .until(
            "const r = document.querySelectorAll('#rows tr.rec'); return r.length",
            "rows",
        )
        .await;
    assert!(
        rows.as_u64().unwrap() >= 2,
        "the two exchanges about the person"
    );
    let href = driver.script("return location.href").await;
    let href = href.as_str().unwrap();
    assert!(href.contains("pilot=proef") && !href.contains(V), "{href}");
    let text = driver
        .script("return document.getElementById('rows').innerText")
        .await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("ngo-pinned") || text.contains("NGO"),
        "{text}"
    );
    assert!(!text.contains(V), "the page shows no V-nummer in records");

    // A record's detail, with its inclusion proof checked in the browser.
    driver.click("#rows tr.rec button.open").await;
    let steps = driver
        .until(
            "const s = [...document.querySelectorAll('#proof-steps li[data-ok]')].map((l) => l.dataset.ok); return s.length === 4 ? s : null",
            "the proof check",
        )
        .await;
    assert_eq!(
        steps,
        json!(["true", "true", "true", "true"]),
        "leaf, path, checkpoint and signature hold"
    );
    let detail = driver
        .script("return document.getElementById('detail').innerText")
        .await;
    let detail = detail.as_str().unwrap();
    assert!(
        detail.contains("Wat werd gegeven")
            && detail.contains("Wat werd achtergehouden")
            && detail.contains("AVG"),
        "{detail}"
    );
    driver.axe("detail").await;
    // A proof that does not lead to the root fails in the browser.
    let forged = driver
        .cmd(
            Method::POST,
            "/execute/async",
            Some(json!({"script": "const done = arguments[arguments.length - 1];
                fetch('/api/v1/audit/proof?index=0', {credentials: 'same-origin'})
                  .then((r) => r.json()).then((a) => { a.record_bytes = btoa('forged'); return checkInclusion(a, vkey); })
                  .then((s) => done(s.map((x) => x.ok)));", "args": []})),
        )
        .await;
    assert_eq!(forged[0], json!(false), "other bytes, other leaf: {forged}");
    assert_eq!(forged[1], json!(false), "{forged}");

    // The access report, in Dutch, from the search form.
    driver.click("#back-btn").await;
    driver
        .until(
            "return !document.getElementById('view-records').classList.contains('hidden')",
            "back",
        )
        .await;
    driver.type_into("#q-subject", V).await;
    driver.click("#report-btn").await;
    let report = driver
        .until("const t = document.getElementById('report').innerText; return t.includes('Verstrekt') ? t : ''", "the report")
        .await;
    let report = report.as_str().unwrap();
    assert!(
        report.contains("Gemeente Proef") && !report.contains("Shared"),
        "{report}"
    );
    driver.axe("report").await;
    screenshot(&driver, "console-report.png").await;

    for view in ["charts", "figures", "admin", "integrity"] {
        driver.nav(view).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        driver.axe(view).await;
    }
    // The charts: full names, a table beside each chart.
    driver.nav("charts").await;
    let table = driver
        .until("const t = document.querySelector('#chart-partner-cap'); return t && t.parentElement.querySelector('table') ? t.parentElement.innerText : ''", "the partner chart")
        .await;
    assert!(
        table.as_str().unwrap().contains("Gemeente Proef"),
        "{table}"
    );
    assert!(
        driver
            .script("return document.querySelector('.chart svg[role=img][aria-label]') !== null")
            .await
            == json!(true)
    );
    screenshot(&driver, "console-charts.png").await;

    // English as a choice, remembered across a reload.
    driver.click("#lang-btn").await;
    assert_eq!(
        driver.script("return document.documentElement.lang").await,
        "en"
    );
    driver.cmd(Method::POST, "/refresh", Some(json!({}))).await;
    driver
        .until(
            "return document.getElementById('who').textContent",
            "logged in again",
        )
        .await;
    assert_eq!(
        driver.script("return document.documentElement.lang").await,
        "en"
    );
    let h = driver
        .until(
            "return document.querySelector('.view:not(.hidden) h2').textContent",
            "a view",
        )
        .await;
    assert_eq!(
        h, "Disclosures and refusals",
        "the charts view, bookmarked in the URL"
    );
    driver.axe("charts (en)").await;

    // No URL the browser asked for or went to holds the V-nummer, while the
    // searches did reach the gateway (as POST bodies).
    let urls = driver.urls().await;
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/api/v1/disclosures/search")),
        "{urls:?}"
    );
    assert!(
        urls.iter().any(|u| u.ends_with("/api/v1/subjects/report")),
        "{urls:?}"
    );
    assert!(
        urls.iter().any(|u| u.contains("pilot=proef")),
        "the filter in the URL: {urls:?}"
    );
    let leaked: Vec<&String> = urls.iter().filter(|u| u.contains(V)).collect();
    assert!(leaked.is_empty(), "V-nummer in a URL: {leaked:?}");
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_browser_and_the_keyboard_alone_reach_search_and_report() {
    let Some(driver) = Driver::start("en-GB,en").await else {
        return;
    };
    let f = fixture().await;
    exchanges(&f).await;
    let token = officer(&f, "fg-keys");
    let console = format!("https://127.0.0.1:{}/", f.gw.console.port());
    driver
        .cmd(Method::POST, "/url", Some(json!({"url": console})))
        .await;
    driver
        .until(
            "return document.getElementById('token').offsetParent !== null",
            "the login form",
        )
        .await;
    assert_eq!(
        driver.script("return document.documentElement.lang").await,
        "en"
    );
    assert_eq!(
        driver
            .script("return document.getElementById('login-h').textContent")
            .await,
        "Log in"
    );
    // Only the keyboard from here: Tab to each control, type, Enter.
    driver.tab_to("#token").await;
    driver.key(&token).await;
    driver.key("\u{E007}").await;
    driver
        .until(
            "return document.getElementById('who').textContent",
            "login by keyboard",
        )
        .await;
    driver.tab_to("#q-subject").await;
    driver.key(V).await;
    driver.key("\u{E007}").await;
    driver
        .until("return document.getElementById('count').textContent.includes('found') && document.querySelectorAll('#rows tr.rec').length >= 2", "search by keyboard")
        .await;
    driver.tab_to("#report-btn").await;
    driver.key("\u{E007}").await;
    let report = driver
        .until("const t = document.getElementById('report').innerText; return t.includes('Shared') ? t : ''", "the report by keyboard")
        .await;
    assert!(
        report.as_str().unwrap().contains("Gemeente Proef"),
        "{report}"
    );
    // A record's detail by keyboard too: back to the log, Tab to a record.
    driver.tab_to("#nav a[data-view='records']").await;
    driver.key("\u{E007}").await;
    driver.tab_to("#rows button.open").await;
    driver.key("\u{E007}").await;
    driver
        .until(
            "return document.querySelectorAll('#proof-steps li[data-ok=true]').length === 4",
            "the detail by keyboard",
        )
        .await;
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_edits_a_rule_sees_the_diff_applies_it_and_finds_it_in_the_history() {
    let Some(driver) = Driver::start("nl").await else {
        return;
    };
    let f = fixture().await;
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "beheer",
        ketenpoort::console::users::Role::PolicyAdmin,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    driver.log_in(f.gw.console, &token).await;
    driver
        .until("const s = document.getElementById('pilot-select'); return s.options.length >= 2 && document.getElementById('policy-text').value.includes('[pilot]')", "the pilots")
        .await;
    driver
        .script("const s = document.getElementById('pilot-select'); s.value = 'proef'; s.dispatchEvent(new Event('change')); return true")
        .await;
    driver
        .until("return document.getElementById('policy-text').value.includes('id = \"proef\"') && document.querySelector('#flows svg') !== null", "the proef policy and its picture")
        .await;
    driver.axe("admin").await;
    // Edit: one more rule, typed at the end of the file.
    let e = driver.element("#policy-text").await;
    driver
        .script("const t = document.getElementById('policy-text'); t.focus(); t.setSelectionRange(t.value.length, t.value.length); return true")
        .await;
    driver
        .cmd(
            Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": "\n[[rules]]\nid = \"proef-lijst-ngo\"\npurpose = \"casusoverleg\"\nservice = \"dtv/lijst\"\nconsumers = [\"ngo-pinned\"]\nresponse = [\"vnummer\"]\n"})),
        )
        .await;
    driver.click("#dry-run-btn").await;
    let diff = driver
        .until("const t = document.getElementById('policy-result').textContent; return (t.startsWith('Geldig:') || t.startsWith('Niet geldig')) ? t : ''", "the dry-run diff")
        .await;
    assert!(
        diff.as_str()
            .unwrap()
            .contains("+ proef [casusoverleg] dtv → ngo-pinned via dtv/lijst"),
        "{diff}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        12,
        "a dry run applies nothing"
    );
    driver.click("#apply-btn").await;
    // It opens a flow: applied, but waiting for both its ends to sign.
    let result = driver
        .until("const t = document.getElementById('policy-result').textContent; return t.includes('van kracht') ? t : ''", "the applied change")
        .await;
    assert!(
        result
            .as_str()
            .unwrap()
            .contains("nog niet van kracht: wacht op de handtekening van dtv, ngo-pinned"),
        "{result}"
    );
    let pending = driver
        .until("const t = document.getElementById('covenant').innerText; return t.includes('nog nodig van') ? t : ''", "the pending version")
        .await;
    assert!(
        pending.as_str().unwrap().contains("dtv → ngo-pinned"),
        "{pending}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        12,
        "not in force before the partners signed"
    );
    f.pki.sign_all();
    f.gw.gateway.reload_policy().await;
    let history = driver
        .until("const t = document.getElementById('history').innerText; return t.includes('beheer') ? t : ''", "the history")
        .await;
    assert!(
        history.as_str().unwrap().contains("ngo-pinned"),
        "{history}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        13,
        "in force once both ends signed"
    );
    let png = driver.cmd(Method::GET, "/screenshot", None).await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-admin.png"),
        bytes,
    )
    .unwrap();
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ticks_a_field_off_in_the_rule_editor_sees_the_diff_and_applies_it() {
    let Some(driver) = Driver::start("nl").await else {
        return;
    };
    // The pilot file carries comments the editor must keep.
    let f = fixture_with(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap();
        let text = text.replace(
            "[[rules]]\nid = \"proef-casus\"",
            "# De casusoverleg van de proef.\n[[rules]]\nid = \"proef-casus\"",
        );
        pki.write_config(
            "pilots/proef.toml",
            &format!("# Convenant LVV Proef.\n{text}"),
        );
    })
    .await;
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "beheer",
        ketenpoort::console::users::Role::PolicyAdmin,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    driver.log_in(f.gw.console, &token).await;
    driver
        .until(
            "const s = document.getElementById('pilot-select'); return s.options.length >= 2",
            "the pilots",
        )
        .await;
    driver
        .script("const s = document.getElementById('pilot-select'); s.value = 'proef'; s.dispatchEvent(new Event('change')); return true")
        .await;
    driver
        .until("return [...document.getElementById('re-rule').options].some((o) => o.value === 'proef-casus') && document.querySelectorAll('#re-rows tr').length > 0", "the rule editor")
        .await;
    driver
        .script("const s = document.getElementById('re-rule'); s.value = 'proef-casus'; s.dispatchEvent(new Event('change')); return true")
        .await;
    // The tree of the service's declared fields, with categories; the
    // rule's fields ticked.
    let ticked = driver
        .until("const r = [...document.querySelectorAll('#re-rows tr')].filter((tr) => tr.querySelector('.re-resp').checked).map((tr) => tr.dataset.path); return r.length ? r : null", "the ticked fields")
        .await;
    assert_eq!(
        ticked,
        json!(["vnummer", "naam", "adres.woonplaats", "procedures[].status"])
    );
    let special = driver
        .script("return [...document.querySelectorAll('#re-rows tr')].filter((tr) => tr.querySelector('.special')).map((tr) => tr.dataset.path)")
        .await;
    assert!(
        special.to_string().contains("medisch"),
        "special categories are marked: {special}"
    );
    driver.axe("rule editor").await;
    // Tick "naam" off, see the change.
    driver.click("#re-rows tr[data-path='naam'] .re-resp").await;
    driver.click("#re-diff").await;
    let diff = driver
        .until("const t = document.getElementById('policy-result').textContent; return (t.startsWith('Geldig:') || t.startsWith('Niet geldig')) ? t : ''", "the dry run")
        .await;
    let diff = diff.as_str().unwrap();
    assert!(
        diff.starts_with("Geldig:") && diff.contains("-naam"),
        "{diff}"
    );
    let rule = |f: &Fixture| {
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .iter()
            .find(|r| r.id == "proef-casus")
            .unwrap()
            .response
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        rule(&f).contains(&"naam".to_string()),
        "a dry run applies nothing"
    );
    // Apply: it only narrows, so it runs at once.
    driver.click("#apply-btn").await;
    let done = driver
        .until("const t = document.getElementById('policy-result').textContent; return t.includes('van kracht') ? t : ''", "applied")
        .await;
    assert!(
        done.as_str()
            .unwrap()
            .starts_with("Toegepast en van kracht"),
        "{done}"
    );
    assert!(
        !rule(&f).contains(&"naam".to_string()),
        "the name no longer goes"
    );
    let file = std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap();
    assert!(file.starts_with("# Convenant LVV Proef.\n"), "{file}");
    assert!(
        file.contains("# De casusoverleg van de proef.\n[[rules]]\nid = \"proef-casus\""),
        "{file}"
    );
    screenshot(&driver, "console-rule-editor.png").await;
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}
