//! `revision --autogenerate` through the command line, against real PostgreSQL: the files it
//! writes (`.rs` and `.sql`), `--from-sql`, no difference, and a rename (commented, exit 1).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_migrate::{Direction, Migrator, Target};
use notify_db_migrate_cli::cli::{self, FileKind, MigrateCli, Project};
use notify_db_migrations::{set, test_db};
use notify_db_testdb::TestDb;

const LIMIT: Duration = Duration::from_secs(120);

/// An empty directory for one test's generated files.
fn scratch_dir(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("autogen-cli")
        .join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs `revision --autogenerate ARGS` with the set's migrations and files going to `dir`;
/// scratch databases go on the test server. Returns the command's result and its output.
async fn run_autogenerate(
    server: &TestDb,
    dir: &Path,
    kind: FileKind,
    args: &[&str],
) -> (Result<i32, cli::CliError>, String) {
    let server_uri = server.primary().uri("postgres");
    let argv = [
        "migrate",
        "--database-url",
        &server_uri,
        "revision",
        "--autogenerate",
    ];
    let cli: MigrateCli =
        clap::Parser::try_parse_from(argv.iter().chain(args).copied()).expect("arguments parse");
    let project = Project {
        set: set().expect("valid set"),
        dir: dir.to_path_buf(),
        kind,
    };
    let mut out = Vec::new();
    let settings = Settings::load(None, &|_| None);
    let result = tokio::time::timeout(LIMIT, cli::run(cli, &project, settings, &mut out))
        .await
        .expect("the command finished in time");
    (result, String::from_utf8(out).expect("utf-8"))
}

/// [`run_autogenerate`], which must succeed. Returns (exit code, output, files written).
async fn autogenerate(
    server: &TestDb,
    dir: &Path,
    kind: FileKind,
    args: &[&str],
) -> (i32, String, Vec<String>) {
    let (result, out) = run_autogenerate(server, dir, kind, args).await;
    let code = result.unwrap_or_else(|e| panic!("revision --autogenerate -m {:?}: {e}", args[1]));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (code, out, files)
}

async fn dev_with(change: &str) -> TestDb {
    let dev = test_db().await.expect("development database");
    dev.connect()
        .await
        .expect("connect")
        .batch_execute(change)
        .await
        .expect("the change applies");
    dev
}

#[tokio::test]
async fn from_db_writes_rust_migrations_one_per_phase() {
    let dev = dev_with(
        "ALTER TABLE services ADD COLUMN contact_link text; \
         CREATE INDEX ix_services_contact_link ON services (contact_link)",
    )
    .await;
    let dir = scratch_dir("rust");
    let (code, out, files) = autogenerate(
        &dev,
        &dir,
        FileKind::Rust,
        &["-m", "Add contact link", "--from-db", &dev.primary_uri()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        files,
        [
            "0011_add_contact_link.rs",
            "0012_add_contact_li_concurrently.rs"
        ],
        "{out}"
    );
    assert!(out.contains("+ column services.contact_link"), "{out}");
    assert!(out.contains("not compared:"), "{out}");
    let first = std::fs::read_to_string(dir.join(&files[0])).expect("read");
    assert!(
        first.contains("pub(crate) fn define(m: Migration) -> Migration"),
        "{first}"
    );
    // A plain nullable column: barrel writes it.
    assert!(
        first.contains("up0.change_table(\"services\", |t| {")
            && first.contains(
                "t.add_column(\"contact_link\", types::custom(\"text\").nullable(true));"
            )
            && first.contains("m.up(up0.make::<Pg>())"),
        "{first}"
    );
    let second = std::fs::read_to_string(dir.join(&files[1])).expect("read");
    assert!(second.contains(".no_transaction()"), "{second}");
    assert!(
        second.contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_services_contact_link"),
        "{second}"
    );
    // Same refusals as `revision -m`: the files are there now.
    let again = autogenerate_err(
        &dev,
        &dir,
        &["-m", "Add contact link", "--from-db", &dev.primary_uri()],
    )
    .await;
    assert!(again.contains("already exists"), "{again}");
}

/// [`run_autogenerate`] of the `.rs` form, which must be refused; returns the error.
async fn autogenerate_err(server: &TestDb, dir: &Path, args: &[&str]) -> String {
    run_autogenerate(server, dir, FileKind::Rust, args)
        .await
        .0
        .expect_err("the command is refused")
        .to_string()
}

#[tokio::test]
async fn from_sql_applies_the_file_to_a_scratch_database_and_writes_sql_files() {
    // The schema file: everything the set runs at head (its --sql output), plus a table.
    let head_sql = Migrator::offline(set().expect("set"))
        .render_sql(None, &Target::Head, Direction::Up)
        .expect("render the set");
    let dir = scratch_dir("sql");
    let schema = dir.join("schema.sql");
    std::fs::write(
        &schema,
        format!("{head_sql}\nCREATE TABLE letter_rates (id bigint PRIMARY KEY, rate numeric NOT NULL);\n"),
    )
    .expect("write the schema file");
    let out_dir = dir.join("migrations");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let server = test_db().await.expect("a database on the test server");
    let (code, out, files) = autogenerate(
        &server,
        &out_dir,
        FileKind::Sql,
        &[
            "-m",
            "letter rates",
            "--from-sql",
            schema.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        files,
        ["0011_letter_rates.down.sql", "0011_letter_rates.up.sql"],
        "{out}"
    );
    let up = std::fs::read_to_string(out_dir.join(&files[1])).expect("read");
    assert!(up.contains("CREATE TABLE letter_rates"), "{up}");
    let down = std::fs::read_to_string(out_dir.join(&files[0])).expect("read");
    assert!(
        down.contains("DROP TABLE IF EXISTS letter_rates;"),
        "{down}"
    );
}

#[tokio::test]
async fn no_difference_writes_nothing_and_says_so() {
    let dev = test_db().await.expect("development database");
    let dir = scratch_dir("none");
    let (code, out, files) = autogenerate(
        &dev,
        &dir,
        FileKind::Rust,
        &["-m", "nothing", "--from-db", &dev.primary_uri()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(files.is_empty(), "{files:?}");
    assert!(out.contains("no difference"), "{out}");
}

#[tokio::test]
async fn a_rename_is_written_as_a_commented_block_and_exits_non_zero() {
    let dev = dev_with("ALTER TABLE services RENAME COLUMN email_from TO email_sender").await;
    let dir = scratch_dir("rename");
    let (code, out, files) = autogenerate(
        &dev,
        &dir,
        FileKind::Rust,
        &["-m", "rename email from", "--from-db", &dev.primary_uri()],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT WRITTEN"), "{out}");
    assert_eq!(files, ["0011_rename_email_from.rs"], "{out}");
    let text = std::fs::read_to_string(dir.join(&files[0])).expect("read");
    assert!(
        text.contains("//!   column services.email_from (text) is gone"),
        "{text}"
    );
    assert!(
        text.contains("RENAME COLUMN email_from TO email_sender"),
        "{text}"
    );
    assert!(
        !text.contains(".up(r#\"ALTER"),
        "no statement is guessed: {text}"
    );
}

#[tokio::test]
async fn an_unreachable_development_database_is_named_without_its_password() {
    let server = test_db().await.expect("a database on the test server");
    // A port nothing listens on: the loopback port of a listener closed just now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgresql://dev:s3cret-pw@127.0.0.1:{port}/notification_api_dev");
    let dir = scratch_dir("unreachable");
    let err = autogenerate_err(&server, &dir, &["-m", "anything", "--from-db", &url]).await;
    assert!(
        err.contains(&format!("127.0.0.1:{port}/notification_api_dev")),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "the password leaked: {err}");
    let files = std::fs::read_dir(&dir).expect("read").count();
    assert_eq!(files, 0, "nothing is written when the comparison fails");
}
