//! Tool-name globs, as policy settings write them: `search_*`, `get_?ustomer`, `get_customer`.
//!
//! `*` matches any run of characters (including none), `?` exactly one character; everything else matches
//! itself, case-sensitively. A pattern is anchored at both ends: `search` does not match `search_all`. There
//! is no escaping and no character class: MCP tool names are `[A-Za-z0-9_.-]`, so none are needed.

/// True when `name` matches `pattern` (see the module docs for the syntax).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name position it is currently assumed to swallow up to: on a
    // mismatch, let that star swallow one more character and retry. O(len(pattern) × len(name)) worst case.
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match backtrack {
                Some((star, swallowed)) => {
                    pi = star + 1;
                    ni = swallowed + 1;
                    backtrack = Some((star, swallowed + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when `name` matches any of `patterns`.
pub fn matches_any<S: AsRef<str>>(patterns: &[S], name: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), name))
}

/// The first of `patterns` that `name` matches, to name the rule in a reason.
pub fn first_match<'a, S: AsRef<str>>(patterns: &'a [S], name: &str) -> Option<&'a str> {
    patterns
        .iter()
        .map(AsRef::as_ref)
        .find(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_anchored() {
        assert!(matches("get_customer", "get_customer"));
        assert!(!matches("get_customer", "get_customers"));
        assert!(!matches("get_customer", "xget_customer"));
        assert!(!matches("Get_customer", "get_customer"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn star_matches_any_run() {
        assert!(matches("search_*", "search_"));
        assert!(matches("search_*", "search_docs"));
        assert!(!matches("search_*", "search"));
        assert!(!matches("search_*", "research_docs"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("*_admin_*", "db_admin_drop"));
        assert!(matches("a*b*c", "a_b_b_c"));
        assert!(!matches("a*b*c", "a_b_b_c_d"));
        assert!(matches("**", "x"));
    }

    #[test]
    fn question_mark_matches_one_char() {
        assert!(matches("get_?", "get_a"));
        assert!(!matches("get_?", "get_"));
        assert!(!matches("get_?", "get_ab"));
        assert!(matches("?é?", "xéy"));
    }

    #[test]
    fn backtracking_finds_later_match() {
        assert!(matches("*ab", "aab"));
        assert!(matches("*a?c", "abacxabc"));
        assert!(!matches("*a?c", "abacxab"));
    }

    #[test]
    fn any_and_first() {
        let pats = ["drop_*", "delete_*"];
        assert!(matches_any(&pats, "delete_user"));
        assert!(!matches_any(&pats, "get_user"));
        assert_eq!(first_match(&pats, "delete_user"), Some("delete_*"));
        assert_eq!(first_match::<&str>(&[], "x"), None);
    }
}
