//! The real `xsrouter` binary as a child process (`xsrouter -w DIR` or `xsrouter demo`): started
//! with a given environment on an ephemeral port (read from its "xsrouter listening" log line),
//! signalled, and killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_xsrouter");

/// A router process; killed on drop if a test ends while it still runs.
pub struct RouterProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RouterProcess {
    /// Starts `xsrouter -w dir` with only the given variables (plus the listening basics) and
    /// waits for its "xsrouter listening" line.
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(BIN);
        command.arg("-w").arg(dir).stdout(Stdio::null());
        Self::launch(command, env)
    }

    /// Starts `xsrouter demo` in `repo` (stdout goes to the log too) and waits for its
    /// "xsrouter listening" line.
    pub fn demo(repo: &Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(BIN);
        command.arg("demo").current_dir(repo).stdout(Stdio::piped());
        Self::launch(command, env)
    }

    fn launch(mut command: Command, env: &[(&str, String)]) -> Self {
        let mut child = command
            .env_clear()
            .env("PORT", "0")
            .env("XS_BIND_ADDRESS", "127.0.0.1")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xsrouter");
        let stderr = child.stderr.take().expect("stderr pipe");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = {
            let log = log.clone();
            let lines_tx = lines_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log lock").push(line.clone());
                    let _ = lines_tx.send(line);
                }
            })
        };
        if let Some(stdout) = child.stdout.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log lock").push(line.clone());
                    let _ = lines_tx.send(line);
                }
            });
        } else {
            drop(lines_tx);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) if line.contains("xsrouter listening") => {
                    break listening_address(&line);
                }
                Ok(_) => {}
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "no \"xsrouter listening\" line ({err}); log:\n{}",
                        log.lock().expect("log lock").join("\n")
                    );
                }
            }
        };
        Self {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "xsrouter still running after {limit:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The whole log, once the process has exited (waits for the reader to see EOF).
    pub fn finished_log(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        self.log_text()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits until a log (or stdout) line contains `text`, at most `limit`; panics with the log.
    pub async fn wait_for_line(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l.contains(text))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {text:?} within {limit:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `address` field of a tracing line, human-readable (`address=...`) or JSON (`"address":"..."`).
pub fn address_field(line: &str) -> Option<&str> {
    let rest = line
        .split_once("address=")
        .or_else(|| line.split_once("\"address\":\""))?
        .1;
    Some(
        rest.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .find(|s| !s.is_empty())
            .unwrap_or_default(),
    )
}

fn listening_address(line: &str) -> SocketAddr {
    let value = address_field(line).unwrap_or_else(|| panic!("no address in {line:?}"));
    value
        .parse()
        .unwrap_or_else(|err| panic!("bad address {value:?} in {line:?}: {err}"))
}
