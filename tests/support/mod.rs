//! Test support: real servers on loopback (the router in-process, upstreams), temporary working
//! directories, and raw HTTP/1.1 for requests a well-behaved client would never send.
#![allow(dead_code)]

pub mod browser;
pub mod destination_service;
pub mod mtls;
pub mod pki;
pub mod process;
pub mod redis;
pub mod token_service;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use xsrouter::config::{Environment, LoadError, Runtime};
use xsrouter::pipeline::AppState;
use xsrouter::server;

/// A temporary approuter working directory.
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    pub fn new(xs_app: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("xs-app.json"), xs_app.to_string())
            .expect("write xs-app.json");
        Self { dir }
    }

    /// A working directory whose xs-app.json is the given text, verbatim.
    pub fn with_text(xs_app: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("xs-app.json"), xs_app).expect("write xs-app.json");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the working directory, creating parent directories.
    pub fn file(&self, relative: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, content).expect("write file");
        path
    }
}

/// A running router.
pub struct Router {
    pub addr: SocketAddr,
    watcher: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<server::Stopped>>>,
}

/// Anything that serves the router's routes: the in-process [`Router`] or the binary.
pub trait RouterUrl {
    /// `http://<router address><path>`.
    fn url(&self, path: &str) -> String;
}

impl RouterUrl for Router {
    fn url(&self, path: &str) -> String {
        Router::url(self, path)
    }
}

impl RouterUrl for process::RouterProcess {
    fn url(&self, path: &str) -> String {
        process::RouterProcess::url(self, path)
    }
}

impl Router {
    /// Starts the router on `workdir` with exactly the given environment, on an ephemeral port.
    pub async fn start(workdir: &Path, env: &[(&str, String)]) -> Self {
        Self::try_start(workdir, env)
            .await
            .unwrap_or_else(|err| panic!("router did not start: {err}"))
    }

    pub async fn try_start(workdir: &Path, env: &[(&str, String)]) -> Result<Self, LoadError> {
        xsrouter::install_crypto_provider();
        let runtime = load_runtime(workdir, env)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let addr = listener.local_addr().expect("router addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::build(runtime).await.expect("router state");
        let watcher = state.spawn_credential_watcher();
        let task = tokio::spawn(server::serve(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Ok(Self {
            addr,
            watcher,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> server::Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        task.await.expect("server task").expect("server result")
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Loads the configuration of `workdir` with exactly the given environment.
pub fn load_runtime(workdir: &Path, env: &[(&str, String)]) -> Result<Runtime, LoadError> {
    Runtime::load(
        workdir,
        Environment::from_pairs(env.iter().map(|(k, v)| (*k, v.clone()))),
    )
}

/// A client that sends what it is told: no redirects followed, no proxy.
pub fn client() -> reqwest::Client {
    xsrouter::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// The `destinations` value for the given (name, url) pairs.
pub fn destinations(list: &[(&str, String)]) -> String {
    serde_json::Value::Array(
        list.iter()
            .map(|(name, url)| serde_json::json!({ "name": name, "url": url }))
            .collect(),
    )
    .to_string()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `request` verbatim (it should ask for `Connection: close`) and reads the whole answer.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .expect("read response");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    RawResponse {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

/// `GET path` over a raw connection.
pub async fn raw_get(addr: SocketAddr, path: &str) -> RawResponse {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: router.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}
