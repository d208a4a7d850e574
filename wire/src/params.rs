//! The Data API's `:name` parameters of a SQL text: which names it
//! references (outside quoted strings, quoted identifiers, comments and
//! `::` casts), as the Data API finds them. The daemon checks a job's
//! parameters with it before submitting; the emulator refuses a statement
//! whose parameters do not match, as AWS does.

use std::collections::HashMap;

/// A SQL text whose `:name` parameters were replaced by `?1..?K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The SQL handed to SQLite.
    pub sql: String,
    /// Parameter names in placeholder order: `names[0]` is bound to `?1`.
    pub names: Vec<String>,
}

/// Replaces every `:name` outside quoted strings, quoted identifiers and
/// comments, and not part of a `::` cast, by `?N`, numbering distinct names
/// by first appearance. A name is `[0-9A-Za-z_]+` as in the API model.
pub fn rewrite_params(sql: &str) -> Rewritten {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // Quoted string or identifier; a doubled quote escapes itself.
                let quote = c;
                out.push(c);
                i += 1;
                while i < n {
                    out.push(chars[i]);
                    if chars[i] == quote {
                        if i + 1 < n && chars[i + 1] == quote {
                            out.push(chars[i + 1]);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            '[' => {
                // SQLite's bracketed identifier.
                while i < n {
                    out.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == ']' {
                        break;
                    }
                }
            }
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                while i < n && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '/' if i + 1 < n && chars[i + 1] == '*' => {
                out.push_str("/*");
                i += 2;
                while i < n {
                    if chars[i] == '*' && i + 1 < n && chars[i + 1] == '/' {
                        out.push_str("*/");
                        i += 2;
                        break;
                    }
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '$' => {
                // Dollar quoting ($$ ... $$ or $tag$ ... $tag$), as Redshift has.
                let mut j = i + 1;
                while j < n && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j < n && chars[j] == '$' && !chars[i + 1].is_ascii_digit() {
                    let tag: String = chars[i..=j].iter().collect();
                    let tag_chars: Vec<char> = tag.chars().collect();
                    out.push_str(&tag);
                    i = j + 1;
                    loop {
                        if i >= n {
                            break;
                        }
                        if chars[i..].starts_with(&tag_chars) {
                            out.push_str(&tag);
                            i += tag_chars.len();
                            break;
                        }
                        out.push(chars[i]);
                        i += 1;
                    }
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            ':' if i + 1 < n && chars[i + 1] == ':' => {
                // A `::type` cast, never a parameter.
                out.push_str("::");
                i += 2;
            }
            ':' if i + 1 < n && is_name_char(chars[i + 1]) => {
                let mut j = i + 1;
                while j < n && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                let pos = match index.get(&name) {
                    Some(p) => *p,
                    None => {
                        names.push(name.clone());
                        index.insert(name, names.len());
                        names.len()
                    }
                };
                out.push('?');
                out.push_str(&pos.to_string());
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Rewritten { sql: out, names }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `:name` parameters a SQL text references, in order of first use.
pub fn param_names(sql: &str) -> Vec<String> {
    rewrite_params(sql).names
}

/// True when `name` is a valid Data API parameter name (`[0-9a-zA-Z_]+`).
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> (String, Vec<String>) {
        let r = rewrite_params(sql);
        (r.sql, r.names)
    }

    #[test]
    fn rewrites_names_in_order_of_first_use() {
        let (sql, names) = rw("select * from t where a = :a and b = :b_2 or a = :a");
        assert_eq!(sql, "select * from t where a = ?1 and b = ?2 or a = ?1");
        assert_eq!(names, vec!["a", "b_2"]);
    }

    #[test]
    fn leaves_casts_strings_identifiers_and_comments_alone() {
        let sql = "select :x::int, ':y', \"col:z\", 'it''s :q' -- :c\n/* :d */ from t where w = :w";
        let (out, names) = rw(sql);
        assert_eq!(
            out,
            "select ?1::int, ':y', \"col:z\", 'it''s :q' -- :c\n/* :d */ from t where w = ?2"
        );
        assert_eq!(names, vec!["x", "w"]);
    }

    #[test]
    fn leaves_dollar_quotes_and_brackets_alone() {
        let (out, names) = rw("select $$ :a $$, $tag$ :b $tag$, [c:d], :e");
        assert_eq!(out, "select $$ :a $$, $tag$ :b $tag$, [c:d], ?1");
        assert_eq!(names, vec!["e"]);
    }

    #[test]
    fn lone_colon_and_time_literals() {
        let (out, names) = rw("select 1 : 2, '12:30:00'");
        assert_eq!(out, "select 1 : 2, '12:30:00'");
        assert!(names.is_empty());
        let (out, _) = rw("select a::text::varchar from t");
        assert_eq!(out, "select a::text::varchar from t");
    }

    #[test]
    fn unicode_is_preserved() {
        let (out, names) = rw("select 'été', :nom, \"ü\"");
        assert_eq!(out, "select 'été', ?1, \"ü\"");
        assert_eq!(names, vec!["nom"]);
    }

    #[test]
    fn unterminated_quotes_do_not_panic() {
        let (out, names) = rw("select 'abc :x");
        assert_eq!(out, "select 'abc :x");
        assert!(names.is_empty());
        let (out, _) = rw("select /* :x");
        assert_eq!(out, "select /* :x");
        let (out, _) = rw("select $$ :x");
        assert_eq!(out, "select $$ :x");
        let (out, _) = rw("select [a");
        assert_eq!(out, "select [a");
        let (out, names) = rw("select :");
        assert_eq!(out, "select :");
        assert!(names.is_empty());
    }

    #[test]
    fn positional_dollar_is_not_a_quote() {
        let (out, names) = rw("select $1, :a");
        assert_eq!(out, "select $1, ?1");
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn param_names_validated() {
        assert!(valid_param_name("a_1"));
        assert!(!valid_param_name(""));
        assert!(!valid_param_name("a-b"));
    }
}
