//! A throw-away PostgreSQL cluster for one test: `initdb` in a temp dir, the
//! server listening only on a unix socket in that dir, removed on drop.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`;
//! `scripts/test.sh` installs the `postgresql` package). PostgreSQL refuses
//! to run as root, so as root (CI) the cluster belongs to `nobody` and every
//! command runs through `runuser`.

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

/// A running cluster.
pub struct Pg {
    /// Data, socket and server log; removed on drop.
    dir: TempDir,
    /// Where initdb, pg_ctl and createdb are.
    bin: PathBuf,
    /// The port (the name of the socket file; on 127.0.0.1 too with TLS).
    pub port: u16,
    /// Listen on 127.0.0.1 with TLS (else only on the unix socket).
    tls: bool,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql",
    )
}

fn is_root() -> bool {
    super::disk::is_root()
}

impl Pg {
    /// Makes and starts a cluster with a superuser `ketenpoort` (trust
    /// authentication on its own socket) and a database `ketenpoort`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster that also listens on 127.0.0.1 with TLS only, its server
    /// certificate (SAN 127.0.0.1) issued by `ca`.
    pub fn start_tls(ca: &ketenpoort::pki::Ca) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&ketenpoort::pki::Ca>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster dir");
        }
        let pg = Self {
            dir,
            bin: bin_dir(),
            port,
            tls: ca.is_some(),
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "ketenpoort",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if let Some(ca) = ca {
            let leaf = ca
                .issue(&ketenpoort::pki::LeafSpec::server(
                    "db",
                    &["localhost", "127.0.0.1"],
                ))
                .unwrap();
            std::fs::write(data.join("server.crt"), &leaf.cert_pem).unwrap();
            std::fs::write(data.join("server.key"), &leaf.key_pem).unwrap();
            // Only TLS on the network: plain TCP is refused.
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
            std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
            let conf = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n";
            let mut c = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
            c.push_str(conf);
            std::fs::write(data.join("postgresql.conf"), c).unwrap();
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(data.join("server.key"), mode).unwrap();
            if is_root() {
                let ok = Command::new("chown")
                    .args(["-R", "nobody:nogroup"])
                    .arg(&data)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
        }
        pg.up();
        pg.run(
            "createdb",
            &[
                "-h",
                pg.socket_dir().to_str().unwrap(),
                "-p",
                &port.to_string(),
                "-U",
                "ketenpoort",
                "ketenpoort",
            ],
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder of the server's socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The connection string for `[storage] url`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host={} port={} user=ketenpoort dbname={db}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Another database in the same cluster.
    pub fn create_db(&self, name: &str) {
        self.run(
            "createdb",
            &[
                "-h",
                self.socket_dir().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "ketenpoort",
                name,
            ],
        );
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) {
        let listen = if self.tls { "127.0.0.1" } else { "" };
        let opts = format!(
            "-p {} -k {} -c listen_addresses='{listen}' -c max_connections=100",
            self.port,
            self.socket_dir().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (like a crash: no checkpoint, clients cut).
    pub fn down(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Runs one of the cluster's programs, as `nobody` when we are root;
    /// panics with its output when it fails.
    fn run(&self, prog: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(prog);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "nobody", "--"])
                .arg(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{prog} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs SQL in a database with psql (for a test that plays an attacker
    /// with write access to the database); gives psql's output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.run(
            "psql",
            &[
                "-h",
                self.socket_dir().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "ketenpoort",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `[storage]` table for a config file.
    pub fn storage_toml(&self, db: &str) -> String {
        format!(
            "\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            self.url(db)
        )
    }

    /// The server's log (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "nobody", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}
