//! Glob patterns with exactly Redis's `MATCH` semantics, over bytes.
//!
//! [`matches()`] is a faithful port of Redis's `stringmatchlen` (util.c), quirks
//! included (`?` matches one *byte*, an unterminated class runs to the end of the
//! pattern, `[a-]` is a range ending at `]`), so the memory adapter answers exactly
//! what Redis answers. One extension: `[!a]` negates like `[^a]`; [`to_redis`]
//! rewrites it to `[^a]` before a pattern is sent to Redis, so both adapters agree.

/// Redis gives up (no match) past this many nested `*`, and so do we.
const MAX_NESTING: usize = 1000;

/// Does `key` match the glob `pattern`?
pub fn matches(pattern: &str, key: &str) -> bool {
    // `SCAN`/`KEYS` skip matching for a lone `*`, so it takes even the empty key,
    // which the matcher itself would refuse.
    if pattern == "*" {
        return true;
    }
    let mut skip_longer = false;
    match_at(pattern.as_bytes(), key.as_bytes(), &mut skip_longer, 0)
}

fn match_at(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_at(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                // The rest of the pattern matches nowhere in the rest of the key, so
                // no earlier `*` can help by eating more: stop the whole search.
                *skip_longer = true;
                return false;
            }
            b'?' => p = &p[1..],
            b'[' => {
                let (matched, rest) = match_class(&p[1..], s[0]);
                if !matched {
                    return false;
                }
                p = rest;
            }
            _ => {
                let (literal, rest) = match p {
                    [b'\\', escaped, rest @ ..] => (*escaped, rest),
                    [byte, rest @ ..] => (*byte, rest),
                    [] => unreachable!("the loop runs only while the pattern is non-empty"),
                };
                if literal != s[0] {
                    return false;
                }
                p = rest;
            }
        }
        s = &s[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

/// Match one byte against the class whose body starts at `p` (just after `[`).
/// Returns the verdict and the pattern after the class: after its `]`, or empty
/// when the class is unterminated (Redis then takes the rest as the class).
fn match_class(p: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = matches!(p.first(), Some(b'^' | b'!'));
    let body = if negate { &p[1..] } else { p };
    let (matched, rest) = match_class_body(body, c);
    (matched != negate, rest)
}

/// The members of a class, up to and past its closing `]`.
fn match_class_body(mut p: &[u8], c: u8) -> (bool, &[u8]) {
    // Redis compares range bounds as C `char`, which is signed on the platforms it
    // runs on: bytes from 0x80 sort below ASCII inside a range.
    let signed = |byte: u8| byte as i8;
    let mut matched = false;
    loop {
        match p {
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == c;
                p = rest;
            }
            [b']', rest @ ..] => return (matched, rest),
            [] => return (matched, p),
            [start, b'-', end, rest @ ..] => {
                let (low, high) = if signed(*start) <= signed(*end) {
                    (signed(*start), signed(*end))
                } else {
                    (signed(*end), signed(*start))
                };
                matched |= (low..=high).contains(&signed(c));
                p = rest;
            }
            [literal, rest @ ..] => {
                matched |= *literal == c;
                p = rest;
            }
        }
    }
}

/// The longest prefix every matching key starts with: the pattern's bytes before
/// its first special character (`*`, `?`, `[`, `\\`).
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// A pattern matching exactly `literal`: every special character escaped.
pub fn escape(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '!' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Rewrite our pattern dialect into Redis's: `[!` opening a class becomes `[^`.
/// Walks the pattern exactly as [`matches()`] parses it, so escapes and quirky
/// classes are left as they are.
pub fn to_redis(pattern: &str) -> String {
    let p = pattern.as_bytes();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' if i + 1 < p.len() => {
                out.extend_from_slice(&p[i..i + 2]);
                i += 2;
            }
            b'[' => {
                out.push(b'[');
                i += 1;
                if matches!(p.get(i), Some(b'^' | b'!')) {
                    out.push(b'^');
                    i += 1;
                }
                let body_start = i;
                let (_, rest) = match_class_body(&p[body_start..], 0);
                let end = p.len() - rest.len();
                out.extend_from_slice(&p[body_start..end]);
                i = end;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, so the text stays UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_question_and_literals() {
        assert!(matches("order_summary:::*", "order_summary:::ord-1"));
        assert!(!matches("order_summary:::*", "customer:::1"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", ""));
        assert!(matches("a.c", "a.c"));
        assert!(!matches("a.c", "abc"), "dot is literal");
        assert!(!matches("A*", "a"), "case-sensitive");
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        assert!(matches("[abc]x", "bx"));
        assert!(matches("[a-c]x", "bx"));
        assert!(matches("[c-a]x", "bx"), "reversed ranges are swapped");
        assert!(!matches("[^a]x", "ax"));
        assert!(matches("[^a]x", "bx"));
        assert!(!matches("[!a]x", "ax"));
        assert!(matches("[!a]x", "bx"));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "a"));
        assert!(matches("[\\]]", "]"));
        assert!(matches("\\", "\\"), "a trailing backslash is literal");
    }

    #[test]
    fn redis_quirks() {
        assert!(matches("[abc", "c"), "unterminated class runs to the end");
        assert!(matches("[^", "z"), "bare negation matches any byte");
        assert!(!matches("[", "["));
        assert!(!matches("?", "é"), "? matches one byte, not one character");
        assert!(matches("??", "é"));
    }

    #[test]
    fn escaped_literals_match_only_themselves() {
        for literal in ["a*b", "x?y", "[ab]", "back\\slash", "plain_name"] {
            assert!(matches(&escape(literal), literal), "{literal}");
            assert!(
                !matches(&escape(literal), &format!("{literal}x")),
                "{literal}"
            );
        }
        assert!(!matches(&escape("a*b"), "aXb"));
    }

    #[test]
    fn translation_rewrites_only_class_negation() {
        assert_eq!(to_redis("[!a]*"), "[^a]*");
        assert_eq!(to_redis("\\[!a]"), "\\[!a]");
        assert_eq!(to_redis("[a!]"), "[a!]");
        assert_eq!(to_redis("[]!]"), "[]!]");
        assert_eq!(to_redis("x[!"), "x[^");
        assert_eq!(to_redis("[a-][!b]"), "[a-][!b]");
    }
}
