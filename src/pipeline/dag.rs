//! The jobs as a graph of dependencies: a cycle, each job's ancestors,
//! and an order where each job follows its dependencies.

use super::PlannedJob;
use std::collections::{HashMap, HashSet};

/// A cycle as job names, first name repeated at the end.
pub(super) fn find_cycle(jobs: &[PlannedJob]) -> Option<Vec<String>> {
    let deps: HashMap<&str, &[String]> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.depends_on.as_slice()))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut mark: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a [String]>,
        mark: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, 1);
        stack.push(n);
        for d in deps.get(n).copied().unwrap_or_default() {
            match mark.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| *s == d.as_str()).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(d.clone());
                    // Written in the direction of the arrows: a -> b means b depends on a.
                    cycle.reverse();
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d.as_str(), deps, mark, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        mark.insert(n, 2);
        None
    }
    for j in jobs {
        if mark.get(j.name.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(j.name.as_str(), &deps, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

pub(super) fn ancestors(jobs: &[PlannedJob]) -> HashMap<String, HashSet<String>> {
    let deps: HashMap<&str, &[String]> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.depends_on.as_slice()))
        .collect();
    let mut out = HashMap::new();
    for j in jobs {
        let mut seen = HashSet::new();
        let mut todo: Vec<&str> = j.depends_on.iter().map(|s| s.as_str()).collect();
        while let Some(n) = todo.pop() {
            if seen.insert(n.to_string()) {
                todo.extend(
                    deps.get(n)
                        .copied()
                        .unwrap_or_default()
                        .iter()
                        .map(|s| s.as_str()),
                );
            }
        }
        out.insert(j.name.clone(), seen);
    }
    out
}

/// Orders jobs so each follows its dependencies, keeping file order where
/// the graph allows (the graph is acyclic here).
pub(super) fn topo_order(jobs: Vec<PlannedJob>) -> Vec<PlannedJob> {
    let mut placed: HashSet<String> = HashSet::new();
    let mut rest = jobs;
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let before = rest.len();
        let mut i = 0;
        while i < rest.len() {
            if rest[i].depends_on.iter().all(|d| placed.contains(d)) {
                let j = rest.remove(i);
                placed.insert(j.name.clone());
                out.push(j);
                i = 0;
            } else {
                i += 1;
            }
        }
        if rest.len() == before {
            // Unreachable for a validated pipeline; keep every job anyway.
            out.append(&mut rest);
        }
    }
    out
}
