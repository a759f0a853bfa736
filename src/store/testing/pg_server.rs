//! A PostgreSQL for tests, shared by the unit tests (`store::testing`) and
//! the integration tests (`tests/common/pg.rs` includes this file). With
//! `TOLLGATE_TEST_PG_URL` set, that server; otherwise a private one this
//! test binary starts on a free port (`initdb` into a temporary directory,
//! as user `postgres` when running as root, then `pg_ctl start`), one per
//! binary. Each test gets a database of its own. The private server is
//! stopped when the binary ends, however it ends: a small shell waits on a
//! pipe only this process holds, and at EOF runs `pg_ctl -m immediate
//! stop` and removes the directory. Missing PostgreSQL binaries fail the
//! tests, with how to install them.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Why the tests cannot run, and how to make them.
pub fn missing() -> String {
    MISSING.to_string()
}

const MISSING: &str = "PostgreSQL is needed by the store tests and was not found (no initdb and pg_ctl \
     in /usr/lib/postgresql/*/bin or on PATH). Install it with `bash scripts/setup.sh` (Debian: \
     `apt-get install postgresql`), or set TOLLGATE_TEST_PG_URL to a server where the tests may create \
     databases (postgres://user:password@host:port/postgres).";

pub struct PgServer {
    /// The server's maintenance database, where test databases are made.
    admin_url: String,
    /// Whether it is ours (thrown away whole) or the environment's (each
    /// test database is dropped after its test).
    private: bool,
    /// Closed only when this process ends: the reaper then stops the server.
    _reaper: Option<ChildStdin>,
    /// How to stop and start a private server again (outage tests).
    #[allow(dead_code)]
    control: Option<Control>,
}

#[allow(dead_code)]
struct Control {
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    options: String,
    root: bool,
}

#[allow(dead_code)]
impl PgServer {
    /// Stops a private server (fast shutdown: connections are cut).
    pub fn stop(&self) -> Result<(), String> {
        let c = self.control.as_ref().ok_or("not a private server")?;
        run(
            "pg_ctl stop",
            command(c.root, &c.pg_ctl).arg("-D").arg(&c.data).args(["-w", "-m", "fast", "stop"]),
        )
    }

    /// Starts a private server stopped by [`PgServer::stop`] again, on its port.
    pub fn start_again(&self) -> Result<(), String> {
        let c = self.control.as_ref().ok_or("not a private server")?;
        run(
            "pg_ctl start",
            command(c.root, &c.pg_ctl)
                .arg("-D")
                .arg(&c.data)
                .arg("-l")
                .arg(&c.log)
                .args(["-w", "-t", "30", "-o", &c.options, "start"]),
        )
    }
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The test server, started on first use.
pub fn pg_server() -> &'static PgServer {
    let server = SERVER.get_or_init(|| match std::env::var("TOLLGATE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            Ok(PgServer { admin_url: url, private: false, _reaper: None, control: None })
        }
        _ => start(),
    });
    match server {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A database of its own for one test; dropped with it on a shared server.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn new() -> Self {
        use sqlx::Connection;
        static N: AtomicU64 = AtomicU64::new(0);
        let server = pg_server();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000);
        let name = format!("t_{}_{stamp}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut conn = sqlx::PgConnection::connect(&server.admin_url)
            .await
            .unwrap_or_else(|e| panic!("the test PostgreSQL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        Self { url: with_database(&server.admin_url, &name), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server = pg_server();
        if server.private {
            return;
        }
        let (admin, name) = (server.admin_url.clone(), self.name.clone());
        // A runtime of its own: this may run inside a test's runtime.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let host = base.find("://").map_or(0, |i| i + 3);
    let end = base[host..].find('/').map_or(base.len(), |i| host + i);
    format!("{}/{name}{}", &base[..end], query.map(|q| format!("?{q}")).unwrap_or_default())
}

/// The directory holding `initdb` and `pg_ctl`: Debian's newest (under
/// `debian`, `/usr/lib/postgresql`), or the first on `path`.
pub fn bin_dir(debian: &Path, path: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&path?).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program`, run as user `postgres` when this process is root (initdb
/// and postgres refuse root).
fn command(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{what}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// `text` as one word for `sh`.
fn quoted(text: &Path) -> String {
    format!("'{}'", text.display().to_string().replace('\'', r"'\''"))
}

/// A throwaway cluster: trusted local logins, nothing synced to disk.
const INITDB: [&str; 8] = ["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"];

fn start() -> Result<PgServer, String> {
    let bin = bin_dir(Path::new("/usr/lib/postgresql"), std::env::var_os("PATH")).ok_or_else(missing)?;
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("tollgate-pg-{}-{}", std::process::id(), stamp % 1_000_000_000));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let root = is_root();
    if root {
        run("chown", Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
    }
    let data = dir.join("data");
    let mut initdb = command(root, &bin.join("initdb"));
    initdb.arg("-D").arg(&data).args(INITDB);
    if let Err(e) = run("initdb", &mut initdb) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    // From here on the directory (and the server, once started) is the
    // reaper's to remove when this process ends.
    let runuser = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "trap '' INT TERM HUP; read _; {runuser}{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
        quoted(&bin.join("pg_ctl")),
        quoted(&data),
        quoted(&dir)
    );
    let reaper = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sh: {e}"))?
        .stdin
        .take();
    let log = dir.join("postgres.log");
    let mut last = String::new();
    // A free port may be taken by another binary before the server binds it.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let started = run(
            "pg_ctl start",
            command(root, &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "30", "-o", &options, "start"]),
        );
        match started {
            Ok(()) => {
                let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                let control = Control { pg_ctl: bin.join("pg_ctl"), data, log, options, root };
                return Ok(PgServer { admin_url, private: true, _reaper: reaper, control: Some(control) });
            }
            Err(e) => last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
        }
    }
    Err(format!("the test PostgreSQL did not start: {last}"))
}
