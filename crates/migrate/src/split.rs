//! Splitting a SQL script into statements (quotes, dollar quotes and comments respected).

/// Splits `sql` at top-level semicolons. Returns the statements trimmed, without the trailing
/// semicolon; statements that are empty or only comments are dropped. The semicolons inside a
/// SQL-standard function body (`BEGIN ATOMIC ... END`) do not split.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Inside `BEGIN ATOMIC`: how many `END`s close it (one, plus one per open `CASE`).
    let mut atomic = 0usize;
    let mut last_word = (0, 0);
    while i < b.len() {
        match b[i] {
            c if (c.is_ascii_alphabetic() || c == b'_')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let word_start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &sql[word_start..i];
                let previous = &sql[last_word.0..last_word.1];
                if atomic == 0 {
                    if word.eq_ignore_ascii_case("ATOMIC") && previous.eq_ignore_ascii_case("BEGIN")
                    {
                        atomic = 1;
                    }
                } else if word.eq_ignore_ascii_case("CASE") {
                    atomic += 1;
                } else if word.eq_ignore_ascii_case("END") {
                    atomic -= 1;
                }
                last_word = (word_start, i);
            }
            b'\'' => i = skip_quoted(b, i, b'\'', is_escape_string(b, i)),
            b'"' => i = skip_quoted(b, i, b'"', false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(b, i),
            b';' if atomic == 0 => {
                push(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &sql[start..]);
    out
}

fn push(out: &mut Vec<String>, stmt: &str) {
    let t = stmt.trim();
    if !t.is_empty() && !only_comments(t) {
        out.push(t.to_owned());
    }
}

/// True when `s` holds nothing but whitespace and comments.
fn only_comments(s: &str) -> bool {
    skip_space_and_comments(s.as_bytes(), 0) == s.len()
}

/// Index of the first byte at or after `i` that is neither whitespace nor part of a comment.
fn skip_space_and_comments(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i);
        } else {
            break;
        }
    }
    i
}

/// The first `n` keywords of a statement, upper-cased, after any leading comments: a statement
/// is recognised by these (e.g. `["ROLLBACK", "TO"]`). A word is a run of ASCII letters and `_`.
pub(crate) fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    let b = stmt.as_bytes();
    let mut words = Vec::with_capacity(n);
    let mut i = 0;
    while words.len() < n {
        i = skip_space_and_comments(b, i);
        if i >= b.len() {
            break;
        }
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            words.push(stmt[start..i].to_ascii_uppercase());
        } else {
            // Anything else (a quote, a parenthesis, a number) ends the keywords.
            break;
        }
    }
    words
}

/// `E'...'` strings allow backslash escapes.
fn is_escape_string(b: &[u8], quote: usize) -> bool {
    quote > 0
        && matches!(b[quote - 1], b'E' | b'e')
        && (quote < 2 || !(b[quote - 2].is_ascii_alphanumeric() || b[quote - 2] == b'_'))
}

/// Index just past the closing quote (a doubled quote is an escaped quote).
fn skip_quoted(b: &[u8], open: usize, q: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Index just past a (nested) block comment.
fn skip_block_comment(b: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
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

/// Index past a `$tag$ ... $tag$` body, or just past the `$` when it does not open one.
fn skip_dollar(b: &[u8], open: usize) -> usize {
    // A `$` inside an identifier or a parameter like `$1` is not a quote.
    if open > 0 && (b[open - 1].is_ascii_alphanumeric() || b[open - 1] == b'_') {
        return open + 1;
    }
    let mut j = open + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j >= b.len() || b[j] != b'$' || b.get(open + 1).is_some_and(u8::is_ascii_digit) {
        return open + 1;
    }
    let tag = &b[open..=j];
    let mut i = j + 1;
    while i + tag.len() <= b.len() {
        if &b[i..i + tag.len()] == tag {
            return i + tag.len();
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::{leading_words, split_statements};

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
}
