//! `config/default.toml` shows the built-in defaults: read alone, it gives the same settings as no
//! file at all, so a default changed in the code and not in the file (or the other way round)
//! fails here.

use std::path::{Path, PathBuf};

use notify_db_config::{MigrationSettings, Settings};

/// The repository's `config/default.toml`.
fn default_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml")
}

/// A directory holding only a copy of `config/default.toml` (so no environment file is laid
/// over it), removed on drop.
struct OnlyDefaultToml(PathBuf);

impl OnlyDefaultToml {
    fn new() -> OnlyDefaultToml {
        let dir = std::env::temp_dir().join(format!(
            "notify-db-config-default-toml-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("creating a temporary config directory");
        let source = default_toml();
        std::fs::copy(&source, dir.join("default.toml"))
            .unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
        OnlyDefaultToml(dir)
    }
}

impl Drop for OnlyDefaultToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn default_toml_gives_the_settings_the_code_defaults_to() {
    let dir = OnlyDefaultToml::new();
    let no_env = |_: &str| None;
    let from_file = Settings::load(Some(&dir.0), &no_env).expect("loading config/default.toml");
    let built_in = Settings::load(None, &no_env).expect("loading the built-in defaults");
    assert_eq!(
        from_file.migrations,
        MigrationSettings::default(),
        "config/default.toml's [migrations] differs from MigrationSettings::default()"
    );
    assert_eq!(
        from_file, built_in,
        "config/default.toml differs from the built-in defaults"
    );
}

#[test]
fn default_toml_writes_out_every_migration_setting_that_has_a_value() {
    let path = default_toml();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "[migrations]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect();
    assert!(
        !section.is_empty(),
        "no [migrations] section in {}",
        path.display()
    );
    // The settings whose default is a value (not "none"/"forever") are shown, not only implied.
    for key in ["lock_timeout", "max_attempts", "retry_delay"] {
        assert!(
            section
                .iter()
                .any(|l| l.split('=').next().map(str::trim) == Some(key)),
            "[migrations] of {} does not show `{key}`",
            path.display()
        );
    }
}
