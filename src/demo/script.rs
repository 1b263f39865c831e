//! The demo's script as data: who asks whom for what, and what the gateway
//! should answer. The loop that plays it is in the parent module.

use crate::policy::PolicySet;
use crate::policy::partners::PartnerKind;

/// A party of a step, named per pilot.
#[derive(Clone, Copy)]
pub enum Who {
    /// The pilot's municipality, `gemeente-<pilot>`.
    Municipality,
    /// The pilot's first NGO.
    Ngo,
    /// A partner with the same id in every pilot.
    Partner(&'static str),
}

/// One GET of a provider's dossier by a partner.
pub struct Step {
    pub what: &'static str,
    pub actor: Who,
    pub provider: Who,
    pub service: &'static str,
    pub purpose: &'static str,
    /// The status the script expects while the covenant is in force.
    pub expected: u16,
    /// The dossier asked for; `None` is the pilot's own synthetic person.
    pub dossier: Option<&'static str>,
}

/// A step that asks for the pilot's own synthetic person.
const fn get(
    what: &'static str,
    actor: Who,
    provider: Who,
    service: &'static str,
    purpose: &'static str,
    expected: u16,
) -> Step {
    Step {
        what,
        actor,
        provider,
        service,
        purpose,
        expected,
        dossier: None,
    }
}

const DTV: Who = Who::Partner("dtv");

/// Every pilot, whether or not its covenant is in force (outside it, each is
/// refused).
pub const CONSULTATION: [Step; 2] = [
    get(
        "case consultation: departure dossier",
        Who::Municipality,
        DTV,
        "vertrekdossier",
        "casusoverleg",
        200,
    ),
    get(
        "case consultation: residence dossier",
        Who::Ngo,
        Who::Partner("ind"),
        "verblijfsdossier",
        "casusoverleg",
        200,
    ),
];

/// Played only while the covenant is in force: outside it every request is
/// refused alike, so these would show nothing more.
pub const IN_FORCE: [Step; 3] = [
    get(
        "medical track: health details",
        Who::Municipality,
        DTV,
        "vertrekdossier",
        "medisch",
        200,
    ),
    get(
        "researcher asks for health data",
        Who::Partner("onderzoek"),
        DTV,
        "vertrekdossier",
        "medisch",
        403,
    ),
    get(
        "monitoring: pseudonymised",
        Who::Partner("onderzoek"),
        Who::Municipality,
        "lvv-dossier",
        "monitoring",
        200,
    ),
];

/// Played in every pilot: a partner that signed the covenant but has no rule
/// gets nothing.
pub const PROGRAMME_OFFICE: Step = get(
    "programme office asks for a dossier",
    Who::Partner("programmabureau"),
    DTV,
    "vertrekdossier",
    "casusoverleg",
    403,
);

/// Played once, in the first pilot: requests the gateway must turn down.
pub const MISTAKES: [Step; 2] = [
    Step {
        dossier: Some("5550900001"),
        ..get(
            "a purpose no covenant knows",
            Who::Municipality,
            DTV,
            "vertrekdossier",
            "nieuwsgierigheid",
            400,
        )
    },
    Step {
        // The simulated back-ends know no dossier starting 5559.
        dossier: Some("5559000001"),
        ..get(
            "a dossier the provider does not have",
            Who::Municipality,
            DTV,
            "vertrekdossier",
            "casusoverleg",
            404,
        )
    },
];

/// What a step needs to know of the pilot it plays in.
pub struct Cast<'a> {
    pub pid: &'a str,
    /// The pilot's synthetic person.
    pub vnummer: String,
    pub municipality: String,
    pub ngo: &'a str,
    pub mailbox_ngo: Option<&'a str>,
    pub in_force: bool,
}

impl<'a> Cast<'a> {
    pub fn new(policy: &'a PolicySet, pid: &'a str, i: usize, today: time::Date) -> Self {
        let pilot = &policy.pilots[pid];
        let ngos: Vec<&str> = pilot
            .partners
            .iter()
            .filter(|p| {
                policy
                    .partners
                    .get(p)
                    .is_some_and(|x| x.kind == PartnerKind::Ngo)
            })
            .map(String::as_str)
            .collect();
        Cast {
            pid,
            vnummer: format!("5550{}00001", i + 1),
            municipality: format!("gemeente-{pid}"),
            ngo: ngos.first().copied().unwrap_or(""),
            mailbox_ngo: ngos
                .iter()
                .copied()
                .find(|n| policy.partners.get(n).is_some_and(|x| x.mailbox)),
            in_force: pilot.covenant.valid_from <= today && today <= pilot.covenant.valid_until,
        }
    }

    pub fn who(&self, w: Who) -> &str {
        match w {
            Who::Municipality => &self.municipality,
            Who::Ngo => self.ngo,
            Who::Partner(id) => id,
        }
    }

    /// The path of a provider's service, with `rest` after it if any.
    pub fn service(&self, provider: &str, service: &str, rest: &str) -> String {
        let base = format!("/v1/pilots/{}/services/{provider}/{service}", self.pid);
        if rest.is_empty() {
            base
        } else {
            format!("{base}/{rest}")
        }
    }
}
