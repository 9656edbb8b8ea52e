//! A throwaway PostgreSQL server for tests with real processes: a cluster made with `initdb` in a
//! temporary folder, started with `pg_ctl` on a free loopback port, removed when dropped.
//!
//! Tests that need PostgreSQL call [`TempPostgres::start`]; it finds the server binaries
//! (`OBJSYNC_PG_BINDIR`, `pg_config --bindir`, or Debian's `/usr/lib/postgresql/<major>/bin`) and,
//! when none are installed, installs Debian's `postgresql` package with `apt-get`, so the README's
//! test command works on a fresh machine as well as in CI. PostgreSQL refuses to run as root, so
//! under root the cluster is owned by and run as the `postgres` system user the package creates.
//!
//! The port is taken below the kernel's ephemeral range, so that the outgoing connections of the
//! test's own servers (which take ephemeral ports) can never hold it, not even while a test has
//! stopped the cluster to restart it; a first start that still fails is retried on another port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A running PostgreSQL cluster in a temporary folder, stopped and removed on drop.
#[derive(Debug)]
pub struct TempPostgres {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<String>,
}

/// Why a temporary PostgreSQL could not be made.
#[derive(Debug)]
pub struct PostgresUnavailable(pub String);

impl std::fmt::Display for PostgresUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no PostgreSQL for the test: {}", self.0)
    }
}

impl std::error::Error for PostgresUnavailable {}

impl TempPostgres {
    /// Makes a new cluster (user `postgres`, trust authentication on loopback) and starts it.
    pub fn start() -> Result<TempPostgres, PostgresUnavailable> {
        let bindir = find_bindir().or_else(|_| {
            install_package()?;
            find_bindir()
        })?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = temp_dir()?;
        if let Some(user) = &run_as {
            run(Command::new("chown").arg(user).arg(&dir))?;
        }
        let mut pg = TempPostgres {
            bindir,
            dir,
            port: free_port()?,
            run_as,
        };
        let data = pg.data_dir();
        pg.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        // Logical decoding and enough connections for several servers, a connector and psql.
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = 200\nwal_level = logical\nmax_replication_slots = 10\n\
             max_wal_senders = 10\nfsync = off\n",
            pg.port,
            path_str(&pg.dir)?
        );
        pg.append_conf(&conf)?;
        let mut attempts = 1;
        loop {
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                // Another program may have bound the port between the probe and the start; a
                // later `port` line overrides the earlier one. A postmaster that was only slow
                // to start would hold the data folder against the next try, so it is stopped.
                Err(_) if attempts < START_ATTEMPTS => {
                    attempts += 1;
                    let _ = pg.stop();
                    pg.port = free_port()?;
                    pg.append_conf(&format!("port = {}\n", pg.port))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn append_conf(&self, lines: &str) -> Result<(), PostgresUnavailable> {
        let conf_path = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .map_err(|e| PostgresUnavailable(format!("reading {}: {e}", conf_path.display())))?;
        text.push_str(lines);
        std::fs::write(&conf_path, text)
            .map_err(|e| PostgresUnavailable(format!("writing {}: {e}", conf_path.display())))
    }

    /// The libpq `key=value` connection string of the `postgres` database.
    pub fn connstr(&self) -> String {
        self.connstr_for("postgres")
    }

    /// The libpq `key=value` connection string of database `dbname`.
    pub fn connstr_for(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (for tests that want one database each).
    pub fn create_database(&self, name: &str) -> Result<(), PostgresUnavailable> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(drop)
    }

    /// Runs `sql` with `psql` in database `dbname` and returns its unaligned, tuples-only output
    /// (rows on lines, columns separated by `|`): what another program changing rows does.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, PostgresUnavailable> {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.connstr_for(dbname))
            .args(["-c", sql])
            .output()
            .map_err(|e| PostgresUnavailable(format!("running psql: {e}")))?;
        if !out.status.success() {
            return Err(PostgresUnavailable(format!(
                "psql failed on {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) -> Result<(), PostgresUnavailable> {
        let data = self.data_dir();
        self.run_pg(
            "pg_ctl",
            &["stop", "-D", path_str(&data)?, "-m", "immediate"],
        )
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port and data.
    pub fn start_server(&self) -> Result<(), PostgresUnavailable> {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        self.run_pg(
            "pg_ctl",
            &[
                "start",
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
            ],
        )
        .map_err(|PostgresUnavailable(e)| {
            // pg_ctl only says to look at the log; the reason is in its last lines.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            PostgresUnavailable(format!(
                "{e}\nport {}, {}:\n{}",
                self.port,
                log.display(),
                tail.join("\n")
            ))
        })?;
        self.wait_ready()
    }

    /// Stops the server at once and starts it again: PostgreSQL restarted under its clients.
    pub fn restart(&self) -> Result<(), PostgresUnavailable> {
        self.stop()?;
        self.start_server()
    }

    fn wait_ready(&self) -> Result<(), PostgresUnavailable> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> Result<(), PostgresUnavailable> {
        let program = self.bindir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) -> Result<(), PostgresUnavailable> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PostgresUnavailable(format!("running {command:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PostgresUnavailable(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn find_bindir() -> Result<PathBuf, PostgresUnavailable> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("OBJSYNC_PG_BINDIR").map(PathBuf::from) {
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(PostgresUnavailable(format!(
                "OBJSYNC_PG_BINDIR={} has no initdb",
                dir.display()
            )))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((major, bin))
        })
        .collect();
    debian.sort();
    debian
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| PostgresUnavailable("initdb not found".into()))
}

fn install_package() -> Result<(), PostgresUnavailable> {
    if !is_root() {
        return Err(PostgresUnavailable(
            "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
                .into(),
        ));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "postgresql",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn temp_dir() -> Result<PathBuf, PostgresUnavailable> {
    let base = std::env::temp_dir();
    for attempt in 0..1000u32 {
        let dir = base.join(format!("objsync-pg-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(PostgresUnavailable(format!(
                    "creating {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(PostgresUnavailable("no free temporary folder name".into()))
}

/// How many ports a new cluster tries before giving up.
const START_ATTEMPTS: u32 = 5;

/// How many lines of the server's log a failed start reports.
const LOG_TAIL_LINES: usize = 12;

/// The ports clusters are started on: below Linux's default ephemeral range (32768-60999) and
/// above the registered services most machines run.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port in [`PORTS`] that nothing listens on now. Candidates are spread by process id, time and
/// a counter, so that concurrent test processes rarely probe the same port.
fn free_port() -> Result<u16, PostgresUnavailable> {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let span = u32::from(PORTS.end - PORTS.start);
    for _ in 0..span {
        let probe = PROBES.fetch_add(1, Ordering::Relaxed);
        let mix = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(nanos)
            .wrapping_add(probe.wrapping_mul(7_919));
        let port = PORTS.start + (mix % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(PostgresUnavailable(format!(
        "no free port in {}..{}",
        PORTS.start, PORTS.end
    )))
}

fn path_str(path: &Path) -> Result<&str, PostgresUnavailable> {
    path.to_str()
        .ok_or_else(|| PostgresUnavailable(format!("{} is not UTF-8", path.display())))
}
