//! A throwaway PostgreSQL server for tests and benchmarks (feature `testing`).
//!
//! [`TestPostgres::start`] runs `initdb` into a temporary directory and starts a server on a
//! free port of 127.0.0.1 with a socket directory of its own; it is stopped and removed when
//! dropped. As root, the server runs as the `postgres` user (PostgreSQL refuses root). The
//! binaries are looked up in `$PG_BIN_DIR`, then `/usr/lib/postgresql/<newest>/bin`.
//!
//! Set `TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB` to use an existing server instead
//! ([`TestPostgres::shared`]); each test then works in a database of its own on it. Tests
//! that stop the server always start their own ([`TestPostgres::start`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL server for one test.
pub struct TestPostgres {
    server: Server,
    /// The URL of the server's maintenance database.
    admin_url: String,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres").finish_non_exhaustive()
    }
}

enum Server {
    Own {
        dir: PathBuf,
        port: u16,
        bin: PathBuf,
        as_postgres: bool,
        running: bool,
    },
    External,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql: \
             scripts/test installs them (apt-get install postgresql), or set PG_BIN_DIR, or \
             TEST_POSTGRES_URL to use an existing server"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn check(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestPostgres {
    /// The server named by `TEST_POSTGRES_URL` if set, else a throwaway one.
    pub fn shared() -> Self {
        match std::env::var("TEST_POSTGRES_URL") {
            Ok(url) if !url.trim().is_empty() => Self {
                server: Server::External,
                admin_url: url.trim().to_owned(),
            },
            _ => Self::start(),
        }
    }

    /// A new throwaway server, whatever `TEST_POSTGRES_URL` says (for tests that stop it).
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(unique("ordering-pg"));
        std::fs::create_dir_all(dir.join("sock")).expect("creating the server's directory");
        if as_postgres {
            check(
                "chown postgres",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir)
                    .output(),
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let server = Server::Own {
            dir,
            port,
            bin,
            as_postgres,
            running: false,
        };
        let mut pg = Self {
            server,
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                "{data}",
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        pg.restart();
        pg
    }

    /// Runs a server binary (as `postgres` when root) and checks that it succeeded.
    fn run(&self, program: &str, args: &[&str]) {
        let Some(mut command) = self.command(program, args) else {
            panic!("{program}: this test needs a server of its own, not TEST_POSTGRES_URL's");
        };
        check(program, command.output());
    }

    /// A server binary's command line; `{data}`, `{port}`, `{sock}` and `{log}` in `args` are
    /// filled in. `None` for an external server.
    fn command(&self, program: &str, args: &[&str]) -> Option<Command> {
        let Server::Own {
            dir,
            port,
            bin,
            as_postgres,
            ..
        } = &self.server
        else {
            return None;
        };
        let data = dir.join("data");
        let sock = dir.join("sock");
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{data}", &data.display().to_string())
                    .replace("{port}", &port.to_string())
                    .replace("{sock}", &sock.display().to_string())
                    .replace("{log}", &dir.join("server.log").display().to_string())
            })
            .collect();
        let program_path = bin.join(program);
        let mut command = if *as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program_path);
            c
        } else {
            Command::new(&program_path)
        };
        command.args(&args).current_dir(dir);
        Some(command)
    }

    /// The URL of a new, empty database on this server.
    pub async fn create_database(&self) -> String {
        let name = unique("test");
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.admin_url));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(client);
        let _ = driver.await;
        self.url_of(&name)
    }

    fn url_of(&self, database: &str) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => panic!("{} names no database", self.admin_url),
        }
    }

    /// Stops the server (fast shutdown: connections are closed); [`restart`](Self::restart)
    /// brings it back on the same port with the same data.
    pub fn stop(&mut self) {
        self.run("pg_ctl", &["-D", "{data}", "-m", "fast", "-w", "stop"]);
        if let Server::Own { running, .. } = &mut self.server {
            *running = false;
        }
    }

    /// Starts the server again on its port with its data, once it accepts connections (60 s
    /// at most). Panics on a server of `TEST_POSTGRES_URL`'s, or when `pg_ctl` fails.
    pub fn restart(&mut self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                "{data}",
                "-l",
                "{log}",
                "-w",
                "-t",
                "60",
                "-o",
                "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200",
                "start",
            ],
        );
        if let Server::Own { running, .. } = &mut self.server {
            *running = true;
        }
    }

    /// Makes every new transaction of the server read-only (`on`) or writable again, as a
    /// failover leaves connections on a standby: `ALTER SYSTEM` and a configuration reload,
    /// which sessions already open take at their next transaction.
    pub async fn set_read_only(&self, on: bool) {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.admin_url));
        let driver = tokio::spawn(connection);
        let change = if on {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        // One statement per call: ALTER SYSTEM refuses to run inside a transaction, which
        // several statements in one call would form; this session stays writable.
        for sql in [
            "SET default_transaction_read_only = off",
            change,
            "SELECT pg_reload_conf()",
        ] {
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(client);
        let _ = driver.await;
    }

    /// Makes the server one a managed service runs: TCP connections only over TLS (`cert`
    /// and `key`, PEM) and with a SCRAM-SHA-256 password (`pg_hba.conf`: `hostssl ...
    /// scram-sha-256`, then `host ... reject`). `user` gets `password` and a database of its
    /// own, whose name is returned. The test's own administration goes through the server's
    /// socket from then on.
    pub async fn require_tls(
        &mut self,
        cert: &str,
        key: &str,
        user: &str,
        password: &str,
    ) -> String {
        let Server::Own { dir, port, .. } = &self.server else {
            panic!("require_tls needs a server of its own, not TEST_POSTGRES_URL's");
        };
        let (data, sock, port) = (dir.join("data"), dir.join("sock"), *port);
        let database = unique("secured");
        // Quoting by doubling: the test's password is its own.
        let literal = password.replace('\'', "''");
        self.execute(&[
            "SET password_encryption = 'scram-sha-256'",
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{literal}'"),
            &format!("CREATE DATABASE {database} OWNER {user}"),
            "ALTER SYSTEM SET ssl = on",
        ])
        .await;
        std::fs::write(data.join("server.crt"), cert).expect("writing server.crt");
        std::fs::write(data.join("server.key"), key).expect("writing server.key");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 reject\n",
        )
        .expect("writing pg_hba.conf");
        {
            use std::os::unix::fs::PermissionsExt;
            // PostgreSQL refuses a key others can read.
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod server.key");
        }
        if let Server::Own {
            as_postgres: true, ..
        } = &self.server
        {
            check(
                "chown postgres",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data)
                    .output(),
            );
        }
        let socket = sock.display().to_string().replace('/', "%2F");
        self.admin_url = format!("postgres://postgres@{socket}:{port}/postgres");
        self.stop();
        self.restart();
        database
    }

    /// After [`require_tls`](Self::require_tls), lets the same users in over plaintext too
    /// (with their password): for measuring what TLS costs against the same server.
    pub async fn allow_plaintext(&self) {
        let Server::Own { dir, .. } = &self.server else {
            panic!("allow_plaintext needs a server of its own");
        };
        std::fs::write(
            dir.join("data").join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("writing pg_hba.conf");
        self.execute(&["SELECT pg_reload_conf()"]).await;
    }

    /// Runs `statements` one by one as the administrator.
    pub async fn execute(&self, statements: &[&str]) {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.admin_url));
        let driver = tokio::spawn(connection);
        for sql in statements {
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(client);
        let _ = driver.await;
    }

    /// The rows of `sql` as the administrator, each value as text (`""` for NULL).
    pub async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.admin_url));
        let driver = tokio::spawn(connection);
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = driver.await;
        messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default().to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// The TCP port of a throwaway server.
    pub fn port(&self) -> Option<u16> {
        match &self.server {
            Server::Own { port, .. } => Some(*port),
            Server::External => None,
        }
    }

    /// The server's directory (data, socket, log), for a throwaway server.
    pub fn dir(&self) -> Option<&Path> {
        match &self.server {
            Server::Own { dir, .. } => Some(dir),
            Server::External => None,
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Server::Own { dir, running, .. } = &self.server {
            let stop = ["-D", "{data}", "-m", "immediate", "-w", "stop"];
            if let Some(mut command) = self.command("pg_ctl", &stop).filter(|_| *running) {
                let _ = command.output(); // never panic in drop: a failing test may be unwinding
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
