// The rule editor: a pilot's rule by picking and ticking. The server turns
// the choice into the pilot file (toml_edit, comments and order kept); the
// page then runs the same dry run as for a hand-edited file, and the same
// Apply button applies it.
"use strict";
let ed = null;

async function loadRuleEditor() {
  try {
    ed = await api("/api/v1/pilots/" + pilot() + "/rules");
  } catch (e) { ed = null; return; }
  $("re-rule").innerHTML = ed.rules.map((r) => `<option value="${esc(r.id)}">${esc(r.id)}</option>`).join("") +
    `<option value="">${esc(t("re.new"))}</option>`;
  $("re-purpose").innerHTML = ed.purposes.map((p) => `<option value="${esc(p.id)}">${esc(p.id)}</option>`).join("");
  $("re-service").innerHTML = ed.services.map((s) => `<option value="${esc(s.id)}">${esc(s.id)}</option>`).join("");
  $("re-consumers").innerHTML = ed.partners.map((p, i) =>
    `<label><input type="checkbox" id="re-c-${i}" value="${esc(p.id)}"> ${esc(p.name)}</label>`).join("");
  $("re-from").value = ed.valid_from;
  $("re-until").value = ed.valid_until;
  pickRule();
}

function currentRule() { return ed && ed.rules.find((r) => r.id === $("re-rule").value); }

function pickRule() {
  const r = currentRule() || {id: "", purpose: ed.purposes[0] && ed.purposes[0].id, service: ed.services[0] && ed.services[0].id, consumers: [], response: [], request: [], transforms: []};
  $("re-id").value = r.id;
  $("re-id").readOnly = !!currentRule();
  $("re-purpose").value = r.purpose;
  $("re-service").value = r.service;
  $("re-consumers").querySelectorAll("input").forEach((c) => { c.checked = r.consumers.includes(c.value); });
  fieldRows(r);
}

function fieldRows(r) {
  const svc = ed.services.find((s) => s.id === $("re-service").value);
  const tf = Object.fromEntries((r.transforms || []).map((x) => [x.field, x.kind]));
  const opt = (v, k, sel) => `<option value="${v}"${sel === v ? " selected" : ""}>${esc(t(k))}</option>`;
  $("re-rows").innerHTML = (svc ? svc.fields : []).map((f, i) => {
    const depth = Math.min(3, (f.path.match(/\./g) || []).length);
    const cat = esc(t("cat." + f.category)) + (f.special ? ` <span class="special">(${esc(t("re.special"))})</span>` : "");
    // The full path (a parent need not be declared itself), indented by depth.
    return `<tr data-path="${esc(f.path)}"><th scope="row" class="d${depth}"><code>${esc(f.path)}</code></th><td>${cat}</td>` +
      `<td><input type="checkbox" class="re-resp" aria-label="${esc(f.path + ": " + t("re.response"))}"${r.response.includes(f.path) ? " checked" : ""}></td>` +
      `<td><input type="checkbox" class="re-req" aria-label="${esc(f.path + ": " + t("re.request"))}"${r.request.includes(f.path) ? " checked" : ""}></td>` +
      `<td><select class="re-tf" aria-label="${esc(f.path + ": " + t("re.transform"))}">${opt("", "re.none", tf[f.path] || "")}` +
      `${opt("month", "re.month", tf[f.path])}${opt("year", "re.year", tf[f.path])}${opt("pseudonymise", "re.pseudo", tf[f.path])}</select></td></tr>`;
  }).join("");
}

async function showRuleChange() {
  const rows = [...$("re-rows").querySelectorAll("tr")];
  const picked = (cls) => rows.filter((tr) => tr.querySelector(cls).checked).map((tr) => tr.dataset.path);
  const edit = {
    id: $("re-id").value.trim(),
    purpose: $("re-purpose").value,
    service: $("re-service").value,
    consumers: [...$("re-consumers").querySelectorAll("input:checked")].map((c) => c.value),
    response: picked(".re-resp"),
    request: picked(".re-req"),
    transforms: rows.filter((tr) => tr.querySelector(".re-tf").value).map((tr) => ({field: tr.dataset.path, kind: tr.querySelector(".re-tf").value})),
    valid_from: $("re-from").value || null,
    valid_until: $("re-until").value || null,
  };
  try {
    const r = await api("/api/v1/pilots/" + pilot() + "/rules", {method: "POST", json: edit});
    $("policy-text").value = r.file;
    await putPolicy(true);
  } catch (e) { showErr($("policy-result"), e); }
}

function wireRuleEditor() {
  $("re-rule").addEventListener("change", pickRule);
  $("re-service").addEventListener("change", () => fieldRows(currentRule() && currentRule().service === $("re-service").value
    ? currentRule() : {response: [], request: [], transforms: []}));
  $("re-diff").addEventListener("click", showRuleChange);
}
