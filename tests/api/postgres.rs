//! A throwaway PostgreSQL server for the tests: a new cluster in a temporary folder, from the
//! machine's own PostgreSQL binaries, on a free port of 127.0.0.1, stopped when dropped.
//! PostgreSQL refuses to run as root, so under root it runs as the `postgres` system user.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::helpers::skip;

pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// `postgres://…` of the cluster's `postgres` database.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The newest `bin` folder of an installed PostgreSQL (Debian's layout).
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// A new cluster, or `None` after reporting the skip when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = binaries() else {
            skip("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("facelock-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to the postgres user failed");
        }
        let data = dir.path().join("data");
        let mut server = Self {
            bin,
            data,
            as_postgres,
            url: String::new(),
            _dir: dir,
        };
        server.run(
            "initdb",
            &[
                "-D".into(),
                server.data.display().to_string(),
                "-U".into(),
                "facelock".into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-sync".into(),
            ],
        );
        let port = free_port();
        let socket_dir = server.data.parent().unwrap().display().to_string();
        server.run(
            "pg_ctl",
            &[
                "-D".into(),
                server.data.display().to_string(),
                "-l".into(),
                format!("{socket_dir}/server.log"),
                "-o".into(),
                // A test database: durability off for speed, connections only from here.
                format!(
                    "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
                ),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "start".into(),
            ],
        );
        server.url = format!("postgres://facelock@127.0.0.1:{port}/postgres");
        Some(server)
    }

    /// A new, empty database on this server; its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
        self.url.replace("/postgres", &format!("/{name}"))
    }

    fn run(&self, tool: &str, args: &[String]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(
            self.data
                .parent()
                .unwrap_or(Path::new("/"))
                .join("server.log"),
        )
        .unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let program = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
