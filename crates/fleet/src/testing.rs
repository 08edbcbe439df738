//! A private PostgreSQL server for tests (feature `testing`).
//!
//! Each [`PgServer`] runs its own cluster in a temporary directory, as the
//! `postgres` OS user (the server refuses to run as root), on a Unix socket
//! in that directory and optionally on 127.0.0.1. It can be stopped and
//! started again on the same data directory (to test "database down"), and
//! is killed by PID when dropped. Tests that need it fail, loudly, when the
//! PostgreSQL binaries are missing: `scripts/packages` installs them.
//!
//! ```no_run
//! # async fn f() {
//! use assent_fleet::testing::PgServer;
//! let pg = PgServer::start().expect("postgres");
//! let url = pg.create_database("t1").expect("createdb");
//! // url: "host=/tmp/... port=... user=postgres dbname=t1 sslmode=disable"
//! # }
//! ```

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a harness step failed at, with enough said to act on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HarnessError(String);

fn fail<T>(msg: impl Into<String>) -> Result<T, HarnessError> {
    Err(HarnessError(msg.into()))
}

/// How to start a [`PgServer`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Also listen on 127.0.0.1 (TCP), e.g. for TLS tests.
    pub tcp: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A running (or stopped) private PostgreSQL server.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    options: PgOptions,
    uid: u32,
    gid: u32,
    child: Option<Child>,
}

/// The directory holding `postgres` and `initdb`: `$ASSENT_PG_BIN`, or the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("ASSENT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => fail(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/postgres): \
             the fleet tests start a private server; run scripts/packages, which installs \
             the `postgresql` package",
        ),
    }
}

impl PgServer {
    /// initdb + start, Unix socket only.
    pub fn start() -> Result<PgServer, HarnessError> {
        PgServer::start_with(PgOptions::default())
    }

    /// initdb + start with `options`.
    pub fn start_with(options: PgOptions) -> Result<PgServer, HarnessError> {
        let bin = pg_bin_dir()?;
        let (uid, gid) = postgres_user()?;
        let dir = tempfile::Builder::new()
            .prefix("assent-pg-")
            .tempdir()
            .map_err(|e| HarnessError(format!("temp dir: {e}")))?;
        for sub in ["", "sock"] {
            let p = dir.path().join(sub);
            std::fs::create_dir_all(&p).map_err(|e| HarnessError(format!("mkdir: {e}")))?;
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .map_err(|e| HarnessError(format!("chown {}: {e}", p.display())))?;
        }
        let mut server = PgServer {
            bin,
            port: free_port()?,
            dir,
            options,
            uid,
            gid,
            child: None,
        };
        server.initdb()?;
        server.start_again()?;
        Ok(server)
    }

    fn initdb(&self) -> Result<(), HarnessError> {
        let out = self
            .as_postgres(&self.bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "-D",
            ])
            .arg(self.data_dir())
            .output()
            .map_err(|e| HarnessError(format!("initdb: {e}")))?;
        if !out.status.success() {
            return fail(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// A command run as the postgres OS user, in the temp dir.
    fn as_postgres(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.gid).current_dir(self.dir.path());
        cmd
    }

    /// Starts the server on its existing data directory and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Ok(());
        }
        let listen = if self.options.tcp { "127.0.0.1" } else { "" };
        let mut cmd = self.as_postgres(&self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", &format!("listen_addresses={listen}")])
            .args(["-c", "fsync=off", "-c", "max_connections=200"]);
        for (k, v) in &self.options.settings {
            cmd.args(["-c", &format!("{k}={v}")]);
        }
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .map_err(|e| HarnessError(format!("server log: {e}")))?;
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError(format!("starting postgres: {e}")))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return fail(format!("postgres exited ({status}): {}", self.log()));
                }
            }
            if Instant::now() > deadline {
                return fail(format!("postgres did not become ready: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits
    /// for it to exit. The data directory stays for [`start_again`].
    ///
    /// [`start_again`]: PgServer::start_again
    pub fn stop(&mut self) {
        self.signal_and_wait("-INT", Duration::from_secs(20));
    }

    fn signal_and_wait(&mut self, signal: &str, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Replaces the options the next [`start_again`](PgServer::start_again)
    /// uses (e.g. to turn TLS on once its files are in place).
    pub fn set_options(&mut self, options: PgOptions) {
        self.options = options;
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// A directory owned by the postgres user, for files the server reads
    /// (e.g. a TLS key, which it wants owned by itself with mode 0600).
    pub fn private_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes a file owned by the postgres user with `mode`.
    pub fn give_to_postgres(&self, path: &Path, mode: u32) -> Result<(), HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| HarnessError(format!("chown {}: {e}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| HarnessError(format!("chmod {}: {e}", path.display())))
    }

    /// Conninfo for `dbname` over the Unix socket as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        self.url_as(dbname, "postgres")
    }

    /// Conninfo for `dbname` over the Unix socket as `user`.
    pub fn url_as(&self, dbname: &str, user: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={dbname} sslmode=disable",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Creates `dbname` and returns its [`url`](PgServer::url).
    pub fn create_database(&self, dbname: &str) -> Result<String, HarnessError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{dbname}\""))?;
        Ok(self.url(dbname))
    }

    /// Runs SQL as the superuser with psql (stops at the first error).
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, HarnessError> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", dbname])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| HarnessError(format!("psql: {e}")))?;
        if !out.status.success() {
            return fail(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown: the data is thrown away with the directory.
        self.signal_and_wait("-QUIT", Duration::from_secs(5));
    }
}

fn postgres_user() -> Result<(u32, u32), HarnessError> {
    let id = |flag: &str| -> Result<u32, HarnessError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| HarnessError(format!("id: {e}")))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                HarnessError(
                    "no `postgres` OS user: run scripts/packages (it installs postgresql, \
                 which creates the user)"
                        .into(),
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError(format!("port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError(format!("port: {e}")))
}
