//! The covenant as a picture: who gives which categories of data to whom, for
//! which purpose. SVG drawn by the project itself (no Graphviz at run time),
//! and DOT for those who have Graphviz.
//!
//! Layout: data givers in the left column, recipients in the right one, one
//! edge per (giver → recipient) pair carrying one label line per purpose with
//! its categories; special categories (health, criminal) in red and marked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::fields::Category;
use super::model::{Pilot, PolicySet};

/// One labelled edge: giver → recipient, the purposes with their categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Partner that gives the data.
    pub from: String,
    /// Partner that receives it.
    pub to: String,
    /// Purpose → categories of the fields that flow.
    pub purposes: BTreeMap<String, BTreeSet<Category>>,
}

/// The edges of a pilot, in a stable order.
pub fn edges(pilot: &Pilot) -> Vec<Edge> {
    let mut map: BTreeMap<(String, String), BTreeMap<String, BTreeSet<Category>>> = BTreeMap::new();
    for (rule, d, from, to) in pilot.flows() {
        let cats = map
            .entry((from.to_string(), to.to_string()))
            .or_default()
            .entry(rule.purpose.to_string())
            .or_default();
        for p in rule.allowed(d) {
            cats.extend(rule.service.categories_of(p));
        }
    }
    map.into_iter()
        .map(|((from, to), purposes)| Edge { from, to, purposes })
        .collect()
}

fn label(purpose: &str, cats: &BTreeSet<Category>) -> String {
    let list: Vec<String> = cats
        .iter()
        .map(|c| {
            if c.is_special() {
                format!("⚠{}", c.as_str())
            } else {
                c.as_str().to_string()
            }
        })
        .collect();
    format!("{purpose}: {}", list.join(", "))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn name_of(set: &PolicySet, id: &str) -> String {
    set.partners
        .get(id)
        .map_or_else(|| id.to_string(), |p| p.name.clone())
}

/// The pilot's flows as DOT.
pub fn dot(set: &PolicySet, pilot: &Pilot) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        pilot.id
    );
    for p in &pilot.partners {
        let _ = writeln!(
            out,
            "  \"{p}\" [label=\"{}\\n({p})\"];",
            name_of(set, p).replace('"', "'")
        );
    }
    for e in edges(pilot) {
        let special = is_special(&e);
        let lines: Vec<String> = e.purposes.iter().map(|(p, c)| label(p, c)).collect();
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"{}];",
            e.from,
            e.to,
            lines.join("\\n"),
            if special {
                ", color=red, fontcolor=red"
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}

const NODE_W: f64 = 230.0;
const NODE_H: f64 = 46.0;
const GAP: f64 = 18.0;
const LINE_H: f64 = 14.0;
const WIDTH: f64 = 1200.0;
const LEFT_X: f64 = 20.0;
const RIGHT_X: f64 = WIDTH - NODE_W - 20.0;
const SPECIAL_RED: &str = "#b3261e";

fn is_special(e: &Edge) -> bool {
    e.purposes.values().flatten().any(|c| c.is_special())
}

/// Height of a column of `n` nodes.
fn col_h(n: usize) -> f64 {
    n as f64 * (NODE_H + GAP)
}

/// Where everything goes: the two columns of partners above, the numbered
/// legend below in two columns.
struct Layout<'a> {
    givers: Vec<&'a String>,
    receivers: Vec<&'a String>,
    graph_h: f64,
    /// The legend entry that starts the right column.
    split: usize,
    height: f64,
}

impl<'a> Layout<'a> {
    fn new(pilot: &'a Pilot, edges: &[Edge]) -> Self {
        let givers: Vec<&String> = pilot
            .partners
            .iter()
            .filter(|p| edges.iter().any(|e| &e.from == *p))
            .collect();
        let mut receivers: Vec<&String> = pilot
            .partners
            .iter()
            .filter(|p| edges.iter().any(|e| &e.to == *p))
            .collect();
        // Partners that neither give nor receive still belong in the picture.
        let idle: Vec<&String> = pilot
            .partners
            .iter()
            .filter(|p| !givers.contains(p) && !receivers.contains(p))
            .collect();
        receivers.extend(idle.iter().copied());
        let graph_h = col_h(givers.len().max(receivers.len())) + 60.0;
        let (split, legend_lines) = legend_split(edges);
        let height = graph_h + 40.0 + legend_lines as f64 * LINE_H + 20.0;
        Layout {
            givers,
            receivers,
            graph_h,
            split,
            height,
        }
    }

    /// Top of the `i`th of `n` nodes in a column, the column centred.
    fn y_of(&self, i: usize, n: usize) -> f64 {
        let top = (self.graph_h - col_h(n)) / 2.0 + 50.0;
        top + i as f64 * (NODE_H + GAP)
    }
}

/// Where the legend's right column starts, so both columns hold about as
/// many lines (one per edge, one per purpose), and the longer one's lines.
fn legend_split(edges: &[Edge]) -> (usize, usize) {
    let lines_of = |e: &Edge| 1 + e.purposes.len();
    let total_lines: usize = edges.iter().map(lines_of).sum();
    let mut split = edges.len();
    let mut acc = 0;
    for (k, e) in edges.iter().enumerate() {
        acc += lines_of(e);
        if acc * 2 >= total_lines {
            split = k + 1;
            break;
        }
    }
    let left_lines: usize = edges[..split].iter().map(lines_of).sum();
    let right_lines = total_lines - left_lines;
    (split, left_lines.max(right_lines))
}

/// The pilot's flows as SVG.
pub fn svg(set: &PolicySet, pilot: &Pilot) -> String {
    let edges = edges(pilot);
    let layout = Layout::new(pilot, &edges);
    let mut s = String::new();
    svg_head(&mut s, pilot, layout.height);
    // Edges first, so nodes sit on top.
    for (i, e) in edges.iter().enumerate() {
        svg_edge(&mut s, &layout, i + 1, e);
    }
    svg_legend(&mut s, set, &layout, &edges);
    for (i, g) in layout.givers.iter().enumerate() {
        svg_node(&mut s, set, LEFT_X, layout.y_of(i, layout.givers.len()), g);
    }
    for (i, r) in layout.receivers.iter().enumerate() {
        svg_node(
            &mut s,
            set,
            RIGHT_X,
            layout.y_of(i, layout.receivers.len()),
            r,
        );
    }
    s.push_str("</svg>\n");
    s
}

fn svg_head(s: &mut String, pilot: &Pilot, height: f64) {
    let width = WIDTH;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r##"<title>{} — data flows of covenant {} {}</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker>
<marker id="arrow-special" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#b3261e"/></marker></defs>
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="22" font-size="15" font-weight="bold">{} — covenant {} {} (valid {} to {})</text>
<text x="20" y="38" fill="#555">Gives data (left) → receives (right). Each numbered flow is listed below with its purposes and the categories of data; ⚠ and red mark special categories (GDPR art. 9 and 10).</text>"##,
        esc(&pilot.name),
        esc(&pilot.covenant.id),
        esc(&pilot.covenant.version),
        esc(&pilot.name),
        esc(&pilot.covenant.id),
        esc(&pilot.covenant.version),
        pilot.covenant.valid_from,
        pilot.covenant.valid_until,
    );
}

fn svg_node(s: &mut String, set: &PolicySet, x: f64, y: f64, id: &str) {
    let (node_w, node_h) = (NODE_W, NODE_H);
    let _ = writeln!(
        s,
        r##"<g class="partner" data-partner="{id}"><rect x="{x}" y="{y:.1}" width="{node_w}" height="{node_h}" rx="8" fill="#eef3f9" stroke="#4a6a8a"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text></g>"##,
        x + node_w / 2.0,
        y + 19.0,
        esc(&name_of(set, id).chars().take(34).collect::<String>()),
        x + node_w / 2.0,
        y + 35.0,
        esc(id)
    );
}

/// One edge as a curve with its number `n` in a badge.
fn svg_edge(s: &mut String, layout: &Layout, n: usize, e: &Edge) {
    let Some(gi) = layout.givers.iter().position(|g| **g == e.from) else {
        return;
    };
    let Some(ri) = layout.receivers.iter().position(|r| **r == e.to) else {
        return;
    };
    let (x1, y1) = (
        LEFT_X + NODE_W,
        layout.y_of(gi, layout.givers.len()) + NODE_H / 2.0,
    );
    let (x2, y2) = (
        RIGHT_X,
        layout.y_of(ri, layout.receivers.len()) + NODE_H / 2.0,
    );
    let special = is_special(e);
    let (color, marker) = if special {
        (SPECIAL_RED, "arrow-special")
    } else {
        ("#7a8796", "arrow")
    };
    let (c1, c2) = (x1 + 160.0, x2 - 160.0);
    let _ = writeln!(
        s,
        r#"<path class="flow" data-from="{}" data-to="{}" d="M {x1:.1} {y1:.1} C {c1:.1} {y1:.1}, {c2:.1} {y2:.1}, {x2:.1} {y2:.1}" fill="none" stroke="{color}" stroke-width="{}" marker-end="url(#{marker})" opacity="0.7"/>"#,
        esc(&e.from),
        esc(&e.to),
        if special { 2.0 } else { 1.2 },
    );
    // Spread along the curve by the golden ratio, so badges of converging
    // edges do not sit on each other.
    let t = 0.25 + 0.5 * ((n as f64 * 0.618) % 1.0);
    let u = 1.0 - t;
    let bx = u * u * u * x1 + 3.0 * u * u * t * c1 + 3.0 * u * t * t * c2 + t * t * t * x2;
    let by = u * u * u * y1 + 3.0 * u * u * t * y1 + 3.0 * u * t * t * y2 + t * t * t * y2;
    let _ = writeln!(
        s,
        r##"<g class="badge"><circle cx="{bx:.1}" cy="{by:.1}" r="8" fill="#fff" stroke="{color}"/><text x="{bx:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="{color}">{n}</text></g>"##,
        by + 3.0
    );
}

/// Per numbered edge, its partners and one line per purpose, in two columns.
fn svg_legend(s: &mut String, set: &PolicySet, layout: &Layout, edges: &[Edge]) {
    let mut ly = layout.graph_h + 40.0;
    let mut lx = 20.0;
    for (k, e) in edges.iter().enumerate() {
        let n = k + 1;
        if k == layout.split {
            ly = layout.graph_h + 40.0;
            lx = WIDTH / 2.0 + 10.0;
        }
        let color = if is_special(e) { SPECIAL_RED } else { "#333" };
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" font-weight="bold" fill="{color}">{n}. {} → {}</text>"#,
            esc(&name_of(set, &e.from)),
            esc(&name_of(set, &e.to))
        );
        ly += LINE_H;
        for (purpose, cats) in &e.purposes {
            let fill = if cats.iter().any(|c| c.is_special()) {
                SPECIAL_RED
            } else {
                "#222"
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ly:.1}" fill="{fill}">{}</text>"#,
                lx + 16.0,
                esc(&label(purpose, cats))
            );
            ly += LINE_H;
        }
    }
}
