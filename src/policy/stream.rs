//! Minimising while parsing: the hot path of every exchange.
//!
//! [`super::minimise`] works on a parsed `serde_json::Value`: every object an
//! `IndexMap`, every key and string a `String`, then a second tree for the
//! result, then serialisation. Here one pass of serde_json's parser is driven
//! by the compiled field tree instead: withheld subtrees are validated but never
//! built, and delivered members are written straight into the output buffer.
//!
//! The two must never disagree (the property test in `tests/stream.rs` holds
//! them to it): the same strictness as `exchange::json::parse` (UTF-8, no key
//! twice in any object, nesting at most [`MAX_DEPTH`], nothing after the value,
//! the same error texts), the same output bytes as serialising
//! [`super::minimise::minimise`]'s value, the same disclosed and withheld paths
//! and the same counts. Where the old walk looks ahead (a list member is
//! withheld whole when any element has the wrong shape, a transformed list when
//! any element cannot be transformed), this one writes on and rolls back.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use ring::hmac;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::fields::FieldPath;
use super::minimise::{Transform, Tree, generalise_str, pseudonym};
use crate::text::Text;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// Keys of one object checked for duplicates by a linear scan up to this many;
/// beyond it a hash set, so a wide object costs no quadratic time.
const SCAN_KEYS: usize = 16;

/// What the document's root was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// An object: one element.
    Object,
    /// An array: one element per item.
    Array,
    /// Anything else: no elements.
    Scalar,
}

/// One element of a document (the document itself, or an item of a root
/// list), minimised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// The element as it may be delivered, serialised.
    pub bytes: Vec<u8>,
    /// Declared leaf paths delivered, sorted: the tree's own texts, shared
    /// rather than copied per exchange.
    pub disclosed: Vec<Text>,
    /// Declared paths present but not delivered, sorted.
    pub withheld: Vec<Text>,
    /// Keys the service does not declare: counted, never named.
    pub undeclared: u32,
    /// Declared positions holding the wrong shape, withheld whole.
    pub shape_violations: u32,
    /// What `Service::subject_in` finds in the element as received:
    /// `None` when the path is absent, `Some(None)` when it holds neither a
    /// string nor a number.
    pub subject: Option<Option<String>>,
}

/// A whole document, minimised element by element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The root's kind.
    pub root: Root,
    /// Items of a root list (or 1 for an object).
    pub count: usize,
    /// The first `max_elements` elements; the rest are validated only.
    pub elements: Vec<Part>,
}

/// Why a body is not an acceptable JSON document (the texts of
/// `exchange::json::parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// Parses `bytes` strictly and minimises each element with `tree` (as
/// `minimise(element)`), pseudonymising with `key`; `subject` is the
/// service's subject path, looked up in each element as received.
pub fn minimise_bytes(
    bytes: &[u8],
    tree: &Tree,
    key: &hmac::Key,
    subject: &FieldPath,
    max_elements: usize,
) -> Result<Doc, Malformed> {
    let text = std::str::from_utf8(bytes).map_err(|_| Malformed("the body is not UTF-8".into()))?;
    let mut st = State {
        out: Vec::with_capacity(bytes.len()),
        log: Vec::with_capacity(32),
        undeclared: 0,
        shape: 0,
        keys: Vec::with_capacity(32),
        subject_path: &subject.0,
        subject: None,
        key,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let doc = Top {
        st: &mut st,
        tree,
        max: max_elements,
    }
    .deserialize(&mut de)
    .map_err(|e| Malformed(format!("malformed JSON: {e}")))?;
    de.end()
        .map_err(|e| Malformed(format!("malformed JSON: {e}")))?;
    Ok(doc)
}

/// The pass's working state, shared by every nested visitor.
struct State<'a, 'de> {
    out: Vec<u8>,
    /// The nodes whose paths were disclosed (`true`) or withheld, in the
    /// order met; a log rather than sets so a look-ahead can be rolled back
    /// by truncation.
    log: Vec<(bool, &'a Tree)>,
    undeclared: u32,
    shape: u32,
    /// The keys of the objects open now, innermost last.
    keys: Vec<Cow<'de, str>>,
    subject_path: &'a [super::fields::Segment],
    subject: Option<Option<String>>,
    key: &'a hmac::Key,
}

/// A point to roll back to.
#[derive(Clone, Copy)]
struct Mark {
    out: usize,
    log: usize,
    undeclared: u32,
    shape: u32,
}

impl<'a> State<'a, '_> {
    fn mark(&self) -> Mark {
        Mark {
            out: self.out.len(),
            log: self.log.len(),
            undeclared: self.undeclared,
            shape: self.shape,
        }
    }
    fn back(&mut self, m: Mark) {
        self.out.truncate(m.out);
        self.log.truncate(m.log);
        self.undeclared = m.undeclared;
        self.shape = m.shape;
    }
    fn withheld(&mut self, node: &'a Tree) {
        self.log.push((false, node));
    }
    fn disclosed(&mut self, node: &'a Tree) {
        self.log.push((true, node));
    }
    fn misshaped(&mut self, node: &'a Tree) {
        self.shape = self.shape.saturating_add(1);
        self.log.push((false, node));
    }
    fn write<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Strings and numbers into a Vec: serde_json cannot fail here.
        let _ = serde_json::to_writer(&mut self.out, v);
    }
    /// Ends an element: its part, and the state cleared for the next.
    fn part(&mut self) -> Part {
        // By the path's rank in the tree, which orders as its name does:
        // comparing names was most of the pass's `memcmp`.
        self.log.sort_unstable_by_key(|&(d, n)| (d, n.rank));
        self.log.dedup_by_key(|&mut (d, n)| (d, n.rank));
        let split = self.log.partition_point(|(d, _)| !d);
        let names = |l: &[(bool, &Tree)]| l.iter().map(|(_, n)| n.path.clone()).collect();
        let withheld = names(&self.log[..split]);
        let disclosed = names(&self.log[split..]);
        self.log.clear();
        let part = Part {
            bytes: std::mem::take(&mut self.out),
            disclosed,
            withheld,
            undeclared: self.undeclared,
            shape_violations: self.shape,
            subject: self.subject.take(),
        };
        self.undeclared = 0;
        self.shape = 0;
        part
    }
}

/// A scalar as parsed, borrowed where it can be.
enum Scalar<'v> {
    Null,
    Bool(bool),
    Num(Number),
    Str(&'v str),
}

/// The document's root: elements one by one.
struct Top<'s, 'a, 'de> {
    st: &'s mut State<'a, 'de>,
    tree: &'a Tree,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_, 'de> {
    type Value = Doc;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_, 'de> {
    type Value = Doc;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Doc, E> {
        number_f64(v)?;
        Ok(scalar_doc())
    }
    fn visit_str<E>(self, _: &str) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(scalar_doc())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Doc, A::Error> {
        Walk {
            st: self.st,
            depth: 0,
            subj: Some(0),
            mode: Mode::Top(self.tree),
        }
        .visit_map(map)?;
        Ok(Doc {
            root: Root::Object,
            count: 1,
            elements: vec![self.st.part()],
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut elements = Vec::new();
        let mut count = 0usize;
        loop {
            let mode = if count < self.max {
                Mode::Top(self.tree)
            } else {
                Mode::Skip
            };
            let seed = Walk {
                st: self.st,
                depth: 1,
                subj: Some(0),
                mode,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            if count < self.max {
                elements.push(self.st.part());
            }
            count += 1;
        }
        Ok(Doc {
            root: Root::Array,
            count,
            elements,
        })
    }
}

fn scalar_doc() -> Doc {
    Doc {
        root: Root::Scalar,
        count: 0,
        elements: Vec::new(),
    }
}

fn number_f64<E: serde::de::Error>(v: f64) -> Result<Number, E> {
    Number::from_f64(v).ok_or_else(|| E::custom("number out of range"))
}

/// What a value's position asks of it.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Validated only (undeclared, misshaped, past the last element).
    Skip,
    /// An element, as `minimise` takes it: a list is minimised item by item.
    Top(&'a Tree),
    /// An element's object (`root`): anything else is a shape violation.
    Root(&'a Tree),
    /// The value of a declared member; `deliver` when its parent's members
    /// may go (`member`), otherwise only counted (`withhold_present`).
    Member { node: &'a Tree, deliver: bool },
    /// One item of a list member; `deliver` when the member goes.
    Item { node: &'a Tree, deliver: bool },
}

/// What became of a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Got {
    /// Nothing written.
    Nothing,
    /// Written (or, when counting only, of the declared shape).
    Wrote,
    /// A list item of the wrong shape: the whole member is withheld.
    Misfit,
    /// A list item its transform cannot apply to: the member is withheld.
    Untransformable,
}

/// The visitor for one value at one position.
struct Walk<'s, 'a, 'de> {
    st: &'s mut State<'a, 'de>,
    depth: usize,
    /// How many segments of the subject path lead here (`None`: off it).
    subj: Option<usize>,
    mode: Mode<'a>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = Got;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Got, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a, 'de> Walk<'_, 'a, 'de> {
    /// At the end of the subject path, the value is the subject (or not one).
    fn at_subject(&self) -> bool {
        self.subj == Some(self.st.subject_path.len())
    }

    fn scalar(mut self, v: Scalar<'_>) -> Got {
        if self.at_subject() {
            self.st.subject = Some(match &v {
                Scalar::Str(s) => Some((*s).to_string()),
                Scalar::Num(n) => Some(n.to_string()),
                _ => None,
            });
        }
        match self.mode {
            Mode::Skip => Got::Nothing,
            Mode::Top(_) | Mode::Root(_) => {
                self.st.shape = self.st.shape.saturating_add(1);
                self.st.out.extend_from_slice(b"{}");
                Got::Wrote
            }
            Mode::Member { node, .. } if node.list || !node.leaf => {
                self.st.misshaped(node);
                Got::Nothing
            }
            Mode::Member { node, deliver } => {
                if deliver && node.allowed && self.transformed(&v, node.transform) {
                    self.st.disclosed(node);
                    Got::Wrote
                } else {
                    self.st.withheld(node);
                    Got::Nothing
                }
            }
            Mode::Item { node, .. } if !node.leaf => Got::Misfit,
            Mode::Item { node, deliver } => {
                if !deliver || self.transformed(&v, node.transform) {
                    Got::Wrote
                } else {
                    Got::Untransformable
                }
            }
        }
    }

    /// Writes an allowed scalar, transformed; false when the transform
    /// cannot apply (nothing written).
    fn transformed(&mut self, v: &Scalar<'_>, t: Option<Transform>) -> bool {
        match (t, v) {
            (None, Scalar::Null) => self.st.write(&()),
            (None, Scalar::Bool(b)) => self.st.write(b),
            (None, Scalar::Num(n)) => self.st.write(n),
            (None, Scalar::Str(s)) => self.st.write(*s),
            (Some(Transform::Generalise(g)), Scalar::Str(s)) => match generalise_str(s, g) {
                Some(cut) => self.st.write(cut),
                None => return false,
            },
            (Some(Transform::Pseudonymise), Scalar::Str(s)) => {
                let p = pseudonym(self.st.key, s.as_bytes());
                self.st.write(&p);
            }
            (Some(Transform::Pseudonymise), Scalar::Num(n)) => {
                let p = pseudonym(self.st.key, n.to_string().as_bytes());
                self.st.write(&p);
            }
            (Some(_), _) => return false,
        }
        true
    }

    fn child(&mut self, subj: Option<usize>, mode: Mode<'a>) -> Walk<'_, 'a, 'de> {
        Walk {
            st: self.st,
            depth: self.depth + 1,
            subj,
            mode,
        }
    }

    fn check_depth<E: serde::de::Error>(&mut self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH}")));
        }
        if self.at_subject() {
            self.st.subject = Some(None);
        }
        Ok(())
    }

    /// Validates the rest of a list without keeping anything.
    fn skip_items<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(self.child(None, Mode::Skip))?
            .is_some()
        {}
        Ok(())
    }

    /// The items of a list member: written (and rolled back when any item
    /// turns out misshaped or untransformable).
    fn list_member<A: SeqAccess<'de>>(
        mut self,
        mut seq: A,
        node: &'a Tree,
        deliver: bool,
    ) -> Result<Got, A::Error> {
        let deliver = deliver && node.allowed;
        let mark = self.st.mark();
        if deliver {
            self.st.out.push(b'[');
        }
        let mut first = true;
        let mut untransformable = false;
        loop {
            if deliver && !first {
                self.st.out.push(b',');
            }
            let item = Mode::Item { node, deliver };
            match seq.next_element_seed(self.child(None, item))? {
                None => break,
                Some(Got::Misfit) => {
                    self.skip_items(&mut seq)?;
                    self.st.back(mark);
                    self.st.misshaped(node);
                    return Ok(Got::Nothing);
                }
                Some(Got::Untransformable) => untransformable = true,
                Some(_) => {}
            }
            first = false;
        }
        if deliver && !first {
            // The comma written before the end was found.
            self.st.out.pop();
        }
        if !deliver {
            if node.leaf {
                self.st.withheld(node);
            }
            return Ok(Got::Nothing);
        }
        if untransformable {
            self.st.back(mark);
            self.st.withheld(node);
            return Ok(Got::Nothing);
        }
        self.st.out.push(b']');
        if node.leaf {
            self.st.disclosed(node);
        }
        Ok(Got::Wrote)
    }

    /// An object's members: `deliver` writes the delivered ones (without the
    /// braces); otherwise they are only counted. Duplicate keys are refused.
    fn members<A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        node: Option<&'a Tree>,
        deliver: bool,
    ) -> Result<(), A::Error> {
        let start = self.st.keys.len();
        let mut wide: Option<HashSet<Cow<'de, str>>> = None;
        let mut first = true;
        while let Some(k) = map.next_key_seed(Key)? {
            let twice = match &mut wide {
                Some(set) => set.contains(&k),
                None => self.st.keys[start..].contains(&k),
            };
            if twice {
                return Err(A::Error::custom("a key appears twice in one object"));
            }
            let subj = match self.subj {
                Some(i)
                    if self
                        .st
                        .subject_path
                        .get(i)
                        .is_some_and(|s| s.name.as_str() == k) =>
                {
                    Some(i + 1)
                }
                _ => None,
            };
            let child = node.and_then(|n| n.children.get(&*k));
            if node.is_some() && child.is_none() {
                self.st.undeclared = self.st.undeclared.saturating_add(1);
            }
            let pos = self.st.out.len();
            if let (Some(_), true) = (child, deliver) {
                if !first {
                    self.st.out.push(b',');
                }
                self.st.write(&*k);
                self.st.out.push(b':');
            }
            match &mut wide {
                Some(set) => {
                    set.insert(k);
                }
                None => {
                    self.st.keys.push(k);
                    if self.st.keys.len() - start > SCAN_KEYS {
                        wide = Some(self.st.keys.drain(start..).collect());
                    }
                }
            }
            let mode = match child {
                Some(node) => Mode::Member { node, deliver },
                None => Mode::Skip,
            };
            let got = map.next_value_seed(self.child(subj, mode))?;
            if child.is_some() && deliver {
                if got == Got::Wrote {
                    first = false;
                } else {
                    self.st.out.truncate(pos);
                }
            }
        }
        self.st.keys.truncate(start);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = Got;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Num(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Num(v.into())))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Got, E> {
        let n = number_f64(v)?;
        Ok(self.scalar(Scalar::Num(n)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Str(v)))
    }
    fn visit_unit<E>(self) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Null))
    }
    fn visit_none<E>(self) -> Result<Got, E> {
        Ok(self.scalar(Scalar::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Got, A::Error> {
        self.check_depth()?;
        match self.mode {
            Mode::Top(tree) => {
                self.st.out.push(b'[');
                let mut first = true;
                loop {
                    let pos = self.st.out.len();
                    if !first {
                        self.st.out.push(b',');
                    }
                    if seq
                        .next_element_seed(self.child(None, Mode::Root(tree)))?
                        .is_none()
                    {
                        self.st.out.truncate(pos);
                        break;
                    }
                    first = false;
                }
                self.st.out.push(b']');
                Ok(Got::Wrote)
            }
            Mode::Member { node, deliver } if node.list => self.list_member(seq, node, deliver),
            mode => {
                self.skip_items(&mut seq)?;
                Ok(match mode {
                    Mode::Skip => Got::Nothing,
                    Mode::Top(_) | Mode::Root(_) => {
                        self.st.shape = self.st.shape.saturating_add(1);
                        self.st.out.extend_from_slice(b"{}");
                        Got::Wrote
                    }
                    Mode::Member { node, .. } => {
                        self.st.misshaped(node);
                        Got::Nothing
                    }
                    Mode::Item { .. } => Got::Misfit,
                })
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Got, A::Error> {
        self.check_depth()?;
        match self.mode {
            Mode::Skip => {
                self.members(&mut map, None, false)?;
                Ok(Got::Nothing)
            }
            Mode::Top(tree) | Mode::Root(tree) => {
                self.st.out.push(b'{');
                self.members(&mut map, Some(tree), true)?;
                self.st.out.push(b'}');
                Ok(Got::Wrote)
            }
            Mode::Member { node, .. } | Mode::Item { node, .. } if node.leaf => {
                self.members(&mut map, None, false)?;
                if let Mode::Item { .. } = self.mode {
                    return Ok(Got::Misfit);
                }
                self.st.misshaped(node);
                Ok(Got::Nothing)
            }
            Mode::Member { node, .. } if node.list => {
                self.members(&mut map, None, false)?;
                self.st.misshaped(node);
                Ok(Got::Nothing)
            }
            Mode::Member { node, deliver } | Mode::Item { node, deliver } => {
                let deliver = deliver
                    && match self.mode {
                        Mode::Member { .. } => node.allowed,
                        _ => true,
                    };
                if !deliver {
                    self.members(&mut map, Some(node), false)?;
                    return Ok(if let Mode::Item { .. } = self.mode {
                        Got::Wrote
                    } else {
                        Got::Nothing
                    });
                }
                self.st.out.push(b'{');
                self.members(&mut map, Some(node), true)?;
                self.st.out.push(b'}');
                Ok(Got::Wrote)
            }
        }
    }
}

/// A key, borrowed from the input unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
