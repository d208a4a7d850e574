//! The job graph drawn for people: Mermaid or Graphviz dot, with each
//! job's state when given.

use super::Pipeline;
use std::collections::HashMap;

impl Pipeline {
    /// The graph in Mermaid or Graphviz dot, with states when given.
    pub fn graph(&self, format: GraphFormat, states: &HashMap<String, String>) -> String {
        let edges: Vec<(&str, &str)> = self
            .jobs
            .iter()
            .flat_map(|j| {
                j.depends_on
                    .iter()
                    .map(move |d| (d.as_str(), j.name.as_str()))
            })
            .collect();
        let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
        graph(format, &names, &edges, states)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Renders a job graph. Edges go from a job to the job that depends on it.
///
/// Node ids are `n0`, `n1`, ... by the job's position in `names`, so two
/// names that differ only in punctuation (`a-b`, `a_b`) stay two nodes and
/// the same list gives the same ids; the job name (and its state, when
/// given) is the node's label, escaped for the format. An edge naming a job
/// not in `names` is left out.
pub fn graph(
    format: GraphFormat,
    names: &[&str],
    edges: &[(&str, &str)],
    states: &HashMap<String, String>,
) -> String {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|(a, b)| Some((*index.get(a)?, *index.get(b)?)))
        .collect();
    // The label: the name, then the state if any, on the next line.
    let label = |n: &str, escape: fn(&str) -> String, newline: &str| match states.get(n) {
        Some(s) => format!("{}{newline}{}", escape(n), escape(s)),
        None => escape(n),
    };
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for (i, n) in names.iter().enumerate() {
                let l = label(n, mermaid_text, "<br/>");
                out.push_str(&format!("    n{i}[\"{l}\"]\n"));
            }
            for (a, b) in &edges {
                out.push_str(&format!("    n{a} --> n{b}\n"));
            }
            for (i, n) in names.iter().enumerate() {
                if let Some(s) = states.get(*n) {
                    out.push_str(&format!("    class n{i} {}\n", mermaid_class(s)));
                }
            }
            if !states.is_empty() {
                out.push_str("    classDef finished fill:#c8e6c9\n");
                out.push_str("    classDef failed fill:#ffcdd2\n");
                out.push_str("    classDef aborted fill:#ffcdd2\n");
                out.push_str("    classDef skipped fill:#eeeeee\n");
                out.push_str("    classDef cancelled fill:#eeeeee\n");
                out.push_str("    classDef submitted fill:#bbdefb\n");
                out.push_str("    classDef retry_wait fill:#fff9c4\n");
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph pipeline {\n    rankdir=TB;\n    node [shape=box];\n");
            for (i, n) in names.iter().enumerate() {
                let l = label(n, dot_text, "\\n");
                out.push_str(&format!("    n{i} [label=\"{l}\"];\n"));
            }
            for (a, b) in &edges {
                out.push_str(&format!("    n{a} -> n{b};\n"));
            }
            out.push_str("}\n");
        }
    }
    out
}

/// `s` with each character of `table` replaced by its text, and line
/// breaks by spaces (a label line is one line).
fn escape(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match table.iter().find(|(k, _)| *k == c) {
            Some((_, text)) => out.push_str(text),
            None if c == '\n' || c == '\r' => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

/// Text for a Mermaid label in `["..."]`: characters Mermaid reads as
/// markup or as the end of the label become its entity codes.
fn mermaid_text(s: &str) -> String {
    escape(
        s,
        &[
            ('"', "#quot;"),
            ('#', "#35;"),
            ('&', "#amp;"),
            ('<', "#lt;"),
            ('>', "#gt;"),
        ],
    )
}

/// A Mermaid class name for a state: lower case, letters, digits and _.
fn mermaid_class(state: &str) -> String {
    state
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Text for a DOT double-quoted string (one line of a label).
fn dot_text(s: &str) -> String {
    escape(s, &[('\\', "\\\\"), ('"', "\\\"")])
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check;
    use super::*;

    /// The nodes (id -> label) and edges (label -> label) of a rendered
    /// graph, read back the way Mermaid and Graphviz read them.
    fn read_graph(text: &str) -> (HashMap<String, String>, Vec<(String, String)>) {
        let mut nodes = HashMap::new();
        let mut edges = Vec::new();
        for line in text.lines().map(str::trim) {
            let line = line.trim_end_matches(';');
            if let Some((a, b)) = line.split_once(" --> ").or(line.split_once(" -> ")) {
                edges.push((a.to_string(), b.to_string()));
            } else if let Some((id, rest)) =
                line.split_once("[\"").or(line.split_once(" [label=\""))
            {
                let label = rest.trim_end_matches(']').trim_end_matches('"');
                let old = nodes.insert(id.to_string(), label.to_string());
                assert!(old.is_none(), "node id {id} used twice:\n{text}");
            }
        }
        let edges = edges
            .into_iter()
            .map(|(a, b)| {
                let name = |id: &str| {
                    nodes
                        .get(id)
                        .unwrap_or_else(|| panic!("edge to an undeclared node {id}:\n{text}"))
                        .clone()
                };
                (name(&a), name(&b))
            })
            .collect();
        (nodes, edges)
    }

    #[test]
    fn graphs() {
        let p = check(
            "[jobs.a]\nsql = \"SELECT 1\"\n[jobs.b]\nsql = \"SELECT 1\"\ndepends_on = [\"a\"]\n",
        )
        .unwrap();
        let m = p.graph(GraphFormat::Mermaid, &HashMap::new());
        assert!(m.starts_with("flowchart TD\n"));
        assert_eq!(
            m,
            "flowchart TD\n    n0[\"a\"]\n    n1[\"b\"]\n    n0 --> n1\n"
        );
        let states = HashMap::from([("a".to_string(), "FINISHED".to_string())]);
        let d = p.graph(GraphFormat::Dot, &states);
        assert!(d.contains("    n0 [label=\"a\\nFINISHED\"];\n"), "{d}");
        assert!(d.contains("    n1 [label=\"b\"];\n"), "{d}");
        assert!(d.contains("    n0 -> n1;\n"), "{d}");
        let m = p.graph(GraphFormat::Mermaid, &states);
        assert!(m.contains("    n0[\"a<br/>FINISHED\"]\n"), "{m}");
        assert!(m.contains("    class n0 finished\n"), "{m}");
    }

    #[test]
    fn names_that_differ_only_in_punctuation_are_distinct_nodes() {
        // a-b and a_b are both valid names; a-b feeds x, a_b feeds y.
        let p = check(
            "[jobs.a-b]\nsql = \"SELECT 1\"\n[jobs.a_b]\nsql = \"SELECT 2\"\n\
             [jobs.x]\nsql = \"SELECT 3\"\ndepends_on = [\"a-b\"]\n\
             [jobs.y]\nsql = \"SELECT 4\"\ndepends_on = [\"a_b\"]\n",
        )
        .unwrap();
        for format in [GraphFormat::Mermaid, GraphFormat::Dot] {
            let text = p.graph(format, &HashMap::new());
            let (nodes, mut edges) = read_graph(&text);
            let mut labels: Vec<&str> = nodes.values().map(String::as_str).collect();
            labels.sort_unstable();
            assert_eq!(labels, ["a-b", "a_b", "x", "y"], "{format:?}:\n{text}");
            edges.sort();
            let want = [("a-b", "x"), ("a_b", "y")].map(|(a, b)| (a.to_string(), b.to_string()));
            assert_eq!(edges, want, "{format:?}:\n{text}");
            // Stable: the same pipeline gives the same text.
            assert_eq!(text, p.graph(format, &HashMap::new()));
        }
    }

    #[test]
    fn graph_labels_are_escaped() {
        let names = ["q\"uo\\te", "<b>#1&"];
        let edges = [(names[0], names[1])];
        let states = HashMap::from([(names[0].to_string(), "FAILED".to_string())]);
        let d = graph(GraphFormat::Dot, &names, &edges, &states);
        assert!(
            d.contains("    n0 [label=\"q\\\"uo\\\\te\\nFAILED\"];\n"),
            "{d}"
        );
        assert!(d.contains("    n1 [label=\"<b>#1&\"];\n"), "{d}");
        let m = graph(GraphFormat::Mermaid, &names, &edges, &states);
        assert!(m.contains("    n0[\"q#quot;uo\\te<br/>FAILED\"]\n"), "{m}");
        assert!(m.contains("    n1[\"#lt;b#gt;#35;1#amp;\"]\n"), "{m}");
        assert!(m.contains("    n0 --> n1\n"), "{m}");
        // An edge to a job that is not drawn is left out.
        let m = graph(GraphFormat::Mermaid, &names[..1], &edges, &HashMap::new());
        assert_eq!(m, "flowchart TD\n    n0[\"q#quot;uo\\te\"]\n");
    }
}
