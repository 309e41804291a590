//! Target rewriting with the semantics of JavaScript's `String.prototype.replace(regex, target)`,
//! which approuter applies to the request URL: only the first match is replaced, the text around
//! it is kept, and `$1`…`$99`, `$&`, `` $` ``, `$'`, `$<name>` and `$$` are expanded.

use fancy_regex::{Captures, Regex};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
    Named(String),
    WholeMatch,
    Before,
    After,
}

/// A parsed `target` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTemplate {
    parts: Vec<Part>,
}

impl TargetTemplate {
    /// Parses `target` for a regex with `groups` capture groups (group 0 excluded) and the given
    /// group names. `$n` beyond the group count stays literal, as in JavaScript.
    pub fn parse(target: &str, groups: usize, names: &[String]) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = target.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' || i + 1 >= bytes.len() {
                let ch = target[i..].chars().next().unwrap_or('$');
                literal.push(ch);
                i += ch.len_utf8();
                continue;
            }
            let next = bytes[i + 1];
            let special = |part: Part, len: usize, parts: &mut Vec<Part>, literal: &mut String| {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(literal)));
                }
                parts.push(part);
                len
            };
            let consumed = match next {
                b'$' => {
                    literal.push('$');
                    2
                }
                b'&' => special(Part::WholeMatch, 2, &mut parts, &mut literal),
                b'`' => special(Part::Before, 2, &mut parts, &mut literal),
                b'\'' => special(Part::After, 2, &mut parts, &mut literal),
                b'0'..=b'9' => {
                    let one = (next - b'0') as usize;
                    let two = bytes
                        .get(i + 2)
                        .filter(|b| b.is_ascii_digit())
                        .map(|b| one * 10 + (b - b'0') as usize);
                    match two {
                        Some(n) if n >= 1 && n <= groups => {
                            special(Part::Group(n), 3, &mut parts, &mut literal)
                        }
                        _ if one >= 1 && one <= groups => {
                            special(Part::Group(one), 2, &mut parts, &mut literal)
                        }
                        _ => {
                            literal.push('$');
                            1
                        }
                    }
                }
                b'<' if !names.is_empty() => match target[i + 2..].find('>') {
                    Some(end) => {
                        let name = target[i + 2..i + 2 + end].to_owned();
                        special(Part::Named(name), end + 3, &mut parts, &mut literal)
                    }
                    None => {
                        literal.push('$');
                        1
                    }
                },
                _ => {
                    literal.push('$');
                    1
                }
            };
            i += consumed;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Self { parts }
    }

    /// Replaces the match described by `caps` inside `input` with the expanded template.
    pub fn apply(&self, input: &str, caps: &Captures<'_>) -> String {
        let Some(whole) = caps.get(0) else {
            return input.to_owned();
        };
        let mut out = String::with_capacity(input.len() + 16);
        out.push_str(&input[..whole.start()]);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
                Part::Named(name) => out.push_str(caps.name(name).map_or("", |m| m.as_str())),
                Part::WholeMatch => out.push_str(whole.as_str()),
                Part::Before => out.push_str(&input[..whole.start()]),
                Part::After => out.push_str(&input[whole.end()..]),
            }
        }
        out.push_str(&input[whole.end()..]);
        out
    }
}

/// Group names of a regex, for `$<name>` references.
pub fn group_names(regex: &Regex) -> Vec<String> {
    regex.capture_names().flatten().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(pattern: &str, target: &str, input: &str) -> String {
        let regex = Regex::new(pattern).expect("test regex");
        let template =
            TargetTemplate::parse(target, regex.captures_len() - 1, &group_names(&regex));
        match regex.captures(input).expect("match") {
            Some(caps) => template.apply(input, &caps),
            None => input.to_owned(),
        }
    }

    #[test]
    fn behaves_like_javascript_replace() {
        // Expected values as computed by Node's String.prototype.replace.
        assert_eq!(replace("^/api/(.*)$", "$1", "/api/a/b?q=1"), "a/b?q=1");
        assert_eq!(
            replace("^/fixed/(.*)$", "/fixedtarget", "/fixed/a?q=1"),
            "/fixedtarget"
        );
        assert_eq!(replace("^/keep/", "/x/", "/keep/a/b?q=1"), "/x/a/b?q=1");
        assert_eq!(replace("^/a/(.*)$", "/v1/$2", "/a/b"), "/v1/$2");
        assert_eq!(replace("^/a/(x)?(.*)$", "[$1|$2]", "/a/b"), "[|b]");
        assert_eq!(replace("^/a/(.*)$", "$$1-$&", "/a/b"), "$1-/a/b");
        assert_eq!(replace("b", "[$`|$']", "abc"), "a[a|c]c");
        assert_eq!(replace("^/(?<rest>.*)$", "/n/$<rest>", "/x"), "/n/x");
        assert_eq!(
            replace(
                "^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)$",
                "$11-$10-$1",
                "/abcdefghijk"
            ),
            "k-j-a"
        );
        assert_eq!(replace("^/(a)$", "$10", "/a"), "a0");
        assert_eq!(replace("^/(a)$", "tail$", "/a"), "tail$");
        assert_eq!(replace("^/(a)$", "é$1ü", "/a"), "éaü");
    }
}
