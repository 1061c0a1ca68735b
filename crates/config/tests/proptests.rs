//! Property tests: the parser never panics and never shows a password.

use notify_db_config::{DatabaseUri, HostPort};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

const VAR: &str = "SQLALCHEMY_DATABASE_URI_BULK";

/// A distinctive password: "Pw" + letters, digits and URI-reserved punctuation.
fn password() -> impl Strategy<Value = String> {
    "Pw[A-Za-z0-9!$&'()*+,;=:@/?#%~._\\-\\[\\]]{2,14}"
}

/// URI templates around `{pw}`: valid ones first, then deliberately broken ones.
const TEMPLATES: &[&str] = &[
    "postgresql+psycopg2://user:{pw}@host:5432/notification_api",
    "postgresql://user:{pw}@replica1:5432,replica2/notification_api?sslmode=require",
    "postgres://user:{pw}@[::1]:6432/notification_api",
    // broken
    "postgresql://user:{pw}@host:abc/notification_api",
    "postgresql://user:{pw}@host:0/notification_api",
    "postgresql://user:{pw}@host:70000/notification_api",
    "postgresql://user:{pw}@host:/notification_api",
    "postgresql://user:{pw}@/notification_api",
    "postgresql://user:{pw}@h1,,h2/notification_api",
    "postgresql://user:{pw}@host",
    "postgresql://user:{pw}@host/",
    "postgresql://user:{pw}@host/a/b",
    "postgresql://user:{pw}@::1/notification_api",
    "postgresql://user:{pw}@[::1/notification_api",
    "postgresql://user:{pw}@host/notification_api?foo=bar",
    "postgresql://user:{pw}@host/notification_api?sslmode=sometimes",
    "postgresql://user:{pw}@host/notification_api?sslmode",
    "mysql://user:{pw}@host/notification_api",
    "user:{pw}@host/notification_api",
    "postgresql://user:{pw}/notification_api",
    "postgresql://user:{pw}@ho st/notification_api",
];

fn assert_hidden(shown: &str, secrets: &[&str]) -> Result<(), TestCaseError> {
    for secret in secrets {
        prop_assert!(!shown.contains(secret), "{secret:?} shown in {shown:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(s in ".*") {
        let _ = DatabaseUri::parse(&s, VAR);
    }

    #[test]
    fn uri_like_strings_never_panic(
        s in "(postgres(ql)?(\\+[a-z0-9]+)?://)?[a-zA-Z0-9:@/?&=,%\\[\\]._\\-]{0,60}"
    ) {
        if let Ok(u) = DatabaseUri::parse(&s, VAR) {
            // Whatever parses also survives a round trip through its real URI.
            prop_assert_eq!(DatabaseUri::parse(&u.to_url_string(), VAR), Ok(u.clone()));
        }
    }

    #[test]
    fn encoded_password_never_shown(pw in password(), index in 0..TEMPLATES.len()) {
        let encoded = utf8_percent_encode(&pw, NON_ALPHANUMERIC).to_string();
        let uri = TEMPLATES[index].replace("{pw}", &encoded);
        let secrets = [pw.as_str(), encoded.as_str()];
        match DatabaseUri::parse(&uri, VAR) {
            Ok(u) => {
                prop_assert!(index < 3, "broken template parsed: {}", TEMPLATES[index]);
                prop_assert_eq!(u.password(), Some(pw.as_str()));
                assert_hidden(&format!("{u}"), &secrets)?;
                assert_hidden(&format!("{u:?}"), &secrets)?;
                assert_hidden(&format!("{:?}", u.with_hosts(vec![HostPort {
                    host: "other".into(),
                    port: 1,
                }])), &secrets)?;
                prop_assert_eq!(DatabaseUri::parse(&u.to_url_string(), VAR), Ok(u.clone()));
            }
            Err(e) => {
                prop_assert!(index >= 3, "valid template failed: {e}");
                let text = e.to_string();
                prop_assert!(text.contains(VAR), "{}", text);
                assert_hidden(&text, &secrets)?;
                assert_hidden(&format!("{e:?}"), &secrets)?;
            }
        }
    }

    #[test]
    fn raw_password_never_shown(pw in password(), index in 0..TEMPLATES.len()) {
        // The same, with the password pasted in unencoded (a common mistake).
        let uri = TEMPLATES[index].replace("{pw}", &pw);
        match DatabaseUri::parse(&uri, VAR) {
            Ok(u) => {
                assert_hidden(&format!("{u}"), &[&pw])?;
                assert_hidden(&format!("{u:?}"), &[&pw])?;
                if let Some(p) = u.password() {
                    assert_hidden(&format!("{u}"), &[p])?;
                }
            }
            Err(e) => {
                assert_hidden(&e.to_string(), &[&pw])?;
                assert_hidden(&format!("{e:?}"), &[&pw])?;
            }
        }
    }
}
