//! Field paths (`adres.woonplaats`, `procedures[].status`) and the GDPR category
//! of each field a service declares.

use std::fmt;

/// A GDPR category of a field. The categories drive which purposes may carry a
/// field and what the DPIA annex says flows where.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Who the person is: V-nummer, name, date of birth, nationality.
    Identity,
    /// Right of residence: status, entry ban, documents.
    Residence,
    /// Procedures at IND and courts: applications, decisions.
    Procedure,
    /// Shelter: location, admission, period.
    Shelter,
    /// Guidance: plan of action, activation, future orientation.
    Guidance,
    /// Return: departure talks, country, travel documents.
    Return,
    /// How to reach the person or their representative.
    Contact,
    /// Health data: special category, GDPR art. 9.
    Health,
    /// Criminal data: GDPR art. 10.
    Criminal,
}

impl Category {
    /// All categories, in order.
    pub const ALL: [Category; 9] = [
        Self::Identity,
        Self::Residence,
        Self::Procedure,
        Self::Shelter,
        Self::Guidance,
        Self::Return,
        Self::Contact,
        Self::Health,
        Self::Criminal,
    ];

    /// The word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Residence => "residence",
            Self::Procedure => "procedure",
            Self::Shelter => "shelter",
            Self::Guidance => "guidance",
            Self::Return => "return",
            Self::Contact => "contact",
            Self::Health => "health",
            Self::Criminal => "criminal",
        }
    }

    /// Parses the file word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Special (art. 9) or criminal (art. 10) data: needs an explicit basis.
    pub fn is_special(self) -> bool {
        matches!(self, Self::Health | Self::Criminal)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a field path: a member name, marked `[]` when it holds an array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// The JSON member name.
    pub name: String,
    /// Written with `[]`: the member holds an array of such values.
    pub array: bool,
}

/// A dotted path into a JSON document, `[]` after a member that holds an array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Parses `a.b[].c`. Names are letters, digits, `_` and `-`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty field path".into());
        }
        let mut segs = Vec::new();
        for part in s.split('.') {
            let (name, array) = match part.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (part, false),
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "'{s}' is not a field path (names of letters, digits, '_' or '-', joined by '.', '[]' after arrays)"
                ));
            }
            segs.push(Segment {
                name: name.to_string(),
                array,
            });
        }
        Ok(Self(segs))
    }

    /// True when `self` is `other` or one of its ancestors, by member names
    /// (array marks are a matter of shape, not of identity).
    pub fn covers(&self, other: &FieldPath) -> bool {
        self.0.len() <= other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.name == b.name)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&s.name)?;
            if s.array {
                f.write_str("[]")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "vnummer",
            "adres.woonplaats",
            "procedures[].status",
            "a[].b[].c",
        ] {
            assert_eq!(FieldPath::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a[]x", "a[0]"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn covers_is_by_name() {
        let p = |s| FieldPath::parse(s).unwrap();
        assert!(p("adres").covers(&p("adres.woonplaats")));
        assert!(p("procedures").covers(&p("procedures[].status")));
        assert!(p("procedures[].status").covers(&p("procedures[].status")));
        assert!(!p("adres.woonplaats").covers(&p("adres")));
        assert!(!p("adres").covers(&p("adressen")));
    }
}
