//! The layout stays legible: no import cycle between the files of `src/`, no
//! file over 800 lines, no function over 120 lines.
//!
//! Edges are read from the source text: `crate::a::b`, `super::…` and
//! `self::…` paths (in `use` statements, braces expanded, and in code), and a
//! parent's use of its child's items through `child::…`. A child's use of its
//! parent through `super::` is an edge too, so a parent that calls into a
//! child which reaches back for the parent's items is a cycle: shared items
//! belong in a module of their own.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, string contents and its test
/// module (tests sit at the end of a file; their `super::` is the file).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && prev != '\'' {
                in_str = !in_str;
                kept.push('"');
            } else if !in_str {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = format!("{prefix}{}", &tree[..open]);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&head, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&head, &inner[start..], out);
    } else if !tree.is_empty() {
        out.push(format!("{prefix}{tree}"));
    }
}

/// Every path mentioned in the code: from `use` statements (expanded) and
/// from `crate::`, `super::`, `self::` or `name::` paths in the rest.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = String::new();
    let mut in_use = None::<String>;
    for line in code.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        if let Some(acc) = in_use.as_mut() {
            acc.push_str(line);
        } else if let Some(u) = t.strip_prefix("use ") {
            in_use = Some(u.to_string());
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
        if let Some(acc) = &in_use
            && acc.contains(';')
        {
            let stmt = acc[..acc.find(';').unwrap_or(acc.len())].to_string();
            expand("", &stmt.replace(char::is_whitespace, ""), &mut out);
            in_use = None;
        }
    }
    let bytes = rest.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts =
            is_ident(bytes[i]) && (i == 0 || (!is_ident(bytes[i - 1]) && bytes[i - 1] != b':'));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        loop {
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let more = bytes.get(i) == Some(&b':')
                && bytes.get(i + 1) == Some(&b':')
                && bytes.get(i + 2).is_some_and(|b| is_ident(*b));
            if !more {
                break;
            }
            i += 2;
        }
        let p = &rest[start..i];
        if p.contains("::") {
            out.push(p.to_string());
        }
    }
    out
}

/// The module a path leads to: the longest prefix that is a module of the
/// crate, resolved from `from`.
fn target(
    from: &[String],
    children: &BTreeSet<String>,
    path: &str,
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (Vec<String>, &[&str]) = match segs.first()? {
        &"crate" => (Vec::new(), &segs[1..]),
        &"self" => (from.to_vec(), &segs[1..]),
        &"super" => {
            let mut b = from.to_vec();
            let mut n = 0;
            while segs.get(n) == Some(&"super") {
                b.pop();
                n += 1;
            }
            (b, &segs[n..])
        }
        first if children.contains(*first) => (from.to_vec(), &segs[..]),
        _ => return None,
    };
    let mut best = base.clone();
    for s in rest {
        base.push((*s).to_string());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    (best != from).then_some(best)
}

fn cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn reaches(
    g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    from: &[String],
    to: &[String],
) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_vec()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(g.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Functions longer than the limit: `(line, name, lines)`.
fn long_functions(text: &str) -> Vec<(usize, String, usize)> {
    let stripped = code(text);
    let lines: Vec<&str> = stripped.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let Some(at) = t.find("fn ") else { continue };
        let before = &t[..at];
        if !before.split_whitespace().all(|w| {
            matches!(
                w,
                "pub" | "pub(crate)" | "pub(super)" | "async" | "const" | "unsafe"
            )
        }) {
            continue;
        }
        let fname: String = t[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i32;
        let mut opened = false;
        for (j, l2) in lines.iter().enumerate().skip(i) {
            for c in l2.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && l2.trim_end().ends_with(';') {
                break;
            }
            if opened && depth <= 0 {
                let n = j - i + 1;
                if n > MAX_FN_LINES {
                    out.push((i + 1, fname.clone(), n));
                }
                break;
            }
        }
    }
    out
}

#[test]
fn no_cycles_no_long_files_no_long_functions() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let lib: Vec<PathBuf> = all
        .iter()
        .filter(|f| !f.ends_with("main.rs") && !f.starts_with(src.join("bin")))
        .cloned()
        .collect();
    let modules: BTreeSet<Vec<String>> = lib.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            problems.push(format!("src/{rel}: {n} lines (at most {MAX_FILE_LINES})"));
        }
        for (line, fname, len) in long_functions(&text) {
            problems.push(format!(
                "src/{rel}:{line}: fn {fname} is {len} lines (at most {MAX_FN_LINES})"
            ));
        }
        if !lib.contains(f) {
            continue;
        }
        let m = module_of(&src, f);
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(&m))
            .map(|c| c[m.len()].clone())
            .collect();
        let edges = graph.entry(m.clone()).or_default();
        for p in paths(&code(&text)) {
            if let Some(t) = target(&m, &children, &p, &modules) {
                // A parent declaring its children (`pub mod x;`) is not a use.
                edges.insert(t);
            }
        }
    }
    // The crate root only declares modules and re-exports.
    graph.remove(&Vec::new());
    for e in graph.values_mut() {
        e.remove(&Vec::new());
    }
    if let Some(c) = cycle(&graph) {
        problems.push(format!(
            "import cycle: {}",
            c.iter().map(|m| name(m)).collect::<Vec<_>>().join(" → ")
        ));
        // Every edge that closes a cycle, so one run shows all the work.
        for (a, outs) in &graph {
            for b in outs {
                if reaches(&graph, b, a) {
                    problems.push(format!("  edge in a cycle: {} → {}", name(a), name(b)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must() {
    let mut out = Vec::new();
    expand("", "super::{a,b::{c,d}}", &mut out);
    assert_eq!(out, ["super::a", "super::b::c", "super::b::d"]);
    let modules: BTreeSet<Vec<String>> = [vec![], vec!["x".into()], vec!["x".into(), "y".into()]]
        .into_iter()
        .collect();
    let kids: BTreeSet<String> = ["y".to_string()].into_iter().collect();
    let x = vec!["x".to_string()];
    assert_eq!(
        target(&x, &kids, "y::f", &modules),
        Some(vec!["x".into(), "y".into()])
    );
    let y = vec!["x".to_string(), "y".to_string()];
    assert_eq!(
        target(&y, &BTreeSet::new(), "super::Item", &modules),
        Some(x.clone())
    );
    let long = format!("fn f() {{\n{}}}\n", "    let a = 1;\n".repeat(130));
    assert_eq!(long_functions(&long).len(), 1);
    assert!(long_functions("fn g();\nfn h() {}\n").is_empty());
}
