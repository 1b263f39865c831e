//! A partner's services, as declared in partners.toml: where a document lives at
//! the provider, which methods it takes, which field names the data subject, and
//! the GDPR category of every field.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::fields::{Category, FieldPath};
use crate::config::{ConfigError, Source, valid_id};
use crate::text::Text;

/// The HTTP methods a service may offer.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    name: Spanned<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    methods: Spanned<Vec<String>>,
    subject: Spanned<String>,
    fields: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
}

/// One piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text, copied as is.
    Lit(String),
    /// `{name}`: filled from the route, in order.
    Var(String),
}

/// A back-end path like `/vertrekdossiers/{vnummer}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The template as written.
    pub text: String,
    /// Its pieces.
    pub parts: Vec<Part>,
}

impl PathTemplate {
    /// Parses a template; placeholders are `{identifier}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path '{text}' must start with '/'"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("path '{text}': '{{' without '}}'"))?;
            let name = &rest[open + 1..open + close];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("path '{text}': bad placeholder '{{{name}}}'"));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("path '{text}': '}}' without '{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// How many values the route must supply.
    pub fn arity(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Var(_)))
            .count()
    }

    /// The names of the placeholders, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// `prefix` (a back-end's base URL), then the path with its placeholders
    /// filled in order: one string, sized once. The caller has checked that
    /// each value is a plain path segment (no '/', no '..', no
    /// percent-escapes).
    pub fn fill_after(&self, prefix: &str, values: &[&str]) -> Option<String> {
        if values.len() != self.arity() {
            return None;
        }
        let len = self.parts.iter().fold(prefix.len(), |n, p| match p {
            Part::Lit(s) => n + s.len(),
            Part::Var(_) => n,
        }) + values.iter().map(|v| v.len()).sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push_str(prefix);
        let mut vals = values.iter();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(_) => out.push_str(vals.next()?),
            }
        }
        Some(out)
    }
}

/// A service a partner offers through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The partner that holds the data.
    pub provider: String,
    /// The service's name, unique per provider.
    pub name: String,
    /// Path at the provider's back-end; `None` for mailbox partners.
    pub path: Option<PathTemplate>,
    /// HTTP methods offered.
    pub methods: Vec<String>,
    /// The field that holds the data subject's V-nummer.
    pub subject: FieldPath,
    /// Every field of the document with its category, in file order.
    pub fields: Vec<(FieldPath, Category)>,
    /// `provider/name`, made once: every audit record of the service names it.
    qualified: Text,
}

impl Service {
    /// `provider/name`, as policy files and audit records refer to it.
    pub fn qualified(&self) -> &Text {
        &self.qualified
    }

    /// The declared fields under (or at) a path.
    pub fn fields_under<'a>(
        &'a self,
        path: &'a FieldPath,
    ) -> impl Iterator<Item = &'a (FieldPath, Category)> + 'a {
        self.fields.iter().filter(move |(f, _)| path.covers(f))
    }

    /// The categories of the declared fields under a path.
    pub fn categories_of(&self, path: &FieldPath) -> std::collections::BTreeSet<Category> {
        self.fields_under(path).map(|(_, c)| *c).collect()
    }

    /// True if the path names a declared field or one of its ancestors.
    pub fn knows(&self, path: &FieldPath) -> bool {
        self.fields_under(path).next().is_some()
    }

    /// Checks and converts one `[[partner.service]]` table.
    pub(crate) fn from_raw(
        src: &Source,
        provider: &str,
        mailbox: bool,
        raw: RawService,
    ) -> Result<Self, ConfigError> {
        let name = raw.name.get_ref();
        if !valid_id(name) {
            return Err(src.error(
                &raw.name,
                format!("service name '{name}' must be lowercase letters, digits and '-'"),
            ));
        }
        let path = match (&raw.path, mailbox) {
            (Some(p), _) => Some(PathTemplate::parse(p.get_ref()).map_err(|e| src.error(p, e))?),
            (None, true) => None,
            (None, false) => {
                return Err(src.error(
                    &raw.name,
                    format!("service '{name}' needs a path (only mailbox partners do without)"),
                ));
            }
        };
        let mut methods = Vec::new();
        for m in raw.methods.get_ref() {
            if !METHODS.contains(&m.as_str()) {
                return Err(src.error(
                    &raw.methods,
                    format!("unknown method '{m}' (one of {})", METHODS.join(", ")),
                ));
            }
            if mailbox && !matches!(m.as_str(), "POST" | "PUT") {
                return Err(src.error(&raw.methods, "a mailbox service takes only POST and PUT"));
            }
            if !methods.contains(m) {
                methods.push(m.clone());
            }
        }
        if methods.is_empty() {
            return Err(src.error(&raw.methods, "a service needs at least one method"));
        }
        let mut fields: Vec<(usize, FieldPath, Category)> = Vec::new();
        for (k, v) in raw.fields.get_ref() {
            let fp = FieldPath::parse(k.get_ref()).map_err(|e| src.error(k, e))?;
            let cat = Category::parse(v.get_ref()).ok_or_else(|| {
                let all: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
                src.error(
                    v,
                    format!(
                        "unknown category '{}' (one of {})",
                        v.get_ref(),
                        all.join(", ")
                    ),
                )
            })?;
            fields.push((k.span().start, fp, cat));
        }
        fields.sort_by_key(|(at, _, _)| *at);
        for (at, fp, _) in &fields {
            if let Some((_, other, _)) = fields
                .iter()
                .find(|(_, o, _)| o != fp && (o.covers(fp) || fp.covers(o)))
            {
                return Err(src.error_at(*at, format!("field '{fp}' overlaps '{other}': declare leaves only, each with one category")));
            }
        }
        // The declared fields are the schema: a member holds a list or it
        // does not, whichever field names it.
        for (at, fp, _) in &fields {
            for (_, other, _) in &fields {
                let shared =
                    fp.0.iter()
                        .zip(&other.0)
                        .take_while(|(a, b)| a.name == b.name);
                if let Some((a, _)) = shared
                    .take(fp.0.len().min(other.0.len()).saturating_sub(1))
                    .find(|(a, b)| a.array != b.array)
                {
                    return Err(src.error_at(
                        *at,
                        format!(
                            "field '{fp}' and '{other}' disagree on whether '{}' is a list ('[]')",
                            a.name
                        ),
                    ));
                }
            }
        }
        if fields.is_empty() {
            return Err(src.error(
                &raw.fields,
                "a service needs its fields, each with a category",
            ));
        }
        let subject =
            FieldPath::parse(raw.subject.get_ref()).map_err(|e| src.error(&raw.subject, e))?;
        if !fields.iter().any(|(_, f, _)| *f == subject) {
            return Err(src.error(
                &raw.subject,
                format!("subject '{subject}' is not one of the service's fields"),
            ));
        }
        Ok(Self {
            provider: provider.to_string(),
            name: name.clone(),
            qualified: format!("{provider}/{name}").into(),
            path,
            methods,
            subject,
            fields: fields.into_iter().map(|(_, f, c)| (f, c)).collect(),
        })
    }

    /// The subject field of a document: `None` when absent, `Some(None)` when
    /// present but not a string or number (a list, an object, null).
    pub fn subject_in(&self, doc: &serde_json::Value) -> Option<Option<String>> {
        let mut v = doc;
        for seg in &self.subject.0 {
            v = v.get(&seg.name)?;
        }
        Some(match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_order() {
        let t = PathTemplate::parse("/a/{x}/b/{y}").unwrap();
        assert_eq!(t.arity(), 2);
        assert_eq!(t.fill_after("", &["1", "2"]).unwrap(), "/a/1/b/2");
        assert!(t.fill_after("", &["1"]).is_none());
        for bad in ["a/{x}", "/a/{x", "/a/x}", "/a/{}", "/a/{x y}"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
