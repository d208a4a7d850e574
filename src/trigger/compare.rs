//! The matchers that compare more than equality: numeric ranges,
//! wildcards and CIDR networks, each checked when the pattern is parsed.

use serde_json::Value;
use std::net::IpAddr;

/// Bounds of a numeric matcher; `=` is both bounds, inclusive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Range {
    lower: Option<(f64, bool)>,
    upper: Option<(f64, bool)>,
}

/// A wildcard pattern: the literal parts between its stars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wildcard {
    parts: Vec<String>,
}

/// A network: an address and a prefix length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cidr {
    network: IpAddr,
    bits: u32,
}

impl Range {
    pub(crate) fn parse(v: &Value, at: &str) -> Result<Range, String> {
        const SHAPE: &str = "one or two comparisons, each an operator (=, <, <=, > or >=) and a number, like [\">\", 0, \"<=\", 5]";
        let Value::Array(items) = v else {
            return Err(format!("{at}: must be a list of {SHAPE}"));
        };
        if items.len() != 2 && items.len() != 4 {
            return Err(format!("{at}: {SHAPE}"));
        }
        let mut comparisons = Vec::new();
        for pair in items.chunks(2) {
            let op = match &pair[0] {
                Value::String(op) if ["=", "<", "<=", ">", ">="].contains(&op.as_str()) => op,
                other => {
                    return Err(format!(
                        "{at}: unknown operator {other}: use =, <, <=, > or >="
                    ))
                }
            };
            let n = match &pair[1] {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                other => {
                    return Err(format!(
                        "{at}: the value after {op:?} must be a number, not {other}"
                    ))
                }
            };
            if !n.is_finite() {
                return Err(format!("{at}: {} is not a usable number", pair[1]));
            }
            comparisons.push((op.as_str(), n, &pair[1]));
        }
        let mut range = Range {
            lower: None,
            upper: None,
        };
        match comparisons.as_slice() {
            [("=", n, _)] => {
                range.lower = Some((*n, true));
                range.upper = Some((*n, true));
            }
            [(op, n, _)] if op.starts_with('>') => range.lower = Some((*n, *op == ">=")),
            [(op, n, _)] => range.upper = Some((*n, *op == "<=")),
            [(lo, a, a_text), (hi, b, b_text)] => {
                if !lo.starts_with('>') || !hi.starts_with('<') {
                    return Err(format!(
                        "{at}: a range is a lower bound (> or >=) then an upper bound (< or <=), like [\">\", 0, \"<=\", 5]"
                    ));
                }
                if a >= b {
                    return Err(format!(
                        "{at}: the lower bound {a_text} must be less than the upper bound {b_text}"
                    ));
                }
                range.lower = Some((*a, *lo == ">="));
                range.upper = Some((*b, *hi == "<="));
            }
            _ => return Err(format!("{at}: {SHAPE}")),
        }
        Ok(range)
    }

    pub(crate) fn contains(&self, n: f64) -> bool {
        let above = match self.lower {
            Some((b, inclusive)) => n > b || (inclusive && n == b),
            None => true,
        };
        let below = match self.upper {
            Some((b, inclusive)) => n < b || (inclusive && n == b),
            None => true,
        };
        above && below
    }
}

impl Wildcard {
    /// `*` is any run of characters (none included), `\*` a star and
    /// `\\` a backslash; two `*` in a row are refused, as EventBridge does.
    pub(crate) fn parse(text: &str, at: &str) -> Result<Wildcard, String> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().enumerate();
        let mut after_star = false;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => {
                        parts.last_mut().into_iter().for_each(|p| p.push(e));
                        after_star = false;
                    }
                    _ => {
                        return Err(format!(
                            "{at} {text:?}: the \\ at character {} escapes nothing: write \\* for a star, \\\\ for a backslash",
                            i + 1
                        ))
                    }
                },
                '*' if after_star => {
                    return Err(format!(
                        "{at} {text:?}: consecutive * at character {}: one * already matches any run of characters",
                        i + 1
                    ))
                }
                '*' => {
                    parts.push(String::new());
                    after_star = true;
                }
                c => {
                    parts.last_mut().into_iter().for_each(|p| p.push(c));
                    after_star = false;
                }
            }
        }
        Ok(Wildcard { parts })
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            return s == first; // no star
        };
        if s.len() < first.len() + last.len()
            || !s.starts_with(first.as_str())
            || !s.ends_with(last.as_str())
        {
            return false;
        }
        // Between the first and last parts, each middle part in order,
        // leftmost first (enough with `*` as the only wildcard).
        let mut between = &s[first.len()..s.len() - last.len()];
        for part in middle {
            match between.find(part.as_str()) {
                Some(i) => between = &between[i + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Cidr {
    pub(crate) fn parse(text: &str, at: &str) -> Result<Cidr, String> {
        let bad =
            |why: &str| format!("{at} {text:?}: {why}, like \"10.0.0.0/24\" or \"2001:db8::/32\"");
        let (addr, bits) = text
            .split_once('/')
            .ok_or_else(|| bad("write an address and a prefix length"))?;
        let network: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits: u32 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| bad(&format!("the prefix length is 0 to {max}")))?;
        Ok(Cidr { network, bits })
    }

    pub(crate) fn contains(&self, s: &str) -> bool {
        match (self.network, s.parse::<IpAddr>()) {
            (IpAddr::V4(net), Ok(IpAddr::V4(a))) => {
                let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), Ok(IpAddr::V6(a))) => {
                let mask = u128::MAX.checked_shl(128 - self.bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::trigger::matcher::testing::{err, hit, missing};
    use serde_json::json;

    #[test]
    fn wildcard() {
        let p = json!([{ "wildcard": "dir/*.csv" }]);
        assert!(hit(p.clone(), json!("dir/a.csv")));
        assert!(hit(p.clone(), json!("dir/.csv")));
        assert!(hit(p.clone(), json!("dir/sub/a.csv")));
        assert!(!hit(p.clone(), json!("dir/a.csv.gz")));
        assert!(!hit(p.clone(), json!("other/a.csv")));
        assert!(!hit(p, json!("dir.csv")));
        assert!(hit(json!([{ "wildcard": "*" }]), json!("")));
        assert!(hit(json!([{ "wildcard": "a*b*c" }]), json!("abc")));
        assert!(hit(json!([{ "wildcard": "a*b*c" }]), json!("axbxbxc")));
        assert!(!hit(json!([{ "wildcard": "a*b*c" }]), json!("axcxb")));
        assert!(!hit(json!([{ "wildcard": "a*a" }]), json!("a")));
        assert!(hit(json!([{ "wildcard": "*lib*" }]), json!("/usr/lib/x")));
        assert!(hit(json!([{ "wildcard": "plain" }]), json!("plain")));
        assert!(!hit(json!([{ "wildcard": "plain" }]), json!("plainer")));
        assert!(!hit(json!([{ "wildcard": "*" }]), json!(5)));
    }

    #[test]
    fn wildcard_escapes() {
        let star = json!([{ "wildcard": "a\\*b" }]);
        assert!(hit(star.clone(), json!("a*b")));
        assert!(!hit(star, json!("axb")));
        let both = json!([{ "wildcard": "\\**" }]);
        assert!(hit(both.clone(), json!("*.csv")));
        assert!(hit(both.clone(), json!("*")));
        assert!(!hit(both, json!("x*")));
        let backslash = json!([{ "wildcard": "c:\\\\*" }]);
        assert!(hit(backslash.clone(), json!("c:\\temp")));
        assert!(!hit(backslash, json!("c:temp")));
        assert_eq!(
            err(json!({ "wildcard": "a**b" })),
            "pattern.f[0].wildcard \"a**b\": consecutive * at character 3: one * already matches any run of characters"
        );
        assert_eq!(
            err(json!({ "wildcard": "a\\b" })),
            "pattern.f[0].wildcard \"a\\\\b\": the \\ at character 2 escapes nothing: write \\* for a star, \\\\ for a backslash"
        );
        assert_eq!(
            err(json!({ "wildcard": "a\\" })),
            "pattern.f[0].wildcard \"a\\\\\": the \\ at character 2 escapes nothing: write \\* for a star, \\\\ for a backslash"
        );
    }

    #[test]
    fn numeric() {
        let range = json!([{ "numeric": [">", 0, "<=", 5] }]);
        assert!(!hit(range.clone(), json!(0)));
        assert!(hit(range.clone(), json!(0.000001)));
        assert!(hit(range.clone(), json!(5)));
        assert!(hit(range.clone(), json!(5.0)));
        assert!(!hit(range.clone(), json!(5.000001)));
        assert!(!hit(range.clone(), json!(-1)));
        assert!(!hit(range.clone(), json!("3")));
        assert!(!hit(range.clone(), json!(true)));
        assert!(!missing(range));
        let closed = json!([{ "numeric": [">=", -1.5, "<", 1e3] }]);
        assert!(hit(closed.clone(), json!(-1.5)));
        assert!(hit(closed.clone(), json!(999.99)));
        assert!(!hit(closed, json!(1000)));
        assert!(hit(json!([{ "numeric": ["<", 10] }]), json!(-1e9)));
        assert!(!hit(json!([{ "numeric": ["<", 10] }]), json!(10)));
        assert!(hit(json!([{ "numeric": ["<=", 10] }]), json!(10)));
        assert!(hit(json!([{ "numeric": [">", 10] }]), json!(10.5)));
        assert!(!hit(json!([{ "numeric": [">", 10] }]), json!(10)));
        assert!(hit(json!([{ "numeric": [">=", 10] }]), json!(10)));
        assert!(hit(json!([{ "numeric": ["=", 3.018e2] }]), json!(301.8)));
        assert!(!hit(json!([{ "numeric": ["=", 5] }]), json!(5.5)));
        assert!(hit(json!([{ "numeric": ["=", 0] }]), json!(-0.0)));
        assert!(hit(json!([{ "numeric": [">", 0] }]), json!([-1, 2])));
        assert!(hit(json!([{ "numeric": [">", 1e15] }]), json!(u64::MAX)));
    }

    #[test]
    fn cidr() {
        let v4 = json!([{ "cidr": "10.0.0.0/24" }]);
        assert!(hit(v4.clone(), json!("10.0.0.33")));
        assert!(hit(v4.clone(), json!("10.0.0.255")));
        assert!(!hit(v4.clone(), json!("10.0.1.0")));
        assert!(!hit(v4.clone(), json!("not an ip")));
        assert!(!hit(v4.clone(), json!("::1")));
        assert!(!hit(v4, json!(10)));
        assert!(hit(json!([{ "cidr": "0.0.0.0/0" }]), json!("8.8.8.8")));
        assert!(hit(json!([{ "cidr": "10.0.0.7/32" }]), json!("10.0.0.7")));
        assert!(!hit(json!([{ "cidr": "10.0.0.7/32" }]), json!("10.0.0.8")));
        let v6 = json!([{ "cidr": "2001:db8::/32" }]);
        assert!(hit(v6.clone(), json!("2001:db8:1::1")));
        assert!(!hit(v6, json!("2001:db9::1")));
    }

    #[test]
    fn cidr_errors() {
        assert_eq!(
            err(json!({})),
            "pattern.f[0]: an empty matcher {}: use prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists or cidr"
        );
        assert_eq!(
            err(json!({ "contains": "a" })),
            "pattern.f[0].contains: unknown matcher \"contains\": use prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists or cidr"
        );
        assert_eq!(
            err(json!({ "cidr": 10 })),
            "pattern.f[0].cidr: must be a string, like \"10.0.0.0/24\", not 10"
        );
        assert_eq!(
            err(json!({ "cidr": "10.0.0.0" })),
            "pattern.f[0].cidr \"10.0.0.0\": write an address and a prefix length, like \"10.0.0.0/24\" or \"2001:db8::/32\""
        );
        assert_eq!(
            err(json!({ "cidr": "10.0.0/8" })),
            "pattern.f[0].cidr \"10.0.0/8\": not an IP address, like \"10.0.0.0/24\" or \"2001:db8::/32\""
        );
        assert_eq!(
            err(json!({ "cidr": "10.0.0.0/33" })),
            "pattern.f[0].cidr \"10.0.0.0/33\": the prefix length is 0 to 32, like \"10.0.0.0/24\" or \"2001:db8::/32\""
        );
    }

    #[test]
    fn numeric_errors() {
        const SHAPE: &str = "one or two comparisons, each an operator (=, <, <=, > or >=) and a number, like [\">\", 0, \"<=\", 5]";
        assert_eq!(
            err(json!({ "numeric": 5 })),
            format!("pattern.f[0].numeric: must be a list of {SHAPE}")
        );
        assert_eq!(
            err(json!({ "numeric": [] })),
            format!("pattern.f[0].numeric: {SHAPE}")
        );
        assert_eq!(
            err(json!({ "numeric": [">"] })),
            format!("pattern.f[0].numeric: {SHAPE}")
        );
        assert_eq!(
            err(json!({ "numeric": [">", 0, "<", 5, "<", 6] })),
            format!("pattern.f[0].numeric: {SHAPE}")
        );
        assert_eq!(
            err(json!({ "numeric": ["!=", 0] })),
            "pattern.f[0].numeric: unknown operator \"!=\": use =, <, <=, > or >="
        );
        assert_eq!(
            err(json!({ "numeric": [0, ">"] })),
            "pattern.f[0].numeric: unknown operator 0: use =, <, <=, > or >="
        );
        assert_eq!(
            err(json!({ "numeric": [">", "5"] })),
            "pattern.f[0].numeric: the value after \">\" must be a number, not \"5\""
        );
        let order = "pattern.f[0].numeric: a range is a lower bound (> or >=) then an upper bound (< or <=), like [\">\", 0, \"<=\", 5]";
        assert_eq!(err(json!({ "numeric": ["<", 5, ">", 0] })), order);
        assert_eq!(err(json!({ "numeric": [">", 0, ">", 5] })), order);
        assert_eq!(err(json!({ "numeric": ["=", 0, "<", 5] })), order);
        assert_eq!(
            err(json!({ "numeric": [">", 5, "<", 5] })),
            "pattern.f[0].numeric: the lower bound 5 must be less than the upper bound 5"
        );
        assert_eq!(
            err(json!({ "numeric": [">=", 6.5, "<=", 1] })),
            "pattern.f[0].numeric: the lower bound 6.5 must be less than the upper bound 1"
        );
    }
}
