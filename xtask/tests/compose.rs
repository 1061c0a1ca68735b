//! docker-compose.yml, its scripts and the Dockerfile are checked here: Docker's engine is not on
//! the development and CI machines, so the file is parsed and its shape verified instead of run.

mod workspace;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use clap::Parser as _;
use notify_db_config::{DatabaseUri, Settings};
use yaml_rust2::{Yaml, YamlLoader};

use workspace::{read, root};

/// The shipped migration binary (migrations/Cargo.toml's `[[bin]]`) and the features it requires.
fn migration_binary() -> (String, Vec<String>) {
    let manifest = read("migrations/Cargo.toml");
    let bin = manifest
        .split("[[bin]]")
        .nth(1)
        .expect("migrations/Cargo.toml has a [[bin]]");
    let name = bin
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the [[bin]] has a name")
        .to_string();
    let features = bin
        .lines()
        .find_map(|l| l.strip_prefix("required-features = ["))
        .and_then(|l| l.strip_suffix(']'))
        .map(|l| {
            l.split(',')
                .map(|f| f.trim().trim_matches('"').to_string())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    (name, features)
}

fn compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml"))
        .expect("docker-compose.yml is valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.into_iter().next().expect("document")
}

fn service<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &doc["services"][name];
    assert!(s.as_hash().is_some(), "service {name} missing");
    s
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

/// A list of strings (a sequence, or a single string split on whitespace as Compose does for `command`).
fn words(y: &Yaml, what: &str) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().map(|v| str_of(v, what).to_string()).collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_string).collect(),
        other => panic!("{what}: expected a list, got {other:?}"),
    }
}

/// Replaces every `${NAME:-default}` by its default, as Compose does when NAME is unset.
/// Fails on a variable without a default: `docker compose up` must work without a .env file.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"))
            + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default in {s:?}"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    assert!(
        !out.contains('$'),
        "bare $ in {s:?} (Compose needs $$ for a literal $)"
    );
    out
}

/// The `environment` mapping of a service, interpolated with the defaults.
fn environment(svc: &Yaml, name: &str) -> BTreeMap<String, String> {
    let h = svc["environment"]
        .as_hash()
        .unwrap_or_else(|| panic!("{name}: environment must be a mapping"));
    h.iter()
        .map(|(k, v)| {
            let k = str_of(k, "environment key").to_string();
            let v = match v {
                Yaml::String(s) => interpolate(s),
                other => panic!("{name}: {k} must be a quoted string (Compose rejects numbers/booleans), got {other:?}"),
            };
            (k, v)
        })
        .collect()
}

/// The lines of the Dockerfile stage `FROM ... AS <name>`, up to the next `FROM`.
fn stage(name: &str) -> String {
    let dockerfile = read("Dockerfile");
    let mut out = String::new();
    let mut inside = false;
    for line in dockerfile.lines() {
        if line.starts_with("FROM ") {
            inside = line.ends_with(&format!(" AS {name}"));
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "the Dockerfile has no stage {name}");
    out
}

fn depends_on_healthy(svc: &Yaml, name: &str, on: &str) {
    assert_eq!(
        svc["depends_on"][on]["condition"].as_str(),
        Some("service_healthy"),
        "{name} must wait for {on} to be healthy"
    );
}

#[test]
fn services_images_and_ports() {
    let doc = compose();
    let names: BTreeSet<&str> = doc["services"]
        .as_hash()
        .expect("services mapping")
        .keys()
        .map(|k| str_of(k, "service name"))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["primary", "replica", "migrate", "api"])
    );
    for (name, port) in [("primary", "5432:5432"), ("replica", "5433:5432")] {
        let s = service(&doc, name);
        assert_eq!(s["image"].as_str(), Some("postgres:15"), "{name} image");
        assert_eq!(
            words(&s["ports"], "ports"),
            vec![port.to_string()],
            "{name} ports"
        );
    }
    assert!(
        service(&doc, "migrate")["ports"].is_badvalue(),
        "migrate publishes no port"
    );
}

#[test]
fn healthchecks_use_pg_isready_and_the_replica_must_be_in_recovery() {
    let doc = compose();
    for name in ["primary", "replica"] {
        let hc = &service(&doc, name)["healthcheck"];
        let test = words(&hc["test"], "healthcheck.test");
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD-SHELL"),
            "{name}: {test:?}"
        );
        let cmd = test[1..].join(" ");
        assert!(
            cmd.contains("pg_isready") && cmd.contains("-d notification_api"),
            "{name}: {cmd}"
        );
        for key in ["interval", "timeout", "retries", "start_period"] {
            assert!(!hc[key].is_badvalue(), "{name}: healthcheck.{key} missing");
        }
    }
    let replica = words(&service(&doc, "replica")["healthcheck"]["test"], "test").join(" ");
    assert!(
        replica.contains("SELECT pg_is_in_recovery()") && replica.contains("grep -qx t"),
        "{replica}"
    );
}

#[test]
fn primary_is_configured_for_streaming_replication() {
    let doc = compose();
    let p = service(&doc, "primary");
    let cmd = words(&p["command"], "command");
    assert_eq!(cmd.first().map(String::as_str), Some("postgres"));
    let settings: Vec<&str> = cmd
        .windows(2)
        .filter(|w| w[0] == "-c")
        .map(|w| w[1].as_str())
        .collect();
    for s in ["wal_level=replica", "max_wal_senders=10"] {
        assert!(
            settings.contains(&s),
            "primary command lacks -c {s}: {cmd:?}"
        );
    }
    let env = environment(p, "primary");
    assert_eq!(
        env.get("POSTGRES_DB").map(String::as_str),
        Some("notification_api")
    );
    assert!(env.get("POSTGRES_PASSWORD").is_some_and(|v| !v.is_empty()));
    assert!(
        env.get("REPLICATION_PASSWORD")
            .is_some_and(|v| !v.is_empty())
    );
    let init = read("docker/primary/10-replication.sh");
    assert!(
        init.contains("WITH REPLICATION LOGIN PASSWORD :'pw'"),
        "{init}"
    );
    assert!(
        init.contains("host replication replicator all scram-sha-256"),
        "{init}"
    );
}

#[test]
fn replica_clones_the_primary_and_runs_as_hot_standby() {
    let doc = compose();
    let r = service(&doc, "replica");
    depends_on_healthy(r, "replica", "primary");
    assert_eq!(r["user"].as_str(), Some("postgres"));
    let entry = words(&r["entrypoint"], "entrypoint");
    assert_eq!(entry, vec!["bash", "/usr/local/bin/replica-entrypoint.sh"]);
    let mounts = words(&r["volumes"], "volumes");
    assert!(
        mounts.contains(
            &"./docker/replica/entrypoint.sh:/usr/local/bin/replica-entrypoint.sh:ro".to_string()
        ),
        "{mounts:?}"
    );
    let env = environment(r, "replica");
    assert_eq!(env.get("PRIMARY_HOST").map(String::as_str), Some("primary"));
    // The replica streams with the password the primary's init script gave the replicator role.
    let primary_env = environment(service(&doc, "primary"), "primary");
    assert_eq!(
        env.get("REPLICATION_PASSWORD"),
        primary_env.get("REPLICATION_PASSWORD")
    );
    let script = read("docker/replica/entrypoint.sh");
    for needle in [
        "pg_basebackup",
        "--write-recovery-conf",
        "--username=replicator",
        "--wal-method=stream",
        "exec postgres",
        "hot_standby=on",
    ] {
        assert!(script.contains(needle), "replica entrypoint lacks {needle}");
    }
}

#[test]
fn migrate_runs_upgrade_against_the_primary_with_the_service_environment() {
    let doc = compose();
    let m = service(&doc, "migrate");
    let command = words(&m["command"], "command");
    assert_eq!(command, vec!["upgrade", "--wait-for-db", "60s"]);
    // The migration CLI parses it: upgrade, waiting up to 60 s for the server.
    let cli = notify_db_migrate_cli::cli::MigrateCli::try_parse_from(
        std::iter::once("notify-db-migrations".to_owned()).chain(command),
    )
    .expect("the compose command parses as the migration CLI's");
    assert!(matches!(
        cli.command,
        Some(notify_db_migrate_cli::cli::Command::Upgrade { target: None })
    ));
    assert_eq!(cli.wait_for_db, Some(std::time::Duration::from_secs(60)));
    assert_eq!(m["build"]["context"].as_str(), Some("."));
    assert_eq!(m["build"]["dockerfile"].as_str(), Some("Dockerfile"));
    assert_eq!(m["build"]["target"].as_str(), Some("migrate"));
    // The image ships the migration binary (the set compiled in), not the dev tooling of xtask.
    let (binary, _) = migration_binary();
    let migrate_stage = stage("migrate");
    assert!(
        migrate_stage.contains(&format!("ENTRYPOINT [\"{binary}\"]"))
            && migrate_stage.contains("CMD [\"upgrade\"]")
            && migrate_stage.contains(&format!("/src/target/release/{binary} ")),
        "{migrate_stage}"
    );
    assert!(!migrate_stage.contains("xtask"), "{migrate_stage}");
    assert!(
        read("Dockerfile").trim_end().ends_with("CMD [\"upgrade\"]"),
        "migrate must be the last stage, so a plain `docker build .` makes the migrate image"
    );
    assert_eq!(
        m["restart"].as_str(),
        Some("no"),
        "a one-shot job must not be restarted"
    );
    depends_on_healthy(m, "migrate", "primary");

    let env = environment(m, "migrate");
    for var in [
        "SQLALCHEMY_DATABASE_URI",
        "SQLALCHEMY_DATABASE_URI_BULK",
        "DATABASE_STATEMENT_TIMEOUT_MS",
        "DATABASE_STATEMENT_TIMEOUT_REPLICA_MS",
        "DATABASE_MAX_PARALLEL_WORKERS",
        "DATABASE_MAX_PARALLEL_WORKERS_REPLICA",
        "DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY",
        "SQLALCHEMY_POOL_SIZE",
        "NOTIFY_ENVIRONMENT",
    ] {
        assert!(env.contains_key(var), "migrate environment lacks {var}");
    }
    // The URIs parse with our own parser and point at the compose services.
    let primary = DatabaseUri::parse(&env["SQLALCHEMY_DATABASE_URI"], "SQLALCHEMY_DATABASE_URI")
        .expect("primary URI parses");
    assert_eq!(
        primary
            .hosts()
            .iter()
            .map(|h| (h.host.as_str(), h.port))
            .collect::<Vec<_>>(),
        vec![("primary", 5432)]
    );
    assert_eq!(primary.dbname(), "notification_api");
    let bulk = DatabaseUri::parse(
        &env["SQLALCHEMY_DATABASE_URI_BULK"],
        "SQLALCHEMY_DATABASE_URI_BULK",
    )
    .expect("bulk URI parses");
    assert_eq!(
        bulk.hosts()
            .iter()
            .map(|h| (h.host.as_str(), h.port))
            .collect::<Vec<_>>(),
        vec![("replica", 5432)]
    );
    assert_eq!(bulk.dbname(), "notification_api");
    // NOTIFY_CONFIG_DIR is where the Dockerfile puts config/.
    let config_dir = &env["NOTIFY_CONFIG_DIR"];
    assert!(
        read("Dockerfile").contains(&format!("COPY --chown=notify:notify config {config_dir}\n")),
        "the Dockerfile does not copy config/ to {config_dir}"
    );
    // The whole environment loads with the config crate, as the container would load it.
    let settings = Settings::load(Some(&root().join("config")), &|k| env.get(k).cloned())
        .expect("compose environment loads");
    assert_eq!(settings.environment, "production");
    assert!(!settings.bulk_is_fallback);
    assert_eq!(
        settings.session.statement_timeout_primary.as_millis(),
        1_200_000
    );
    assert_eq!(settings.pool.size, 5);
    // Containers reach the servers by service name, never by a host port.
    assert!(
        !env["SQLALCHEMY_DATABASE_URI"].contains("localhost")
            && !env["SQLALCHEMY_DATABASE_URI"].contains("127.0.0.1")
    );
}

#[test]
fn api_starts_after_a_successful_migration_with_the_same_environment() {
    let doc = compose();
    let api = service(&doc, "api");
    assert_eq!(api["build"]["target"].as_str(), Some("service"));
    assert_eq!(api["build"]["context"].as_str(), Some("."));
    // Deployment order: the code starts only once the migration job exited 0.
    assert_eq!(
        api["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    depends_on_healthy(api, "api", "replica");
    assert_eq!(
        environment(api, "api"),
        environment(service(&doc, "migrate"), "migrate"),
        "api and migrate share the service environment"
    );
    // The port published is the one the image listens on, and the one the healthcheck probes.
    let service_stage = stage("service");
    let listen = service_stage
        .lines()
        .find_map(|l| l.strip_prefix("ENV LISTEN_ADDR="))
        .expect("the service stage sets LISTEN_ADDR");
    let port = listen.rsplit(':').next().expect("a port");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "inside a container the API must listen on all interfaces: {listen}"
    );
    assert_eq!(
        words(&api["ports"], "ports"),
        vec![format!("{port}:{port}")]
    );
    let probe = words(&api["healthcheck"]["test"], "healthcheck.test").join(" ");
    assert!(
        probe.contains(&format!("/dev/tcp/127.0.0.1/{port}")),
        "{probe}"
    );
    // The binary copied is the one examples/service builds.
    let manifest = read("examples/service/Cargo.toml");
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("package name");
    assert!(
        root().join("examples/service/src/main.rs").is_file(),
        "examples/service has no binary"
    );
    assert!(
        service_stage.contains(&format!("/src/target/release/{name} ")),
        "{service_stage}"
    );
    assert!(
        service_stage.contains(&format!("ENTRYPOINT [\"{name}\"]")),
        "{service_stage}"
    );
    assert!(
        build_command().contains(&format!(" -p {name}")),
        "the build must build {name}"
    );
}

#[test]
fn volumes_are_named_and_bind_mounts_exist() {
    let doc = compose();
    let declared: BTreeSet<&str> = doc["volumes"]
        .as_hash()
        .expect("top-level volumes")
        .keys()
        .map(|k| str_of(k, "volume"))
        .collect();
    assert_eq!(declared, BTreeSet::from(["primary-data", "replica-data"]));
    for (name, volume) in [("primary", "primary-data"), ("replica", "replica-data")] {
        let mounts = words(&service(&doc, name)["volumes"], "volumes");
        assert!(
            mounts.contains(&format!("{volume}:/var/lib/postgresql/data")),
            "{name}: {mounts:?}"
        );
        for m in &mounts {
            let source = m.split(':').next().unwrap_or_default();
            if let Some(rel) = source.strip_prefix("./") {
                assert!(
                    root().join(rel).is_file(),
                    "{name} mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    declared.contains(source),
                    "{name} mounts undeclared volume {source}"
                );
            }
        }
    }
}

#[test]
fn scripts_are_valid_bash() {
    for script in [
        "docker/primary/10-replication.sh",
        "docker/replica/entrypoint.sh",
    ] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(root().join(script))
            .output()
            .expect("run bash -n");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            read(script).contains("set -euo pipefail"),
            "{script} must stop on errors"
        );
    }
}

/// The Dockerfile's `RUN cargo build ...` line.
fn build_command() -> String {
    read("Dockerfile")
        .lines()
        .find(|l| l.starts_with("RUN cargo build "))
        .expect("the Dockerfile runs cargo build")
        .to_string()
}

#[test]
fn dockerfile_builds_the_shipped_binaries_from_every_workspace_member() {
    let dockerfile = read("Dockerfile");
    let build = build_command();
    assert!(
        build.starts_with("RUN cargo build --release --locked "),
        "{build}"
    );
    // The migration binary with the features it requires; never xtask (dev tooling).
    let (binary, features) = migration_binary();
    assert!(build.contains(&format!(" -p {binary}")), "{build}");
    for f in &features {
        assert!(
            build.contains(&format!("{binary}/{f}")),
            "the build does not enable {binary}'s required feature {f}: {build}"
        );
    }
    assert!(!build.contains("xtask"), "{build}");
    let copied: BTreeSet<String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // Every workspace member (and the lock file) must be in the build context, or the build fails.
    let manifest = read("Cargo.toml");
    let members = manifest
        .split("members")
        .nth(1)
        .and_then(|s| s.split(['[', ']']).nth(1))
        .expect("workspace members");
    for m in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        let top = m.split('/').next().unwrap_or(m);
        assert!(
            copied.contains(top),
            "Dockerfile does not COPY workspace member {m} ({top}); copied {copied:?}"
        );
    }
    for f in ["Cargo.toml", "Cargo.lock", ".cargo"] {
        assert!(copied.contains(f), "Dockerfile does not COPY {f}");
    }
}
