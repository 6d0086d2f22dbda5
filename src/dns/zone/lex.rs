//! Tokenizer for RFC 1035 §5.1 master files.
//!
//! Owns the lexical layer only: `;` comments, parentheses joining lines,
//! quoted character-strings with `\X` and `\DDD` escapes, unquoted words
//! whose escapes (`\ `, `\;`, `\(`, `\"`) keep them whole, and the
//! `;@directive` comments of [`super`]. It knows nothing about record types.

use crate::dns::name::decode_escape;

/// One token of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// An unquoted word, escapes kept as written (names need them raw).
    Word(String),
    /// A quoted character-string, escapes decoded.
    Quoted(Vec<u8>),
}

/// One logical entry: a physical line, or several joined by parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The entry starts with blank space: the owner is the previous one.
    pub blank_owner: bool,
    /// The tokens, comments removed.
    pub tokens: Vec<Token>,
    /// For a `;@word args` comment line: the words after `;@`.
    pub directive: Option<Vec<String>>,
}

/// A lexical error at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Splits `text` into entries (RFC 1035 §5.1).
pub(super) fn entries(text: &str) -> Result<Vec<Entry>, LexError> {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while lexer.pos < lexer.bytes.len() {
        if let Some(entry) = lexer.entry()? {
            out.push(entry);
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn err(&self, message: impl Into<String>) -> LexError {
        LexError {
            line: self.line,
            message: message.into(),
        }
    }

    /// Reads one entry; `None` for a blank or comment-only line.
    fn entry(&mut self) -> Result<Option<Entry>, LexError> {
        let mut entry = Entry {
            line: self.line,
            blank_owner: matches!(self.peek(), Some(b' ' | b'\t')),
            tokens: Vec::new(),
            directive: None,
        };
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if depth == 0 {
                        break;
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' => {
                    let comment = self.comment();
                    if depth == 0 && entry.tokens.is_empty() {
                        entry.directive = directive(comment);
                    }
                }
                b'(' => {
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| self.err("unbalanced ')'"))?;
                    self.pos += 1;
                }
                b'"' => entry.tokens.push(Token::Quoted(self.quoted()?)),
                _ => entry.tokens.push(Token::Word(self.word()?)),
            }
        }
        if depth > 0 {
            return Err(LexError {
                line: entry.line,
                message: "'(' not closed before end of file".into(),
            });
        }
        let empty = entry.tokens.is_empty() && entry.directive.is_none();
        Ok((!empty).then_some(entry))
    }

    /// Skips a comment up to (not including) the newline; returns its text.
    fn comment(&mut self) -> &str {
        let start = self.pos + 1;
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.pos += 1;
        }
        let raw = self.bytes.get(start..self.pos).unwrap_or_default();
        std::str::from_utf8(raw).unwrap_or_default()
    }

    /// Reads an unquoted word, keeping escapes as written: an escaped
    /// blank, `;`, parenthesis or quote belongs to the word (RFC 1035 §5.1).
    fn word(&mut self) -> Result<String, LexError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                b'\\' => match self.bytes.get(self.pos + 1) {
                    None | Some(b'\r' | b'\n') => {
                        return Err(self.err("backslash at end of line"));
                    }
                    Some(_) => self.pos += 2,
                },
                _ => self.pos += 1,
            }
        }
        let raw = self.bytes.get(start..self.pos).unwrap_or_default();
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// Reads a quoted character-string, decoding escapes (RFC 1035 §5.1).
    fn quoted(&mut self) -> Result<Vec<u8>, LexError> {
        self.pos += 1;
        let start_line = self.line;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(LexError {
                        line: start_line,
                        message: "unterminated quoted string".into(),
                    });
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => out.push(self.escape()?),
                Some(b) => {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// Decodes `\X` or `\DDD` at the cursor (an escaped newline still
    /// counts as a line).
    fn escape(&mut self) -> Result<u8, LexError> {
        let rest = self.bytes.get(self.pos + 1..).unwrap_or_default();
        let (byte, len) = decode_escape(rest).map_err(|e| self.err(e.to_string()))?;
        if byte == b'\n' && len == 1 {
            self.line += 1;
        }
        self.pos += 1 + len;
        Ok(byte)
    }
}

/// Decodes escapes in an unquoted word (a character-string, RFC 1035 §5.1).
pub(super) fn unescape_word(word: &str) -> Result<Vec<u8>, String> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            let (byte, len) = decode_escape(bytes.get(i + 1..).unwrap_or_default())
                .map_err(|e| format!("{e} in {word}"))?;
            out.push(byte);
            i += 1 + len;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Parses `;@name args` comments into words (leading `@` removed); words
/// split at blanks, except escaped ones (`a\ b` is one word, as in a
/// name).
fn directive(comment: &str) -> Option<Vec<String>> {
    let rest = comment.strip_prefix('@')?;
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            // A final backslash stays: the name it ends is then refused.
            '\\' => word.extend(std::iter::once('\\').chain(chars.next())),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    (!words.is_empty()).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(e: &Entry) -> Vec<String> {
        e.tokens
            .iter()
            .map(|t| match t {
                Token::Word(w) => w.clone(),
                Token::Quoted(q) => format!("\"{}\"", String::from_utf8_lossy(q)),
            })
            .collect()
    }

    #[test]
    fn parentheses_join_lines_and_comments_vanish() {
        let text = "a IN SOA ns h ( 1 ; serial\n 2 3\n 4 5 )\nb A 1.2.3.4 ; c\n";
        let e = entries(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            words(&e[0]),
            ["a", "IN", "SOA", "ns", "h", "1", "2", "3", "4", "5"]
        );
        assert_eq!(e[1].line, 4);
        assert_eq!(words(&e[1]), ["b", "A", "1.2.3.4"]);
    }

    #[test]
    fn leading_blank_marks_repeated_owner() {
        let e = entries("a A 1.1.1.1\n  A 2.2.2.2\n").unwrap();
        assert!(!e[0].blank_owner);
        assert!(e[1].blank_owner);
    }

    #[test]
    fn quoted_strings_decode_escapes() {
        for (input, want) in [
            (r#""a\"b""#, &b"a\"b"[..]),
            (r#""a\\b""#, b"a\\b"),
            (r#""\065\066;""#, b"AB;"),
            (r#""semi;colon (x)""#, b"semi;colon (x)"),
        ] {
            let e = entries(&format!("x TXT {input}\n")).unwrap();
            assert_eq!(e[0].tokens[2], Token::Quoted(want.to_vec()), "{input}");
        }
    }

    #[test]
    fn lexical_errors_carry_the_line() {
        for (input, line) in [
            ("a A 1\nb TXT \"open\n", 2),
            ("a A 1\nb TXT ( x\n", 2),
            ("a TXT )\n", 1),
            ("a TXT \"\\256\"\n", 1),
        ] {
            assert_eq!(entries(input).unwrap_err().line, line, "{input}");
        }
    }

    #[test]
    fn directives_are_comments_starting_with_at() {
        let e = entries("; plain comment\n;@servfail bad.example.\n").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].directive.as_deref(),
            Some(&["servfail".to_owned(), "bad.example.".to_owned()][..])
        );
    }

    #[test]
    fn escaped_blanks_and_specials_stay_in_the_word() {
        let e = entries(r#"a\ b.example. TXT x\;y \(z\) q\"r ; c"#).unwrap();
        assert_eq!(
            words(&e[0]),
            [r"a\ b.example.", "TXT", r"x\;y", r"\(z\)", r#"q\"r"#]
        );
    }

    #[test]
    fn backslash_before_end_of_line_is_an_error_at_its_line() {
        for (input, line) in [
            ("a A 1\nb\\\nA 2\n", 2),
            ("a A 1\n\nb TXT x\\", 3),
            ("a A 1\nb TXT x\\\r\n", 2),
        ] {
            let err = entries(input).unwrap_err();
            assert_eq!(err.line, line, "{input:?}");
            assert!(err.message.contains("backslash"), "{}", err.message);
        }
    }

    #[test]
    fn escaped_newline_in_a_quoted_string_counts_its_line() {
        let e = entries("a TXT \"x\\\ny\"\nb A 1\n").unwrap();
        assert_eq!(e[0].tokens[2], Token::Quoted(b"x\ny".to_vec()));
        assert_eq!(e[1].line, 3);
    }

    #[test]
    fn directive_names_keep_escaped_blanks() {
        let e = entries(";@servfail a\\ b.example.\n;@note trailing\\").unwrap();
        assert_eq!(
            e[0].directive.as_deref(),
            Some(&["servfail".to_owned(), r"a\ b.example.".to_owned()][..])
        );
        assert_eq!(
            e[1].directive.as_deref(),
            Some(&["note".to_owned(), r"trailing\".to_owned()][..])
        );
    }

    #[test]
    fn unescape_word_handles_both_forms() {
        assert_eq!(unescape_word(r"a\.b\032c").unwrap(), b"a.b c");
        assert!(unescape_word(r"a\1").is_err());
    }
}
