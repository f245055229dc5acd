//! The harness: start/stop/kill the real server, run CLI commands.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_spool");

/// The callback secret servers started here sign with.
#[allow(dead_code)] // not every test module checks signatures
pub const CALLBACK_SECRET: &str = "spool-it-callback-secret";

/// A running `spool server` process.
pub struct ServerProc {
    child: Option<Child>,
    pub addr: String,
    /// The HTTP API's address.
    #[allow(dead_code)] // not every test module speaks HTTP
    pub http: String,
    #[allow(dead_code)]
    pub data_dir: PathBuf,
    /// Kept open so the server's stdout never hits a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProc {
    /// The binary listener's open connections, from `/metrics`.
    #[allow(dead_code)] // not every test module counts connections
    pub fn binary_connections(&self) -> u64 {
        let metrics = spool_testkit::http::blocking::get(&self.http, "/metrics").body;
        metrics
            .as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("spool_connections{listener=\"binary\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the binary listener has no open connection, for at most
    /// `within`; whether it came to that.
    #[allow(dead_code)] // not every test module counts connections
    pub fn binary_connections_closed(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.binary_connections() == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a server on an ephemeral port over `data_dir`.
    pub fn start(data_dir: &Path) -> ServerProc {
        Self::start_with(data_dir, "127.0.0.1:0", &[])
    }

    /// Starts a server with extra flags (and `SPOOL_CALLBACK_SECRET` set to
    /// [`CALLBACK_SECRET`]),
    /// its HTTP API on an ephemeral port too.
    pub fn start_with(data_dir: &Path, listen: &str, extra: &[&str]) -> ServerProc {
        Self::start_with_env(data_dir, listen, extra, &[])
    }

    /// [`ServerProc::start_with`] with extra environment variables (say,
    /// `SPOOL_ADMIN_TOKEN`).
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> ServerProc {
        Self::spawn(data_dir, listen, extra, envs, Stdio::inherit())
    }

    /// [`ServerProc::start`] with the server's log (stderr) written to `log`.
    #[allow(dead_code)] // not every test module reads the log
    pub fn start_logging_to(data_dir: &Path, log: &Path) -> ServerProc {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(data_dir, "127.0.0.1:0", &[], &[], Stdio::from(file))
    }

    /// [`ServerProc::start_with`] with the server's log (stderr, at
    /// `info`) written to `log`.
    #[allow(dead_code)] // not every test module reads the log
    pub fn start_with_log(data_dir: &Path, extra: &[&str], log: &Path) -> ServerProc {
        let file = std::fs::File::create(log).expect("create the log file");
        let envs = [("RUST_LOG", "info")];
        Self::spawn(data_dir, "127.0.0.1:0", extra, &envs, Stdio::from(file))
    }

    /// A `name{labels} value` line of the server's `/metrics`, its value.
    #[allow(dead_code)] // not every test module reads metrics
    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let body = spool_testkit::http::blocking::get(&self.http, "/metrics").body;
        let text = body.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// A server with its open-file limit set to `soft` and `hard` before it
    /// starts, extra `flags`, and its log (stderr, at `info`) written to
    /// `log`.
    #[allow(dead_code)] // not every test module limits descriptors
    pub fn start_with_open_file_limit(
        data_dir: &Path,
        (soft, hard): (u64, u64),
        flags: &[&str],
        log: &Path,
    ) -> ServerProc {
        let file = std::fs::File::create(log).expect("create the log file");
        // The soft limit first: the hard one may be lowered below it.
        let mut sh = Command::new("/bin/sh");
        sh.args([
            "-c",
            r#"ulimit -Sn "$1" && ulimit -Hn "$2" && shift 2 && exec "$@""#,
        ])
        .args(["sh", &soft.to_string(), &hard.to_string(), BIN]);
        let envs = [("RUST_LOG", "info")];
        Self::spawn_from(sh, data_dir, "127.0.0.1:0", flags, &envs, Stdio::from(file))
    }

    fn spawn(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> ServerProc {
        Self::spawn_from(Command::new(BIN), data_dir, listen, extra, envs, stderr)
    }

    /// Starts `spool server` with `command` (the binary, or something that
    /// runs it with the arguments added here).
    fn spawn_from(
        mut command: Command,
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> ServerProc {
        let mut child = command
            .args([
                "server",
                "--listen",
                listen,
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("SPOOL_CALLBACK_SECRET", CALLBACK_SECRET)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start spool server");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let addr = announced(&mut reader, "spool listening on ", "first");
        let http = announced(&mut reader, "spool http listening on ", "second");
        ServerProc {
            child: Some(child),
            addr,
            http,
            data_dir: data_dir.to_owned(),
            _stdout: reader,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` (`-STOP`, `-CONT`, …) to the running process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        assert!(pid != 0, "kill {signal}: not running");
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs a CLI command against this server.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        cli(&self.addr, args, stdin)
    }
}

/// The address in the server's next line of output, `<prefix><address>`;
/// `which` line it is names it if the line is something else.
fn announced(reader: &mut impl BufRead, prefix: &str, which: &str) -> String {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read the {which} line from the server: {e}"));
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected {which} line from server: {line:?}"))
        .to_owned()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server over a fresh directory on ephemeral ports, with extra `flags`
/// and environment variables `envs`.
#[allow(dead_code)] // not every test module configures its server
pub fn start_configured(flags: &[&str], envs: &[(&str, &str)]) -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start_with_env(dir.path(), "127.0.0.1:0", flags, envs);
    (dir, server)
}

/// A temporary directory holding the file `name` with `contents`, and the
/// file's path.
#[allow(dead_code)] // not every test module writes files
pub fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, contents).unwrap();
    (dir, file)
}

/// The words of a command line (none of them holding a space), as
/// [`cli`] takes them: `words("topic create jobs --partitions 4")`.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A server over a fresh directory, once each of the CLI commands `setup`
/// (command lines as [`words`] takes them, no input) has succeeded.
#[allow(dead_code)] // not every test module sets up this way
pub fn start_after(setup: &[&str]) -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    for line in setup {
        ok(&server.cli(&words(line), b""));
    }
    (dir, server)
}

/// Runs `spool ARGS --addr ADDR` with `stdin`, returning its output.
pub fn cli(addr: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--addr", addr])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spool");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait spool");
    let _ = writer.join();
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a CLI command succeeded, showing its output if not.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The N from the `acknowledged: N` line.
pub fn acknowledged(out: &Output) -> usize {
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("acknowledged: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no acknowledged line in {:?} / {:?}",
                text(&out.stdout),
                text(&out.stderr)
            )
        })
}

/// Lines of a consumer's output.
pub fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// Runs `spool server` on `data_dir` with `extra` flags, expecting it to
/// refuse to start; returns its stderr. A server that starts after all is
/// killed after 20 s and the test fails.
#[allow(dead_code)] // not every test module needs it
pub fn start_refused(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--http-listen", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spool server");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait spool server").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the server started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait spool server");
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A small tmpfs mounted by a test (a disk that fills up for real),
/// unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `24m`) at `path`, or
    /// says why it cannot (not root, no `mount`): the caller skips, saying so.
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("no mount command ({e})"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a small tmpfs here ({})",
                text(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fills the file system to its last byte with the file `name`.
    pub fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.path.join(name)).expect("ballast");
        let chunk = vec![7u8; 64 * 1024];
        let mut size = chunk.len();
        // Large writes until one fails, then smaller ones: every byte.
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) | Err(_) => size /= 2,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
