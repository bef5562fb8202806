//! Patterns with the meaning of Python's `re.fullmatch`: Python syntax, a match of the whole
//! value, and a step limit so that no pattern can hang the server.
//!
//! Patterns run on `fancy-regex` (backreferences, lookarounds) after a translation of the
//! places where Python and it differ:
//! - named groups become plain groups and `(?P=name)` a numbered backreference, so numbered and
//!   named references can be mixed as Python allows (`fancy-regex` refuses numbers once names
//!   are used);
//! - `$` (without `(?m)`) matches at the end or before a final newline, as in Python; `\Z` is
//!   the very end (`\z`);
//! - `{` that does not start a valid repetition is a literal, as in Python; `{,n}` is `{0,n}`;
//! - inside a class `[` is literal, and `&&` / `~~` are literals, not set operations;
//! - `(?#…)` comments are dropped.

use std::fmt;

use fancy_regex::{Regex, RegexBuilder};

/// Patterns are at most this long (characters).
pub const MAX_PATTERN_CHARS: usize = 1000;
/// Backtracking steps one match may take before it counts as no match.
pub const STEP_LIMIT: usize = 200_000;

/// A pattern that cannot be used, and where (a character offset in the pattern as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub position: usize,
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern at position {}: {}", self.position, self.reason)
    }
}

/// What a match attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Yes,
    No,
    /// The step limit ran out: counted as no match, and reported.
    StepLimit,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
}

impl Pattern {
    pub fn new(source: &str, case_sensitive: bool) -> Result<Pattern, PatternError> {
        let chars = source.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(PatternError {
                position: MAX_PATTERN_CHARS,
                reason: format!("a pattern has at most {MAX_PATTERN_CHARS} characters (this one {chars})"),
            });
        }
        let translated = translate(source)?;
        let prefix = if case_sensitive { r"\A(?:" } else { r"(?i)\A(?:" };
        // In verbose mode a `#` comment runs to the end of the line: end it before closing.
        let close = if translated.verbose { "\n)" } else { ")" };
        let full = format!("{prefix}{}{close}{}", translated.text, r"\z");
        let regex = RegexBuilder::new(&full).backtrack_limit(STEP_LIMIT).build().map_err(|e| {
            let (at, reason) = match &e {
                fancy_regex::Error::ParseError(at, kind) => (Some(*at), kind.to_string()),
                other => (None, other.to_string()),
            };
            let position =
                at.and_then(|at| at.checked_sub(prefix.len())).map(|at| translated.origin(at)).unwrap_or(source.len());
            PatternError { position: char_offset(source, position), reason }
        })?;
        Ok(Pattern { regex })
    }

    /// Whether the whole of `value` matches.
    pub fn full_match(&self, value: &str) -> Matched {
        match self.regex.is_match(value) {
            Ok(true) => Matched::Yes,
            Ok(false) => Matched::No,
            Err(_) => Matched::StepLimit,
        }
    }
}

fn char_offset(s: &str, byte: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < byte).count()
}

/// The translated pattern, with the source offset of each output byte.
struct Translated {
    text: String,
    origins: Vec<usize>,
    verbose: bool,
}

impl Translated {
    fn push(&mut self, s: &str, origin: usize) {
        self.text.push_str(s);
        self.origins.extend(std::iter::repeat_n(origin, s.len()));
    }

    fn origin(&self, at: usize) -> usize {
        self.origins.get(at).copied().unwrap_or_else(|| self.origins.last().map_or(0, |o| o + 1))
    }
}

fn error(position: usize, reason: impl Into<String>) -> PatternError {
    PatternError { position, reason: reason.into() }
}

/// Python's rule for `{`: a repetition only in the forms `{m}`, `{m,}`, `{,n}`, `{m,n}`.
fn repetition(rest: &str) -> Option<(usize, String)> {
    let end = rest.find('}')?;
    let inner = &rest[1..end];
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let text = match inner.split_once(',') {
        None if !inner.is_empty() && digits(inner) => inner.to_string(),
        Some((m, n)) if digits(m) && digits(n) && !(m.is_empty() && n.is_empty()) => {
            format!("{},{n}", if m.is_empty() { "0" } else { m })
        }
        _ => return None,
    };
    Some((end + 1, format!("{{{text}}}")))
}

fn translate(source: &str) -> Result<Translated, PatternError> {
    let flags: String = source
        .strip_prefix("(?")
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect())
        .unwrap_or_default();
    let multiline = flags.contains('m');
    let mut out = Translated {
        text: String::with_capacity(source.len() + 16),
        origins: Vec::new(),
        verbose: flags.contains('x'),
    };
    // Where each group still open began, to say where an unclosed one starts, as Python does.
    let mut open: Vec<usize> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut groups = 0usize;
    let mut i = 0;
    let bytes = source.as_bytes();
    while i < source.len() {
        let rest = &source[i..];
        let c = rest.chars().next().unwrap_or('\0');
        match c {
            '\\' => {
                let next = rest[1..].chars().next().ok_or_else(|| error(i, "a backslash ends the pattern"))?;
                let len = 1 + next.len_utf8();
                match next {
                    'Z' => out.push(r"\z", i),
                    _ => out.push(&rest[..len], i),
                }
                i += len;
            }
            '[' => {
                let start = i;
                out.push("[", i);
                i += 1;
                if source[i..].starts_with('^') {
                    out.push("^", i);
                    i += 1;
                }
                if source[i..].starts_with(']') {
                    out.push(r"\]", i);
                    i += 1;
                }
                loop {
                    let Some(ch) = source[i..].chars().next() else {
                        return Err(error(start, "unterminated character set"));
                    };
                    match ch {
                        ']' => {
                            out.push("]", i);
                            i += 1;
                            break;
                        }
                        '\\' => {
                            let next = source[i + 1..]
                                .chars()
                                .next()
                                .ok_or_else(|| error(start, "unterminated character set"))?;
                            let len = 1 + next.len_utf8();
                            out.push(&source[i..i + len], i);
                            i += len;
                        }
                        '[' => {
                            out.push(r"\[", i);
                            i += 1;
                        }
                        '&' | '~' if bytes.get(i + 1) == Some(&(ch as u8)) => {
                            out.push(if ch == '&' { r"\&" } else { r"\~" }, i);
                            i += 1;
                        }
                        _ => {
                            out.push(&source[i..i + ch.len_utf8()], i);
                            i += ch.len_utf8();
                        }
                    }
                }
            }
            '(' => {
                if let Some(name_part) = rest.strip_prefix("(?P<") {
                    let end = name_part.find('>').ok_or_else(|| error(i, "missing > after the group name"))?;
                    let name = &name_part[..end];
                    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return Err(error(i + 4, format!("bad character in group name '{name}'")));
                    }
                    if names.iter().any(|(n, _)| n == name) {
                        return Err(error(i + 4, format!("redefinition of group name '{name}'")));
                    }
                    groups += 1;
                    names.push((name.to_string(), groups));
                    out.push("(", i);
                    open.push(i);
                    i += 4 + end + 1;
                } else if let Some(name_part) = rest.strip_prefix("(?P=") {
                    let end = name_part.find(')').ok_or_else(|| error(i, "missing ), unterminated name"))?;
                    let name = &name_part[..end];
                    let number = names
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, g)| *g)
                        .ok_or_else(|| error(i + 4, format!("unknown group name '{name}'")))?;
                    out.push(&format!(r"(?:\{number})"), i);
                    i += 4 + end + 1;
                } else if let Some(comment) = rest.strip_prefix("(?#") {
                    let end = comment.find(')').ok_or_else(|| error(i, "missing ), unterminated comment"))?;
                    i += 3 + end + 1;
                } else {
                    if !rest.starts_with("(?") {
                        groups += 1;
                    }
                    out.push("(", i);
                    open.push(i);
                    i += 1;
                }
            }
            ')' => {
                if open.pop().is_none() {
                    return Err(error(i, "unbalanced parenthesis"));
                }
                out.push(")", i);
                i += 1;
            }
            '#' if out.verbose => {
                // A verbose-mode comment, to the end of the line: nothing in it counts.
                let len = rest.find('\n').unwrap_or(rest.len());
                out.push(&rest[..len], i);
                i += len;
            }
            '$' if !multiline => {
                out.push(r"(?=\n?\z)", i);
                i += 1;
            }
            '{' => match repetition(rest) {
                Some((len, text)) => {
                    out.push(&text, i);
                    i += len;
                }
                None => {
                    out.push(r"\{", i);
                    i += 1;
                }
            },
            '}' => {
                out.push(r"\}", i);
                i += 1;
            }
            _ => {
                out.push(&rest[..c.len_utf8()], i);
                i += c.len_utf8();
            }
        }
    }
    if let Some(start) = open.pop() {
        return Err(error(start, "missing ), unterminated subpattern"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected answers produced with CPython 3.11's `re.fullmatch(pattern, value, flags)`
    /// (`flags` = `re.IGNORECASE` when `ci`); see the comment at each group.
    #[test]
    fn python_fullmatch_answers() {
        // (pattern, value, case-insensitive, Python's answer)
        let cases: &[(&str, &str, bool, bool)] = &[
            // The spec's date pattern: named groups mixed with a numbered backreference.
            (
                r"(?P<year>(?:19|20)\d\d)(?P<delimiter>[- /.])(?P<month>0[1-9]|1[012])\2(?P<day>0[1-9]|[12][0-9]|3[01])",
                "2014-07-28",
                false,
                true,
            ),
            (
                r"(?P<year>(?:19|20)\d\d)(?P<delimiter>[- /.])(?P<month>0[1-9]|1[012])\2(?P<day>0[1-9]|[12][0-9]|3[01])",
                "2014-07/28",
                false,
                false,
            ),
            (
                r"(?P<year>(?:19|20)\d\d)(?P<delimiter>[- /.])(?P<month>0[1-9]|1[012])\2(?P<day>0[1-9]|[12][0-9]|3[01])",
                "1999.12.31",
                false,
                true,
            ),
            // Full match, not search.
            ("help", "help me", false, false),
            ("help", "help", false, true),
            (".*help.*", "Please HELP me", true, true),
            (".*help.*", "Please HELP me", false, false),
            // Anchors: `$` also before a final newline, `\Z` only at the very end.
            ("abc$", "abc", false, true),
            ("abc$", "abc\n", false, false),
            ("abc\\n$", "abc\n", false, true),
            (r"abc\Z", "abc", false, true),
            (r"\Aabc", "abc", false, true),
            ("(?m)a$\nb", "a\nb", false, true),
            // Named backreferences and numbered ones together.
            (r"(?P<w>\w+) (?P=w)", "hey hey", false, true),
            (r"(?P<w>\w+) (?P=w)", "hey you", false, false),
            (r"(?P<a>x)(y)\2(?P=a)", "xyyx", false, true),
            (r"(a)(b)\1\2", "abab", false, true),
            // Lookarounds.
            (r"(?=.*\d)(?=.*[a-z]).{6,}", "abc123", false, true),
            (r"(?=.*\d)(?=.*[a-z]).{6,}", "abcdef", false, false),
            (r"\w+(?<!spam)", "eggs", false, true),
            (r"\w+(?<!spam)", "eggspam", false, false),
            (r"(?!un)\w+", "undo", false, false),
            // Flags.
            ("(?i)HELLO", "hello", false, true),
            ("hello", "HeLLo", true, true),
            ("(?s)a.b", "a\nb", false, true),
            ("a.b", "a\nb", false, false),
            ("(?x) a b c # comment", "abc", false, true),
            ("(?x) a b c # (unclosed, in a comment", "abc", false, true),
            // Unicode classes and case.
            (r"\w+", "naïve", false, true),
            (r"\d+", "١٢٣", false, true),
            ("ÉCOLE", "école", true, true),
            ("straße", "STRASSE", true, false),
            (r"[^\W\d_]+", "Ünïcödé", false, true),
            (r"\s+", "\u{00a0}\t", false, true),
            // Python literals where other engines differ.
            ("a{", "a{", false, true),
            ("a{,2}", "aa", false, true),
            ("a{2,}", "a", false, false),
            ("x{1,3}y", "xxxy", false, true),
            ("[[]", "[", false, true),
            ("[a&&b]", "&", false, true),
            ("[]a]", "]", false, true),
            ("(?#just a comment)ok", "ok", false, true),
            // Alternation binds loosest, and the full match applies to the whole.
            ("a|ab", "ab", false, true),
            ("", "", false, true),
            ("", "x", false, false),
        ];
        for (pattern, value, ci, expected) in cases {
            let compiled = Pattern::new(pattern, !ci).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            let got = compiled.full_match(value) == Matched::Yes;
            assert_eq!(got, *expected, "re.fullmatch({pattern:?}, {value:?}, ci={ci})");
        }
    }

    #[test]
    fn invalid_patterns_say_where() {
        let e = Pattern::new("abc(def", true).expect_err("unbalanced");
        assert_eq!(e.position, 3, "{e}");
        let e = Pattern::new("ab[c", true).expect_err("class");
        assert_eq!(e.position, 2, "{e}");
        let e = Pattern::new("(?P<x>a)(?P=y)", true).expect_err("unknown name");
        assert_eq!(e.position, 12, "{e}");
        let e = Pattern::new("ab\\", true).expect_err("trailing backslash");
        assert_eq!(e.position, 2, "{e}");
        assert!(Pattern::new(&"a".repeat(1001), true).is_err());
    }

    #[test]
    fn a_catastrophic_pattern_stops_at_the_step_limit() {
        let p = Pattern::new("(a+)+$", true).expect("compiles");
        let value = format!("{}b", "a".repeat(30));
        let started = std::time::Instant::now();
        assert_eq!(p.full_match(&value), Matched::StepLimit);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
