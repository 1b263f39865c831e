// The console's words in Dutch (the default) and English. Every element with
// data-i18n gets its text from here; the script uses t(). The choice is kept
// in localStorage; the first time, the browser's languages decide.
"use strict";
const KP_TEXT = {
  nl: {
    "title": "ketenpoort – console", "skip": "Naar de inhoud", "brand": "ketenpoort",
    "brand.sub": "console voor privacy en beheer", "logout": "Uitloggen", "nav": "Onderdelen",
    "lang.other": "English", "lang.other.code": "en",
    "view.records": "Logboek", "view.report": "Inzage (art. 15)", "view.charts": "Grafieken",
    "view.figures": "Cijfers LVV", "view.admin": "Convenanten", "view.integrity": "Integriteit",
    "login.h": "Inloggen", "login.help": "Met een persoonlijk certificaat (smartcard): kies het als de browser erom vraagt en laad deze pagina opnieuw. Of plak het token dat u kreeg (ketenpoort user add); het opent een sessie en wordt niet bewaard.", "login.with": "Inloggen via", "logout.done": "U bent uitgelogd.",
    "login.token": "Token", "login.btn": "Inloggen", "login.bad": "Dit token wordt niet geaccepteerd.",
    "records.h": "Logboek van verstrekkingen", "search.legend": "Zoeken en filteren",
    "f.subject": "V-nummer", "f.subject.hint": "Tien cijfers. Opzoeken van een persoon wordt zelf vastgelegd. Het V-nummer komt nooit in de adresbalk.",
    "f.partner": "Organisatie (id)", "f.pilot": "Pilot (id)", "f.purpose": "Doel", "f.since": "Vanaf", "f.until": "Tot en met",
    "f.decision": "Besluit", "f.all": "alle", "f.pilot.name": "Pilot", "f.from.month": "Van maand", "f.to.month": "Tot en met maand",
    "d.disclosed": "verstrekt", "d.refused": "geweigerd", "d.disclosed.pl": "verstrekt", "d.refused.pl": "geweigerd",
    "search.btn": "Zoeken", "search.clear": "Filters wissen", "report.btn": "Inzageoverzicht (art. 15)",
    "records.latest": "Nieuwste records", "records.found": "Gevonden records, nieuwste eerst", "records.none": "Geen records.",
    "c.id": "Nr.", "c.time": "Tijd (UTC)", "c.decision": "Besluit", "c.pilot": "Pilot", "c.from": "Van", "c.to": "Aan",
    "c.purpose": "Doel", "c.fields": "Gegevens", "c.withheld": "Achtergehouden", "c.open": "Record {id} bekijken",
    "page.prev": "Nieuwere", "page.next": "Oudere", "page.no": "Pagina {n}",
    "detail.h": "Record {id}", "detail.back": "Terug naar het logboek", "detail.proof": "Opgenomen in het logboek",
    "detail.proof.help": "Uw browser rekent zelf na (SHA-256, RFC 6962) dat dit record in de ondertekende boom van het logboek staat.",
    "detail.raw": "Bewijs en checkpoint (technisch)", "detail.evidence": "Bewijsbestand downloaden (.tlog-proof)",
    "dt.time": "Tijd (UTC)", "dt.kind": "Soort", "dt.decision": "Besluit", "dt.reason": "Reden", "dt.from": "Gegeven door",
    "dt.to": "Gegeven aan", "dt.pilot": "Pilot", "dt.purpose": "Doel", "dt.basis": "Grondslag", "dt.rule": "Regel", "dt.activity": "Verwerkingsactiviteit", "dt.fsc": "FSC-transactie",
    "dt.service": "Dienst", "dt.given": "Wat werd gegeven", "dt.withheld": "Wat werd achtergehouden",
    "dt.undeclared": "Niet-gedeclareerde velden achtergehouden", "dt.hash": "SHA-256 van wat werd afgeleverd", "dt.nothing": "niets",
    "kind.exchange": "uitwisseling", "kind.lookup": "opzoeking in de console",
    "proof.leaf": "De hash van de recordbytes (SHA-256 met 0x00 ervoor) is de leaf-hash van het bewijs.",
    "proof.path": "Het inclusiebewijs ({n} hashes) leidt van dit record naar de wortel van de boom van {size} records.",
    "proof.cp": "Die wortel en grootte staan in het ondertekende checkpoint.",
    "proof.sig": "De Ed25519-handtekening van het checkpoint klopt met de verificatiesleutel van het logboek.",
    "proof.sig.na": "Deze browser kan Ed25519 niet narekenen; controleer het checkpoint met ketenpoort audit check-evidence.",
    "proof.ok": "klopt", "proof.fail": "KLOPT NIET", "proof.checking": "Bezig met narekenen…",
    "report.h": "Inzageoverzicht (AVG art. 15)", "report.hint": "Het overzicht voor de persoon zelf, in de gekozen taal. Het opvragen wordt vastgelegd.",
    "report.lang": "Taal van het overzicht", "report.show": "Overzicht maken", "report.print": "Afdrukken",
    "report.need": "Geef een V-nummer van tien cijfers voor het inzageoverzicht.",
    "charts.h": "Verstrekkingen en weigeringen", "chart.day": "Per dag (laatste 31)", "chart.pilot": "Per pilot",
    "chart.partner": "Per organisatie", "chart.purpose": "Per doel", "chart.key": "Naam", "chart.total": "Totaal",
    "chart.alt": "{title}: staafdiagram; dezelfde aantallen staan in de tabel ernaast.", "chart.none": "Nog geen gegevens.",
    "figures.h": "Cijfers van de LVV's", "figures.help": "Verblijven per maand uit het register. Elke cel onder 10, en elke cel die er een zou teruggeven, staat als <10. Nooit een lijst van personen.",
    "figures.show": "Tonen", "fig.month": "Maand", "fig.open": "Open verblijven", "fig.intakes": "Instroom", "fig.endings": "Uitstroom",
    "fig.caption": "Cijfers per maand", "band.lt_3_months": "korter dan 3 maanden", "band.3_to_12_months": "3 tot 12 maanden", "band.gt_12_months": "langer dan 12 maanden",
    "checks.h": "Controles \"al in een LVV?\" per organisatie",
    "checks.help": "Hoe vaak elke organisatie vroeg of iemand al in een LVV verblijft, en hoe vaak zij werd geweigerd omdat zij te vaak vroeg: wie V-nummers afloopt, valt hier op. Aantallen, nooit personen.",
    "checks.caption": "Registercontroles per organisatie", "checks.partner": "Organisatie", "checks.checks": "Controles",
    "checks.limit": "Geweigerd: te vaak", "checks.other": "Anders geweigerd", "checks.reg": "Aanmeldingen", "checks.end": "Beëindigingen",
    "checks.partial": "Let op: alleen de nieuwste 200.000 records zijn geteld.",
    "admin.h": "Convenanten (regels per pilot)", "admin.edit": "Het beleidsbestand (voor deskundigen)",
    "admin.edit.help": "Controleer eerst welke stromen erbij komen of verdwijnen; toepassen schrijft het bestand (vastgelegd in het auditlog). Een wijziging die alleen inperkt, geldt meteen; een die een stroom opent of verruimt, wacht op de handtekeningen van de organisaties aan beide kanten.",
    "admin.file": "Bestand (TOML)", "admin.dry": "Controleren en wijzigingen tonen", "admin.apply": "Toepassen",
    "admin.sigs": "Handtekeningen", "admin.explain": "Een regel uitproberen", "admin.history": "Geschiedenis",
    "admin.readonly": "alleen lezen", "admin.flows": "Stromen van pilot {p}",
    "admin.nochange": "(geen wijzigingen in de stromen)", "admin.valid": "Geldig: wordt versie {v}", "admin.applied": "Toegepast: versie {v}",
    "admin.inforce": "Toegepast en van kracht.", "admin.pending": "Toegepast, nog niet van kracht: wacht op de handtekening van {who}",
    "admin.invalid": "Niet geldig:", "admin.version": "versie", "admin.rules": "{n} regels", "admin.signed": "getekend:",
    "cov.nobody": "niemand", "cov.inforce": "Van kracht: {v} sinds {since}, getekend door {who}", "cov.revoked": "ingetrokken door {who}",
    "cov.none": "Geen versie van kracht: elke stroom wordt geweigerd.", "cov.pending": "Wacht op handtekening: {v}, nog nodig van: {who}",
    "cov.withdraw": "Intrekken",
    "re.h": "Een regel bewerken", "re.help": "Kies een regel (of maak een nieuwe), het doel, de gevende dienst en de ontvangers, en vink de velden aan die mogen gaan. Velden van een bijzondere categorie zijn gemarkeerd; zonder grondslag in het doel worden ze geweigerd. Toon eerst de wijziging; toepassen gaat daarna met de knop Toepassen hieronder.",
    "re.rule": "Regel", "re.new": "(nieuwe regel)", "re.id": "Naam (id) van de regel", "re.service": "Gevende dienst", "re.consumers": "Ontvangers",
    "re.fields": "Gedeclareerde velden van de dienst", "re.field": "Veld", "re.category": "Categorie", "re.response": "Gegeven aan ontvanger",
    "re.request": "Gestuurd door ontvanger", "re.transform": "Bewerking", "re.from": "Convenant geldig vanaf", "re.until": "Convenant geldig tot en met",
    "re.diff": "Wijziging tonen (proefdraai)", "re.special": "bijzonder", "re.none": "geen", "re.month": "tot maand", "re.year": "tot jaar", "re.pseudo": "pseudoniem",
    "cat.identity": "identiteit", "cat.residence": "verblijf", "cat.procedure": "procedure", "cat.shelter": "opvang", "cat.guidance": "begeleiding",
    "cat.return": "terugkeer", "cat.contact": "contactgegevens", "cat.health": "gezondheid", "cat.criminal": "strafrechtelijk",
    "ex.service": "Dienst (aanbieder/dienst)", "ex.doc": "Voorbeelddocument (JSON, optioneel)", "ex.btn": "Uitleggen", "ex.notjson": "Het voorbeeld is geen JSON.",
    "integrity.h": "Integriteit van het logboek", "integrity.vkey": "Verificatiesleutel:", "integrity.verify": "Het hele logboek nu controleren",
    "integrity.help": "Gepubliceerd checkpoint (C2SP signed note: de Ed25519-handtekening van het logboek, daarna die van de getuigen als die zijn ingesteld):",
    "integrity.none": "(nog geen checkpoint)", "integrity.noquorum": "(nog geen checkpoint heeft genoeg handtekeningen van getuigen)",
    "integrity.waiting": "Het nieuwste checkpoint (grootte {n}) wacht op de handtekeningen van de getuigen.",
    "integrity.busy": "Bezig met controleren…", "integrity.ok": "Intact: {r} records en {c} ondertekende checkpoints kloppen ({s} s).", "integrity.bad": "MISLUKT:",
    "busy": "Bezig…", "error": "Fout",
    "role.privacy-officer": "functionaris gegevensbescherming", "role.policy-admin": "beheerder convenanten",
  },
  en: {
    "title": "ketenpoort – console", "skip": "Skip to content", "brand": "ketenpoort",
    "brand.sub": "console for privacy and administration", "logout": "Log out", "nav": "Sections",
    "lang.other": "Nederlands", "lang.other.code": "nl",
    "view.records": "Log", "view.report": "Access report (art. 15)", "view.charts": "Charts",
    "view.figures": "LVV figures", "view.admin": "Covenants", "view.integrity": "Integrity",
    "login.h": "Log in", "login.help": "With a personal certificate (smart card), choose it when the browser asks and reload this page. Or paste the token you were given (ketenpoort user add); it opens a session and is not kept.", "login.with": "Log in with", "logout.done": "You are logged out.",
    "login.token": "Token", "login.btn": "Log in", "login.bad": "This token is not accepted.",
    "records.h": "Log of disclosures", "search.legend": "Search and filter",
    "f.subject": "V-nummer", "f.subject.hint": "Ten digits. Looking up a person is itself recorded. The V-nummer never goes into the address bar.",
    "f.partner": "Organisation (id)", "f.pilot": "Pilot (id)", "f.purpose": "Purpose", "f.since": "From", "f.until": "Until (inclusive)",
    "f.decision": "Decision", "f.all": "all", "f.pilot.name": "Pilot", "f.from.month": "From month", "f.to.month": "Until month",
    "d.disclosed": "disclosed", "d.refused": "refused", "d.disclosed.pl": "disclosed", "d.refused.pl": "refused",
    "search.btn": "Search", "search.clear": "Clear filters", "report.btn": "Access report (art. 15)",
    "records.latest": "Latest records", "records.found": "Records found, newest first", "records.none": "No records.",
    "c.id": "No.", "c.time": "Time (UTC)", "c.decision": "Decision", "c.pilot": "Pilot", "c.from": "From", "c.to": "To",
    "c.purpose": "Purpose", "c.fields": "Data", "c.withheld": "Withheld", "c.open": "View record {id}",
    "page.prev": "Newer", "page.next": "Older", "page.no": "Page {n}",
    "detail.h": "Record {id}", "detail.back": "Back to the log", "detail.proof": "Included in the log",
    "detail.proof.help": "Your browser checks on its own (SHA-256, RFC 6962) that this record is in the log's signed tree.",
    "detail.raw": "Proof and checkpoint (technical)", "detail.evidence": "Download evidence (.tlog-proof)",
    "dt.time": "Time (UTC)", "dt.kind": "Kind", "dt.decision": "Decision", "dt.reason": "Reason", "dt.from": "Given by",
    "dt.to": "Given to", "dt.pilot": "Pilot", "dt.purpose": "Purpose", "dt.basis": "Legal basis", "dt.rule": "Rule", "dt.activity": "Processing activity", "dt.fsc": "FSC transaction",
    "dt.service": "Service", "dt.given": "What was given", "dt.withheld": "What was withheld",
    "dt.undeclared": "Undeclared fields withheld", "dt.hash": "SHA-256 of what was delivered", "dt.nothing": "nothing",
    "kind.exchange": "exchange", "kind.lookup": "look-up in the console",
    "proof.leaf": "The hash of the record bytes (SHA-256 with 0x00 before them) is the proof's leaf hash.",
    "proof.path": "The inclusion proof ({n} hashes) leads from this record to the root of the tree of {size} records.",
    "proof.cp": "That root and size are in the signed checkpoint.",
    "proof.sig": "The checkpoint's Ed25519 signature matches the log's verifier key.",
    "proof.sig.na": "This browser cannot check Ed25519; check the checkpoint with ketenpoort audit check-evidence.",
    "proof.ok": "holds", "proof.fail": "DOES NOT HOLD", "proof.checking": "Checking…",
    "report.h": "Access report (GDPR art. 15)", "report.hint": "The report for the person, in the language chosen. Asking for it is recorded.",
    "report.lang": "Language of the report", "report.show": "Make the report", "report.print": "Print",
    "report.need": "Give a V-nummer of ten digits for the access report.",
    "charts.h": "Disclosures and refusals", "chart.day": "Per day (last 31)", "chart.pilot": "Per pilot",
    "chart.partner": "Per organisation", "chart.purpose": "Per purpose", "chart.key": "Name", "chart.total": "Total",
    "chart.alt": "{title}: bar chart; the same numbers are in the table beside it.", "chart.none": "No data yet.",
    "figures.h": "LVV figures", "figures.help": "Stays per month from the registry. Every cell under 10, and any cell that would give one back, shows as <10. Never a list of people.",
    "figures.show": "Show", "fig.month": "Month", "fig.open": "Open stays", "fig.intakes": "Intakes", "fig.endings": "Endings",
    "fig.caption": "Figures per month", "band.lt_3_months": "under 3 months", "band.3_to_12_months": "3 to 12 months", "band.gt_12_months": "over 12 months",
    "checks.h": "\"Already in an LVV?\" checks per organisation",
    "checks.help": "How often each organisation asked whether someone is already in an LVV, and how often it was refused for asking too often: someone walking through V-nummers shows here. Counts, never people.",
    "checks.caption": "Registry checks per organisation", "checks.partner": "Organisation", "checks.checks": "Checks",
    "checks.limit": "Refused: too many", "checks.other": "Refused otherwise", "checks.reg": "Registrations", "checks.end": "Endings",
    "checks.partial": "Note: only the newest 200,000 records were counted.",
    "admin.h": "Covenants (rules per pilot)", "admin.edit": "The policy file (for experts)",
    "admin.edit.help": "Validate first to see which flows would appear or disappear; apply writes the file (recorded in the audit log). A change that only narrows runs at once; one that opens or widens a flow waits for the signatures of the partners at both its ends.",
    "admin.file": "File (TOML)", "admin.dry": "Validate and show changes", "admin.apply": "Apply",
    "admin.sigs": "Signatures", "admin.explain": "Try a rule (explain)", "admin.history": "History",
    "admin.readonly": "read only", "admin.flows": "Flows of pilot {p}",
    "admin.nochange": "(no flow changes)", "admin.valid": "Valid: would become version {v}", "admin.applied": "Applied: version {v}",
    "admin.inforce": "Applied and in force.", "admin.pending": "Applied, not in force yet: waiting for: {who}",
    "admin.invalid": "Not valid:", "admin.version": "version", "admin.rules": "{n} rules", "admin.signed": "signed:",
    "cov.nobody": "nobody", "cov.inforce": "In force: {v} since {since}, signed by {who}", "cov.revoked": "revoked by {who}",
    "cov.none": "No version in force: every flow is refused.", "cov.pending": "Pending {v}: waiting for: {who}",
    "cov.withdraw": "Withdraw",
    "re.h": "Edit a rule", "re.help": "Pick a rule (or make a new one), the purpose, the giving service and the receivers, and tick the fields that may go. Fields of a special category are marked; without a legal basis in the purpose they are refused. Show the change first; then apply it with the Apply button below.",
    "re.rule": "Rule", "re.new": "(new rule)", "re.id": "Name (id) of the rule", "re.service": "Giving service", "re.consumers": "Receivers",
    "re.fields": "Declared fields of the service", "re.field": "Field", "re.category": "Category", "re.response": "Given to the receiver",
    "re.request": "Sent by the receiver", "re.transform": "Transform", "re.from": "Covenant valid from", "re.until": "Covenant valid until",
    "re.diff": "Show the change (dry run)", "re.special": "special", "re.none": "none", "re.month": "to month", "re.year": "to year", "re.pseudo": "pseudonym",
    "cat.identity": "identity", "cat.residence": "residence", "cat.procedure": "procedure", "cat.shelter": "shelter", "cat.guidance": "guidance",
    "cat.return": "return", "cat.contact": "contact details", "cat.health": "health", "cat.criminal": "criminal",
    "ex.service": "Service (provider/service)", "ex.doc": "Sample document (JSON, optional)", "ex.btn": "Explain", "ex.notjson": "The sample is not JSON.",
    "integrity.h": "Integrity of the log", "integrity.vkey": "Verifier key:", "integrity.verify": "Verify the whole log now",
    "integrity.help": "Published checkpoint (C2SP signed note: the log's Ed25519 signature, then the witnesses' cosignatures when witnesses are configured):",
    "integrity.none": "(no checkpoint yet)", "integrity.noquorum": "(no checkpoint has reached its quorum of witness cosignatures yet)",
    "integrity.waiting": "The newest signed checkpoint (size {n}) is waiting for its witness cosignatures.",
    "integrity.busy": "Verifying…", "integrity.ok": "Intact: {r} records and {c} signed checkpoints match ({s} s).", "integrity.bad": "FAILED:",
    "busy": "Working…", "error": "Error",
    "role.privacy-officer": "privacy officer", "role.policy-admin": "policy administrator",
  },
};

// Problem titles by the stable slug of their type; the server's English
// title is the fallback for a type added later.
const KP_PROBLEMS = {
  nl: {
    "not-found": "Niet gevonden", "unauthorized": "Inloggen is nodig", "forbidden": "Uw rol of bereik staat dit niet toe",
    "bad-query": "Een zoekterm is ongeldig", "invalid-subject": "Een V-nummer heeft tien cijfers",
    "invalid-policy": "Het beleidsbestand klopt niet", "unknown-pilot": "Deze pilot bestaat niet",
    "audit-unavailable": "Het auditlog kan dit niet vastleggen, dus er komt geen antwoord",
    "body-too-large": "Het verzoek is te groot", "malformed-json": "Het verzoek is geen geldig JSON-document",
    "no-rule": "Geen regel van het convenant staat dit toe", "invalid-figures-query": "De cijfers vragen een pilot, een begin- en eindmaand (hoogstens 36 maanden)",
    "registry-unavailable": "Het register kan niet worden gelezen", "consent-unavailable": "Het toestemmingsregister kan niet worden gelezen",
    "unknown-version": "Deze convenantversie bestaat niet", "version-closed": "Deze convenantversie is niet meer open",
    "not-yet-published": "Het record staat nog niet in een gepubliceerd checkpoint; probeer het zo opnieuw",
    "busy": "De gateway is op zijn grens; probeer het zo opnieuw", "internal": "Interne fout",
  },
  en: {
    "not-found": "Not found", "unauthorized": "You need to log in", "forbidden": "Your role or scope does not allow this",
    "bad-query": "A search term is malformed", "invalid-subject": "A V-nummer has ten digits",
    "invalid-policy": "The policy file does not validate", "unknown-pilot": "No such pilot",
    "audit-unavailable": "The audit log cannot record this, so it is not answered",
    "body-too-large": "The request is too large", "malformed-json": "The request is not a valid JSON document",
    "no-rule": "No rule of the covenant allows this", "invalid-figures-query": "The figures need a pilot, a first and a last month (at most 36 months)",
    "registry-unavailable": "The registry cannot be read", "consent-unavailable": "The consent register cannot be read",
    "unknown-version": "No such covenant version", "version-closed": "This covenant version is no longer open",
    "not-yet-published": "The record is not yet in a published checkpoint; try again shortly",
    "busy": "The gateway is at its limit; try again shortly", "internal": "Internal error",
  },
};

function kpChooseLang() {
  const kept = localStorage.getItem("kp-lang");
  if (kept === "nl" || kept === "en") return kept;
  for (const l of navigator.languages || [navigator.language || ""]) {
    const p = String(l).toLowerCase().slice(0, 2);
    if (p === "nl" || p === "en") return p;
  }
  return "nl";
}

let kpLang = kpChooseLang();

/** The text for a key in the current language, with {name} filled in. */
function t(key, vars) {
  const s = (KP_TEXT[kpLang] && KP_TEXT[kpLang][key]) || KP_TEXT.nl[key] || key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? String(vars[k]) : ""));
}

/** A problem's title in the current language, by its type. */
function problemTitle(p) {
  const slug = String((p && p.type) || "").replace("urn:ketenpoort:problem:", "");
  return (KP_PROBLEMS[kpLang] && KP_PROBLEMS[kpLang][slug]) || (p && p.title) || t("error");
}

/** Puts every data-i18n text of the page in the current language. */
function applyLang() {
  document.documentElement.lang = kpLang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.title = t("title");
  const b = document.getElementById("lang-btn");
  if (b) { b.textContent = t("lang.other"); b.lang = t("lang.other.code"); }
}

function setLang(l) {
  kpLang = l;
  localStorage.setItem("kp-lang", l);
  applyLang();
}
