//! [`SqlDir`]: a temporary directory of `.sql` migrations for the migration tests.

use std::path::{Path, PathBuf};

/// A temporary directory of SQL migrations, removed on drop.
pub struct SqlDir(PathBuf);

impl SqlDir {
    /// An empty directory named after the test.
    pub fn new(label: &str) -> SqlDir {
        let dir =
            std::env::temp_dir().join(format!("notify-db-migrate-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the migration directory");
        SqlDir(dir)
    }

    /// A directory of `n` migrations `NNNN_t_N` (N from 1), each up `up(N)` (which creates
    /// table `t_N`) and down `DROP TABLE t_N`.
    pub fn tables(label: &str, n: usize, up: impl Fn(usize) -> String) -> SqlDir {
        let dir = SqlDir::new(label);
        for i in 1..=n {
            dir.add(
                &format!("{i:04}_t_{i}"),
                &up(i),
                Some(&format!("DROP TABLE t_{i}")),
            );
        }
        dir
    }

    /// Writes `<id>.up.sql` and, when given, `<id>.down.sql`.
    pub fn add(&self, id: &str, up: &str, down: Option<&str>) -> &SqlDir {
        std::fs::write(self.0.join(format!("{id}.up.sql")), up).expect("writing up");
        if let Some(d) = down {
            std::fs::write(self.0.join(format!("{id}.down.sql")), d).expect("writing down");
        }
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SqlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
