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
    /// The cluster's `postgres` database over its Unix socket, for the test's own set-up.
    admin: String,
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

/// A server certificate for `localhost` and the authority that signed it, made for one test.
pub struct TestCertificates {
    pub ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl TestCertificates {
    pub fn new() -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Face Lock test authority");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl PgServer {
    /// A new cluster, or `None` after reporting the skip when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// A cluster that takes TCP connections only over TLS, with `certs`' server certificate;
    /// its [`PgServer::url`] names `localhost`, as the certificate does.
    pub fn start_with_tls(certs: &TestCertificates) -> Option<Self> {
        Self::start_with(Some(certs))
    }

    fn start_with(tls: Option<&TestCertificates>) -> Option<Self> {
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
            admin: String::new(),
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
        let mut ssl = String::new();
        if let Some(certs) = tls {
            server.write_owned("server.crt", &certs.cert_pem);
            server.write_owned("server.key", &certs.key_pem);
            server.write_owned(
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            );
            ssl = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        }
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
                     -c synchronous_commit=off -c full_page_writes=off -c max_connections=200{ssl}"
                ),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "start".into(),
            ],
        );
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        server.url = format!("postgres://facelock@{host}:{port}/postgres");
        server.admin = format!("host={socket_dir} port={port} user=facelock dbname=postgres");
        Some(server)
    }

    /// Writes `name` into the data folder, readable by the server's user only.
    fn write_owned(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "chown {name} to the postgres user failed");
        }
    }

    /// A new, empty database on this server; its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.admin, tokio_postgres::NoTls)
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
