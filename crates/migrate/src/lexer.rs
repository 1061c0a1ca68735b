//! The SQL lexer every part of the crate reads SQL with: the statement splitter, the renderer's
//! checks, transaction-control detection and the linter's rules. It knows PostgreSQL's quoting
//! (single quotes with `''`, `E'...'` with backslash escapes, double-quoted identifiers with `""`,
//! `$tag$ ... $tag$` bodies), `--` comments and nested `/* */` comments, so a keyword or a `;`
//! inside any of them is never mistaken for code. Unterminated quotes and comments run to the end
//! of the text.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A keyword or unquoted identifier: a letter or `_` (or any non-ASCII character), then
    /// letters, digits, `_` and `$`.
    Word,
    /// A double-quoted identifier, quotes included.
    QuotedIdent,
    /// A string literal in single quotes (`'...'`, `E'...'`), quotes and prefix included.
    String,
    /// A dollar-quoted string (`$tag$ ... $tag$`), delimiters included; see [`Token::dollar_body`].
    DollarQuoted,
    /// A number (digits, with any `.`, letters or `_` that follow them).
    Number,
    /// A positional parameter such as `$1`.
    Param,
    /// One punctuation or operator character.
    Punct,
    /// A `--` comment up to the end of its line.
    LineComment,
    /// A `/* */` comment, nested ones included.
    BlockComment,
}

/// One token: its kind, its text and the byte offset where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// What the token is.
    pub kind: Kind,
    /// The token's text, as written.
    pub text: &'a str,
    /// Byte offset of the token in the lexed text.
    pub start: usize,
}

impl<'a> Token<'a> {
    /// Byte offset just past the token.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// True for `--` and `/* */` comments.
    pub fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::LineComment | Kind::BlockComment)
    }

    /// True when the token is the word `keyword` (compared ignoring ASCII case).
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// True when the token is the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.starts_with(c) && self.text.len() == c.len_utf8()
    }

    /// The body of a dollar-quoted string and its byte offset in the lexed text.
    pub fn dollar_body(&self) -> Option<(usize, &'a str)> {
        if self.kind != Kind::DollarQuoted {
            return None;
        }
        let tag_len = self.text[1..].find('$').map_or(self.text.len(), |p| p + 2);
        let tag = &self.text[..tag_len];
        let rest = &self.text[tag_len..];
        let body = match rest.strip_suffix(tag) {
            Some(body) if self.text.len() >= 2 * tag_len => body,
            _ => rest,
        };
        Some((self.start + tag_len, body))
    }
}

/// The tokens of a SQL text, comments included, whitespace left out.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer over `sql`.
    pub fn new(sql: &'a str) -> Lexer<'a> {
        Lexer { sql, pos: 0 }
    }
}

/// A byte that may start a word (non-ASCII bytes are parts of letters).
fn word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// A byte that may continue a word.
fn word_part(b: u8) -> bool {
    word_start(b) || b.is_ascii_digit() || b == b'$'
}

/// A byte of a dollar-quote tag (after its first character).
fn tag_part(b: u8) -> bool {
    word_start(b) || b.is_ascii_digit()
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.sql.as_bytes();
        while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        let start = self.pos;
        let c = *b.get(start)?;
        let next = b.get(start + 1).copied();
        let (kind, end) = match c {
            b'-' if next == Some(b'-') => (
                Kind::LineComment,
                b[start..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| start + p),
            ),
            b'/' if next == Some(b'*') => (Kind::BlockComment, block_comment_end(b, start)),
            b'\'' => (Kind::String, quoted_end(b, start, b'\'', false)),
            b'E' | b'e' if next == Some(b'\'') => {
                (Kind::String, quoted_end(b, start + 1, b'\'', true))
            }
            b'"' => (Kind::QuotedIdent, quoted_end(b, start, b'"', false)),
            b'$' => dollar(b, start),
            c if word_start(c) => (Kind::Word, run_end(b, start, word_part)),
            c if c.is_ascii_digit() => (
                Kind::Number,
                run_end(b, start, |x| {
                    x.is_ascii_alphanumeric() || x == b'_' || x == b'.'
                }),
            ),
            _ => (Kind::Punct, start + 1),
        };
        self.pos = end;
        Some(Token {
            kind,
            text: &self.sql[start..end],
            start,
        })
    }
}

/// Index of the first byte after `start` that `part` rejects.
fn run_end(b: &[u8], start: usize, part: impl Fn(u8) -> bool) -> usize {
    b[start + 1..]
        .iter()
        .position(|&x| !part(x))
        .map_or(b.len(), |p| start + 1 + p)
}

/// Index just past the closing quote `q` of the quote opened at `open` (a doubled quote is an
/// escaped quote; with `backslash`, so is `\` followed by any character).
fn quoted_end(b: &[u8], open: usize, q: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Index just past a (nested) block comment opened at `open`.
fn block_comment_end(b: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// A token starting with `$`: a parameter (`$1`), a dollar-quoted string, or a lone `$`.
fn dollar(b: &[u8], open: usize) -> (Kind, usize) {
    if b.get(open + 1).is_some_and(u8::is_ascii_digit) {
        return (Kind::Param, run_end(b, open, |x| x.is_ascii_digit()));
    }
    let tag_end = if b.get(open + 1).is_some_and(|&x| word_start(x)) {
        run_end(b, open + 1, tag_part)
    } else {
        open + 1
    };
    if b.get(tag_end) != Some(&b'$') {
        return (Kind::Punct, open + 1);
    }
    let tag = &b[open..=tag_end];
    let body = tag_end + 1;
    let end = b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len());
    (Kind::DollarQuoted, end)
}

/// The tokens of `sql` without its comments.
pub fn code_tokens(sql: &str) -> impl Iterator<Item = Token<'_>> {
    Lexer::new(sql).filter(|t| !t.is_comment())
}

/// Splits `sql` at top-level semicolons. Returns the statements trimmed, without the trailing
/// semicolon; statements that are empty or only comments are dropped. The semicolons inside a
/// SQL-standard function body (`BEGIN ATOMIC ... END`) do not split.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    // Inside `BEGIN ATOMIC`: how many `END`s close it (one, plus one per open `CASE`).
    let mut atomic = 0usize;
    let mut previous_word = "";
    for t in Lexer::new(sql) {
        match t.kind {
            Kind::Word => {
                if atomic == 0 {
                    if t.is_keyword("ATOMIC") && previous_word.eq_ignore_ascii_case("BEGIN") {
                        atomic = 1;
                    }
                } else if t.is_keyword("CASE") {
                    atomic += 1;
                } else if t.is_keyword("END") {
                    atomic -= 1;
                }
                previous_word = t.text;
            }
            Kind::Punct if atomic == 0 && t.is_punct(';') => {
                push_statement(&mut out, &sql[start..t.start]);
                start = t.end();
            }
            _ => {}
        }
    }
    push_statement(&mut out, &sql[start..]);
    out
}

fn push_statement(out: &mut Vec<String>, stmt: &str) {
    let t = stmt.trim();
    if code_tokens(t).next().is_some() {
        out.push(t.to_owned());
    }
}

/// The first `n` keywords of a statement, upper-cased, after any leading comments: a statement
/// is recognised by these (e.g. `["ROLLBACK", "TO"]`). Anything but a word (a quote, a
/// parenthesis, a number) ends the keywords.
pub fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    code_tokens(stmt)
        .take_while(|t| t.kind == Kind::Word)
        .take(n)
        .map(|t| t.text.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        Lexer::new(sql).map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn leading_words_skip_comments() {
        assert_eq!(
            leading_words("-- why\n/* a /* nested */ one */ rollback\twork TO s", 3),
            vec!["ROLLBACK", "WORK", "TO"]
        );
        assert_eq!(leading_words("COMMIT", 2), vec!["COMMIT"]);
        assert_eq!(leading_words("select(1)", 2), vec!["SELECT"]);
        assert!(leading_words("-- only a comment", 2).is_empty());
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "CREATE TABLE a (x text DEFAULT ';');\n-- a comment; with a semicolon\n\
                   INSERT INTO a VALUES ('it''s; fine'), (E'back\\'slash;');\n\
                   DO $body$ BEGIN PERFORM 1; END $body$;\n/* block; /* nested; */ */ SELECT \"we;ird\"";
        let got = split_statements(sql);
        assert_eq!(
            got,
            vec![
                "CREATE TABLE a (x text DEFAULT ';')".to_owned(),
                "-- a comment; with a semicolon\nINSERT INTO a VALUES ('it''s; fine'), (E'back\\'slash;')".to_owned(),
                "DO $body$ BEGIN PERFORM 1; END $body$".to_owned(),
                "/* block; /* nested; */ */ SELECT \"we;ird\"".to_owned(),
            ]
        );
    }

    #[test]
    fn a_begin_atomic_body_stays_one_statement() {
        let sql = "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  \
                   SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT f(1)";
        let got = split_statements(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("SELECT 2;\nEND"), "{got:?}");
        assert_eq!(got[1], "SELECT f(1)");
        // BEGIN as a transaction, and words containing the keywords, do not open a body.
        assert_eq!(
            split_statements("BEGIN; SELECT atomic_end; COMMIT"),
            vec!["BEGIN", "SELECT atomic_end", "COMMIT"]
        );
    }

    #[test]
    fn drops_empty_and_comment_only_statements() {
        assert_eq!(
            split_statements(" ; -- nothing\n ;/* x */;"),
            Vec::<String>::new()
        );
        assert_eq!(
            split_statements("SELECT $1; SELECT a$b"),
            vec!["SELECT $1", "SELECT a$b"]
        );
    }

    #[test]
    fn dollar_quoted_bodies_keep_their_semicolons_and_quotes() {
        let sql = "CREATE FUNCTION f() RETURNS void AS $fn$ BEGIN UPDATE t SET a = 'x;'; \
                   RAISE NOTICE $$it's$$; END $fn$ LANGUAGE plpgsql; SELECT 1";
        let got = split_statements(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("LANGUAGE plpgsql"), "{got:?}");
        let body = Lexer::new(sql)
            .find(|t| t.kind == Kind::DollarQuoted)
            .and_then(|t| t.dollar_body())
            .expect("a dollar-quoted body");
        assert_eq!(
            body.1,
            " BEGIN UPDATE t SET a = 'x;'; RAISE NOTICE $$it's$$; END "
        );
        assert_eq!(&sql[body.0..body.0 + 6], " BEGIN");
        // `$1` is a parameter, `$` inside a word is part of it, `$$` unterminated runs to the end.
        assert_eq!(
            kinds("SELECT $1, a$b, $$x"),
            vec![
                (Kind::Word, "SELECT"),
                (Kind::Param, "$1"),
                (Kind::Punct, ","),
                (Kind::Word, "a$b"),
                (Kind::Punct, ","),
                (Kind::DollarQuoted, "$$x"),
            ]
        );
    }

    #[test]
    fn nested_comments_and_escapes_hide_their_content() {
        assert_eq!(
            kinds("/* a /* b; */ c; */ x -- d;\ny"),
            vec![
                (Kind::BlockComment, "/* a /* b; */ c; */"),
                (Kind::Word, "x"),
                (Kind::LineComment, "-- d;"),
                (Kind::Word, "y"),
            ]
        );
        assert_eq!(
            kinds(r"E'\'' x 'a\' y"),
            vec![
                (Kind::String, r"E'\''"),
                (Kind::Word, "x"),
                (Kind::String, r"'a\'"),
                (Kind::Word, "y"),
            ],
            "only E'' strings take backslash escapes"
        );
        assert_eq!(
            kinds("SELECT \"a \"\" b\".c, 1.5e3, é_t"),
            vec![
                (Kind::Word, "SELECT"),
                (Kind::QuotedIdent, "\"a \"\" b\""),
                (Kind::Punct, "."),
                (Kind::Word, "c"),
                (Kind::Punct, ","),
                (Kind::Number, "1.5e3"),
                (Kind::Punct, ","),
                (Kind::Word, "é_t"),
            ]
        );
        assert_eq!(
            split_statements("SELECT \"x\"\";y\"; SELECT 'e''; f'"),
            vec!["SELECT \"x\"\";y\"", "SELECT 'e''; f'"]
        );
    }
}
