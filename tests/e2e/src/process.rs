//! Process control: one `wrangler dev` running the Worker in workerd, started, crashed,
//! restarted and stopped by the tests.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestResult;

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The relay's Worker and the encoder Worker it binds, as `wrangler dev` runs them.
const RELAY_CONFIGS: &[&str] = &["wrangler.toml", "encoder/wrangler.toml"];

/// One `wrangler dev` running the Worker, killed (with workerd) on drop.
pub struct Relay {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where its output goes.
    pub log_path: PathBuf,
    port: u16,
    /// Where `wrangler dev` serves the Worker's inspector (the DevTools protocol).
    pub inspector_port: u16,
    command: Vec<String>,
    root: PathBuf,
    child: Child,
    _scratch: TempDir,
}

impl Relay {
    /// Starts `wrangler dev` from the repository root with these `[vars]` and secrets, and waits
    /// until it serves. `name` names its log file under `target/e2e/`.
    pub fn start(
        root: &Path,
        name: &str,
        vars: &[(String, String)],
        secrets: &[(String, String)],
    ) -> TestResult<Self> {
        Self::start_configs(root, name, RELAY_CONFIGS, vars, secrets)
    }

    /// Like [`Relay::start`], for the Workers of other `configs` (the first is served) that
    /// answer `/healthz`.
    pub fn start_configs(
        root: &Path,
        name: &str,
        configs: &[&str],
        vars: &[(String, String)],
        secrets: &[(String, String)],
    ) -> TestResult<Self> {
        let scratch = TempDir(
            std::env::temp_dir().join(format!("orpheus-e2e-{}-{name}", std::process::id())),
        );
        std::fs::create_dir_all(&scratch.0).map_err(|e| e.to_string())?;
        let env_file = scratch.0.join("secrets.env");
        let lines: String = secrets.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, lines).map_err(|e| e.to_string())?;
        let log_dir = Self::log_dir(root);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let log_path = log_dir.join(format!("{name}.log"));
        File::create(&log_path).map_err(|e| e.to_string())?;

        // A port picked free may be taken by another process before wrangler binds it, and
        // wrangler then exits at once: start again on fresh ports rather than fail the test.
        let mut exits = Vec::new();
        for _ in 0..3 {
            let (port, inspector_port) = (free_port(), free_port());
            let mut command: Vec<String> = vec!["dev".to_owned()];
            for config in configs {
                command.extend(["-c".to_owned(), (*config).to_owned()]);
            }
            command.extend(
                [
                    "--local",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--inspector-port",
                    &inspector_port.to_string(),
                    "--persist-to",
                    &scratch.0.join("state").to_string_lossy(),
                    "--env-file",
                    &env_file.to_string_lossy(),
                ]
                .map(str::to_owned),
            );
            for (key, value) in vars {
                command.extend(["--var".to_owned(), format!("{key}:{value}")]);
            }
            let mut child = Self::spawn(root, &command, &log_path)?;
            let deadline = Instant::now() + Duration::from_secs(180);
            let exited = loop {
                if healthy(port) {
                    break None;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "wrangler dev did not become ready in 180 s; see {}:\n{}",
                        log_path.display(),
                        log_tail(&log_path)
                    ));
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            match exited {
                None => {
                    return Ok(Self {
                        url: format!("http://127.0.0.1:{port}"),
                        log_path,
                        port,
                        inspector_port,
                        command,
                        root: root.to_owned(),
                        child,
                        _scratch: scratch,
                    })
                }
                Some(status) => exits.push(status.to_string()),
            }
        }
        Err(format!(
            "wrangler dev exited before it served, three times ({}); see {}:\n{}",
            exits.join(", "),
            log_path.display(),
            log_tail(&log_path)
        ))
    }

    /// Runs wrangler in its own process group, appending to its log.
    fn spawn(root: &Path, command: &[String], log_path: &Path) -> TestResult<Child> {
        let log = File::options()
            .append(true)
            .open(log_path)
            .map_err(|e| e.to_string())?;
        let mut wrangler = Command::new("wrangler");
        wrangler
            .current_dir(root)
            .args(command)
            .env("CI", "true")
            .env("ORPHEUS_WASM_OPT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut wrangler, 0);
        wrangler.spawn().map_err(|e| {
            format!(
                "cannot start wrangler ({e}); run the suite with scripts/test, which installs it"
            )
        })
    }

    /// Kills wrangler and workerd at once (SIGKILL: no clean shutdown, as in a crash) and starts
    /// them again on the same port with the same stored state; returns once it serves again.
    /// Everything in memory is lost: sockets, Durable Objects, upstream requests.
    pub async fn crash_and_restart(&mut self) -> TestResult<Duration> {
        let started = Instant::now();
        self.kill_group("-KILL");
        let _ = self.child.wait();
        self.child = Self::spawn(&self.root, &self.command, &self.log_path)?;
        while started.elapsed() < Duration::from_secs(180) {
            if healthy(self.port) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "wrangler dev did not come back; see {}",
            self.log_path.display()
        ))
    }

    /// The resident memory of this relay's workerd process, in bytes.
    pub fn workerd_rss(&self) -> Option<u64> {
        self.workerd_pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .max()
    }

    /// The URL of the workerd that runs the Worker itself, without wrangler's local proxy in
    /// front (a development-only hop that relays every frame, which a deployed Worker does
    /// not have): a port on which a workerd of this relay other than the proxy (the one on
    /// wrangler's port) answers `/healthz`.
    pub fn worker_url(&self) -> TestResult<String> {
        let ports: Vec<Vec<u16>> = self
            .workerd_pids()
            .iter()
            .map(|pid| listening_ports(pid))
            .collect();
        ports
            .iter()
            .filter(|ports| !ports.contains(&self.port))
            .flatten()
            .copied()
            .find(|&port| healthy(port))
            .map(|port| format!("http://127.0.0.1:{port}"))
            .ok_or_else(|| format!("no workerd serves the Worker directly (ports {ports:?})"))
    }

    /// The CPU time (user and system) this relay's workerd processes have used so far.
    pub fn workerd_cpu(&self) -> TestResult<Duration> {
        // Linux reports it in clock ticks of 1/100 s (USER_HZ).
        const TICK: Duration = Duration::from_millis(10);
        let mut ticks = 0;
        for pid in self.workerd_pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_err(|e| format!("workerd {pid}: {e}"))?;
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok());
            ticks += field(11)
                .zip(field(12))
                .map(|(user, system)| user + system)
                .ok_or_else(|| format!("workerd {pid}: unreadable stat"))?;
        }
        Ok(TICK * ticks)
    }

    fn workerd_pids(&self) -> Vec<String> {
        let group = self.child.id().to_string();
        Command::new("pgrep")
            .args(["-g", &group, "workerd"])
            .output()
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(|pid| pid.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn kill_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).status();
    }

    /// Where relays write their logs.
    pub fn log_dir(root: &Path) -> PathBuf {
        root.join("target/e2e")
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The WebSocket URL of a session.
    pub fn session_url(&self, sid: &str) -> String {
        format!(
            "{}/v1/sessions/{sid}/ws",
            self.url.replacen("http", "ws", 1)
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // wrangler runs workerd as a child: end the whole process group.
        self.kill_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_group("-KILL");
        let _ = self.child.wait();
    }
}

/// The IPv4 TCP ports process `pid` listens on (wrangler binds 127.0.0.1), read from `/proc`:
/// its socket inodes against the kernel's table of listening sockets.
fn listening_ports(pid: &str) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl, local address (hex ip:port), remote address, state (0A: listening), ...,
            // inode tenth.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let port = u16::from_str_radix(local.split_once(':')?.1, 16).ok()?;
            (*state == "0A" && inodes.iter().any(|i| i == inode)).then_some(port)
        })
        .collect()
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}
