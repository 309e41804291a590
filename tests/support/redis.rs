//! A real `redis-server` for tests: started on a free loopback port in a temporary directory
//! (`--save ""`, with an fsync-always append-only file so that a restart keeps what Redis
//! acknowledged), stoppable and restartable on the same port. `.ci/run` installs redis-server.
//! A TLS server listens on 127.0.0.1 and 127.0.0.2 (and ::1 where there is one) with a
//! certificate for `localhost` and `127.0.0.1` from a test PKI. [`RedisServer::cluster`] joins
//! several servers into a Redis cluster with `redis-cli` (shipped with redis-server).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) redis-server owned by the test.
pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    password: Option<String>,
    /// TLS only: (certificate chain file, key file, CA file).
    tls: Option<(String, String, String)>,
    /// More command-line options (cluster mode).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server that requires `password`.
    pub async fn with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned())).await
    }

    /// Starts a server that only speaks TLS, with a server certificate from `pki`.
    pub async fn with_tls(pki: &super::pki::Pki) -> Self {
        Self::start_as(None, Some(pki), Vec::new()).await
    }

    async fn start_with(password: Option<String>) -> Self {
        Self::start_as(password, None, Vec::new()).await
    }

    /// Starts `n` servers in cluster mode and joins them into one cluster (no replicas), with
    /// the hash slots spread over all of them.
    pub async fn cluster(n: usize) -> Vec<Self> {
        let mut nodes = Vec::new();
        for _ in 0..n {
            let options = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                &free_port().to_string(),
            ];
            let extra = options.iter().map(|o| o.to_string()).collect();
            nodes.push(Self::start_as(None, None, extra).await);
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = create
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node.connection().await)
                    .await
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster did not form: {info}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        nodes
    }

    async fn start_as(
        password: Option<String>,
        pki: Option<&super::pki::Pki>,
        extra: Vec<String>,
    ) -> Self {
        // Another process may take the port between probing and binding: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let tls = pki.map(|pki| {
                let (chain, key) = pki.server();
                let file = |name: &str, content: &str| {
                    let path = dir.path().join(name);
                    std::fs::write(&path, content).expect("write TLS file");
                    path.display().to_string()
                };
                (
                    file("server.pem", &chain),
                    file("server.key", &key),
                    file("ca.pem", &pki.root_pem()),
                )
            });
            let mut server = Self {
                dir,
                port: free_port(),
                password: password.clone(),
                tls,
                extra: extra.clone(),
                child: None,
            };
            if server.launch().await {
                return server;
            }
        }
        panic!("redis-server did not start (is it installed? .ci/run installs it)");
    }

    /// Runs redis-server on `self.port`; true once it answers PING.
    async fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"]),
            Some((cert, key, ca)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "127.0.0.2", "-::1"])
                .args(["--tls-cert-file", cert, "--tls-key-file", key])
                .args(["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]),
        };
        command
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        command.args(&self.extra);
        let child = command
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false; // exited: the port was taken, most likely
            }
            if self.answers().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// Whether the server answers PING now.
    async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let attempt = async {
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(_))
        )
    }

    /// `redis://[:password@]127.0.0.1:port` (TLS: `rediss://...` without certificate checks,
    /// for the test's own look at the data).
    pub fn url(&self) -> String {
        let auth = match &self.password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        match &self.tls {
            Some(_) => format!("rediss://{auth}127.0.0.1:{}/#insecure", self.port),
            None => format!("redis://{auth}127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server at once (as a crash would); what it acknowledged is on disk.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as in a
    /// network stall. [`RedisServer::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} redis-server");
        }
    }

    /// Starts it again on the same port, with the same data directory.
    pub async fn restart(&mut self) {
        self.kill();
        // The port was just freed; allow a moment if it is still held.
        for _ in 0..50 {
            if self.launch().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// A fresh connection for reading raw keys.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server must be thawed to die.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
