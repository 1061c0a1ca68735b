//! Scrubbing of passwords from free text (e.g. parser messages that quote a source line).

/// The placeholder shown instead of a password.
pub(crate) const MASK: &str = "****";

/// Replaces the password of every `scheme://user:password@host` found in `text` with `****`.
///
/// The user-info part runs from `://` to the last `@` before the next whitespace or quote, so
/// a password holding unencoded `/`, `?` or `@` is still covered.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
            .unwrap_or(tail.len());
        let segment = &tail[..end];
        match segment.rfind('@') {
            Some(at) => {
                let userinfo = &segment[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&segment[at..]);
            }
            None => out.push_str(segment),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces every occurrence of each non-empty `secret` in `text` with `****`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_in_text() {
        let t = "line 1 | uri = \"postgresql://u:s3cr/et@h:5432/db\" and postgres://x@y/z";
        let r = redact_urls(t);
        assert!(!r.contains("s3cr"), "{r}");
        assert!(r.contains("postgresql://u:****@h:5432/db"), "{r}");
        assert!(r.contains("postgres://x@y/z"), "{r}");
    }

    #[test]
    fn scrub_replaces_all() {
        assert_eq!(scrub("a pw b pw", &["pw", ""]), "a **** b ****");
    }
}
