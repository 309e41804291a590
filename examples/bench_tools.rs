//! Helpers for `bench/run.sh` (not part of xsrouter):
//!
//! - `token-service --port P --key rsa-pkcs8.pem`: a minimal XSUAA-compatible token service on
//!   127.0.0.1 — `POST /oauth/token` (client_credentials, jwt-bearer) answers an RS256 JWT with
//!   `exp` and `expires_in`, `GET /token_keys` the JWKS. Every token request is counted on stderr.
//! - `user-token --key rsa-pkcs8.pem --issuer URL --client-id ID`: prints a user JWT signed with
//!   the same key (for `x-approuter-authorization`).
//! - `load --url URL -c N -d SECS [--cert C --key K] [--ca CA] [--new-conn]`: an HTTP/1.1 load
//!   generator over plain TCP or TLS with a client certificate (wrk cannot present one). Prints
//!   one JSON line: requests, rps, p50/p99/p99.9 latency in ms, errors. `--new-conn` opens a new
//!   connection (full TLS handshake, no resumption) for every request.
//! - `report --results R.tsv --idle I.tsv --machine M.md --notes N.txt [--note TEXT] --out F.md`:
//!   writes the Markdown report of `bench/run.sh` (tables, ratios, targets).
//!
//! Run with `cargo run --release --example bench_tools -- <command> ...`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    let flags = Flags::parse(rest)?;
    match command.as_str() {
        "token-service" => runtime()?.block_on(token_service(flags)),
        "user-token" => {
            let signer = Signer::load(flags.req("key")?)?;
            let now = unix_now();
            let claims = json!({
                "iss": format!("{}/oauth/token", flags.req("issuer")?),
                "sub": "bench-user", "user_name": "bench-user", "email": "bench@example.com",
                "zid": "bench", "client_id": flags.req("client-id")?, "cid": flags.req("client-id")?,
                "aud": [flags.req("client-id")?], "grant_type": "authorization_code",
                "scope": ["openid"], "iat": now, "exp": now + 86_400,
            });
            println!("{}", signer.jwt(&claims)?);
            Ok(())
        }
        "load" => runtime()?.block_on(load(flags)),
        "report" => report(&flags),
        _ => Err(USAGE.into()),
    }
}

const USAGE: &str = "usage: bench_tools token-service|user-token|load|report [--flag value ...]";

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `--name value` pairs and bare `--switch`es.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let name = args[i]
                .strip_prefix("--")
                .or_else(|| args[i].strip_prefix('-'))
                .ok_or_else(|| format!("unexpected argument `{}`", args[i]))?;
            match args.get(i + 1).filter(|v| !v.starts_with('-')) {
                Some(value) => {
                    map.insert(name.to_owned(), value.clone());
                    i += 2;
                }
                None => {
                    map.insert(name.to_owned(), String::new());
                    i += 1;
                }
            }
        }
        Ok(Self(map))
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    fn req(&self, name: &str) -> Result<&str, BoxError> {
        self.get(name)
            .ok_or_else(|| format!("missing --{name}").into())
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, BoxError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad --{name} `{v}`").into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Token service

struct Signer {
    key: RsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    fn load(path: &str) -> Result<Self, BoxError> {
        let der = PrivateKeyDer::from_pem_file(path)?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err("the token service key must be PKCS#8 (BEGIN PRIVATE KEY)".into());
        };
        let key = RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|e| format!("RSA key: {e}"))?;
        Ok(Self {
            key,
            rng: ring::rand::SystemRandom::new(),
        })
    }

    fn jwt(&self, claims: &Value) -> Result<String, BoxError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|e| format!("sign: {e}"))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    fn jwks(&self) -> Value {
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = self.key.public().into();
        let (n, e) = (public.n, public.e);
        json!({"keys": [{
            "kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        }]})
    }
}

struct TokenState {
    signer: Signer,
    issuer: String,
    issued: AtomicU64,
}

async fn token_service(flags: Flags) -> Result<(), BoxError> {
    let port: u16 = flags.num("port", 0)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(TokenState {
        signer: Signer::load(flags.req("key")?)?,
        issuer: format!("http://{addr}"),
        issued: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/oauth/token", post(issue))
        .route("/token_keys", get(keys))
        .with_state(state);
    eprintln!("token service on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn keys(State(state): State<Arc<TokenState>>) -> Response {
    json_response(StatusCode::OK, &state.signer.jwks())
}

async fn issue(State(state): State<Arc<TokenState>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let client_id = form
        .get("client_id")
        .cloned()
        .unwrap_or_else(|| "bench-client".into());
    let now = unix_now();
    let mut claims = json!({
        "iss": format!("{}/oauth/token", state.issuer), "zid": "bench",
        "client_id": client_id, "cid": client_id, "azp": client_id, "aud": [client_id],
        "grant_type": grant, "scope": ["uaa.resource"], "iat": now, "exp": now + 43_200,
    });
    match grant {
        "client_credentials" => claims["sub"] = json!(client_id),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" if form.contains_key("assertion") => {
            claims["sub"] = json!("bench-user");
            claims["user_name"] = json!("bench-user");
        }
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "unsupported_grant_type"}),
            );
        }
    }
    let count = state.issued.fetch_add(1, Ordering::Relaxed) + 1;
    eprintln!("token service: issued token {count} ({grant})");
    match state.signer.jwt(&claims) {
        Ok(token) => json_response(
            StatusCode::OK,
            &json!({"access_token": token, "token_type": "bearer", "expires_in": 43_199,
                    "scope": "uaa.resource", "jti": format!("bench-{count}")}),
        ),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Load generator

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Target {
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    request: Vec<u8>,
    new_conn: bool,
}

impl Target {
    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
        })
    }
}

async fn load(flags: Flags) -> Result<(), BoxError> {
    let url = url::Url::parse(flags.req("url")?)?;
    let host = url.host_str().ok_or("URL without host")?.to_owned();
    let port = url.port_or_known_default().ok_or("URL without port")?;
    let connections: usize = flags.num("c", 1)?;
    let duration = Duration::from_secs_f64(flags.num("d", 5.0)?);
    let new_conn = flags.get("new-conn").is_some();
    let tls = match url.scheme() {
        "http" => None,
        "https" => Some(tls_connector(&flags, &host)?),
        other => return Err(format!("unsupported scheme {other}").into()),
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let connection = if new_conn { "close" } else { "keep-alive" };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: xsrouter-bench\r\nConnection: {connection}\r\n"
    );
    if let Some(h) = flags.get("header") {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let target = Arc::new(Target {
        addr: format!("{host}:{port}"),
        tls,
        request: request.into_bytes(),
        new_conn,
    });

    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(target.clone(), deadline)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut unfinished = 0u64;
    let mut bytes = 0u64;
    let mut first_error = None;
    for w in workers {
        let r = w.await?;
        latencies.extend(r.latencies_us);
        errors += r.errors;
        unfinished += r.unfinished;
        bytes += r.bytes;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[i.clamp(1, latencies.len()) - 1] as f64 / 1000.0
    };
    let out = json!({
        "requests": latencies.len(), "seconds": elapsed,
        "rps": latencies.len() as f64 / elapsed,
        "p50_ms": pct(50.0), "p99_ms": pct(99.0), "p999_ms": pct(99.9),
        "errors": errors, "unfinished": unfinished, "bytes": bytes, "first_error": first_error,
    });
    println!("{out}");
    Ok(())
}

fn tls_connector(
    flags: &Flags,
    host: &str,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = flags.get("ca") {
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (flags.get("cert"), flags.get("key")) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new connection is a full handshake: the worst case a proxy has to pay.
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(host.to_owned())?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u32>,
    errors: u64,
    unfinished: u64,
    bytes: u64,
    first_error: Option<String>,
}

async fn worker(target: Arc<Target>, deadline: Instant) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut conn: Option<Box<dyn Io>> = None;
    let mut buf = Vec::with_capacity(64 * 1024);
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = async {
            let io = match conn.as_mut() {
                Some(io) => io,
                None => conn.insert(target.connect().await?),
            };
            io.write_all(&target.request).await?;
            read_response(io, &mut buf).await
        };
        match tokio::time::timeout_at(deadline.into(), outcome).await {
            Err(_) => {
                // Cut off by the end of the run: not a latency sample, but reported.
                result.unfinished += 1;
                break;
            }
            Ok(Ok((200, body, keep_alive))) => {
                result
                    .latencies_us
                    .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                result.bytes += body as u64;
                if target.new_conn || !keep_alive {
                    conn = None;
                }
            }
            Ok(Ok((status, _, _))) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("status {status}"));
                conn = None;
            }
            Ok(Err(e)) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| e.to_string());
                conn = None;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    result
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads one response; returns status, body length and whether the connection stays open.
async fn read_response(
    io: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, usize, bool)> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(io, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = true;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut pos = head_end;
    if chunked {
        let mut body = 0;
        loop {
            let line_end = loop {
                if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + i;
                }
                fill(io, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| bad("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            pos = line_end + 2;
            while buf.len() < pos + size + 2 {
                fill(io, buf).await?;
            }
            pos += size + 2;
            body += size;
            // Keep the buffer small for large chunked bodies.
            buf.drain(..pos);
            pos = 0;
            if size == 0 {
                return Ok((status, body, keep_alive));
            }
        }
    }
    let length = length.unwrap_or(0);
    let mut have = buf.len() - pos;
    let mut scratch = [0u8; 64 * 1024];
    while have < length {
        let n = io.read(&mut scratch).await?;
        if n == 0 {
            return Err(bad("connection closed in the body"));
        }
        have += n;
    }
    Ok((status, length, keep_alive))
}

async fn fill(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = io.read(&mut chunk).await?;
    if n == 0 {
        return Err(bad("connection closed"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

struct Row {
    scenario: String,
    proxy: String,
    connections: u32,
    rps: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    errors: Option<f64>,
    cpu: Option<f64>,
    peak_kib: Option<f64>,
}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "plain",
        "plain HTTP upstream, small body (`/plain/small.json`)",
    ),
    (
        "mtls",
        "mTLS upstream: xsrouter `forwardAuthCertificates` with an x509 XSUAA binding, nginx `proxy_ssl_certificate`",
    ),
    (
        "token",
        "cached minted token: `OAuth2ClientCredentials` destination, token from the bench token service",
    ),
    (
        "exchange",
        "cached exchanged token: user JWT in `x-approuter-authorization` (validated per request), `OAuth2JWTBearer` destination",
    ),
    ("big", "1 MiB response over the plain HTTP upstream"),
    (
        "tls-keepalive",
        "inbound HTTPS with a required, verified client certificate; keep-alive connections",
    ),
    (
        "tls-newconn",
        "inbound HTTPS with a required, verified client certificate; a new connection (full handshake) per request",
    ),
];
const PROXIES: &[&str] = &["xsrouter", "nginx", "approuter"];

fn report(flags: &Flags) -> Result<(), BoxError> {
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let results = std::fs::read_to_string(flags.req("results")?)?;
    let rows: Vec<Row> = results
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f.len() >= 11).then(|| Row {
                scenario: f[0].to_owned(),
                proxy: f[1].to_owned(),
                connections: f[2].parse().unwrap_or(0),
                rps: num(f[3]),
                p50: num(f[4]),
                p99: num(f[5]),
                p999: num(f[6]),
                errors: num(f[7]),
                cpu: num(f[9]),
                peak_kib: num(f[10]),
            })
        })
        .collect();
    let idle: Vec<(String, f64)> = std::fs::read_to_string(flags.req("idle")?)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (p, v) = l.split_once('\t')?;
            Some((p.to_owned(), num(v)?))
        })
        .collect();
    let machine = std::fs::read_to_string(flags.req("machine")?)?;
    let notes = std::fs::read_to_string(flags.req("notes")?).unwrap_or_default();
    let find = |scenario: &str, proxy: &str, c: u32| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.proxy == proxy && r.connections == c)
    };
    let mut conns: Vec<u32> = rows.iter().map(|r| r.connections).collect();
    conns.sort_unstable();
    conns.dedup();
    let f = |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".to_owned(),
    };
    let mib = |kib: Option<f64>| kib.map(|k| k / 1024.0);

    let mut md = String::new();
    let mut line = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    line("# Benchmarks");
    line("");
    if let Some(note) = flags.get("note").filter(|n| !n.is_empty()) {
        line(&format!("> **{note}**"));
        line("");
    }
    line(
        "Generated by `bench/run.sh` (see README, \"Benchmarks\"): xsrouter (release build), nginx as a",
    );
    line(
        "reverse proxy and @sap/approuter, each in turn on the same routes in front of the same static",
    );
    line(
        "nginx backend. Latencies in milliseconds; CPU is user+system time of the proxy's processes per",
    );
    line(
        "10,000 requests; peak RSS is VmHWM of the proxy's processes during the point (reset before it).",
    );
    line("");
    line("## Machine");
    line("");
    md.push_str(&machine);
    let mut line = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    line("");
    line("## xsrouter against nginx and approuter");
    line("");
    line(
        "Ratios are xsrouter ÷ other: above 1 is better for req/s, below 1 is better for p99 and CPU.",
    );
    line("");
    line(
        "| scenario | conns | xsrouter req/s | nginx req/s | approuter req/s | ÷nginx req/s | ÷nginx p99 | ÷nginx CPU | ÷approuter req/s | ÷approuter p99 |",
    );
    line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, _) in SCENARIOS {
        for &c in &conns {
            let Some(x) = find(scenario, "xsrouter", c) else {
                continue;
            };
            let n = find(scenario, "nginx", c);
            let a = find(scenario, "approuter", c);
            line(&format!(
                "| {scenario} | {c} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f(x.rps, 0),
                f(n.and_then(|r| r.rps), 0),
                f(a.and_then(|r| r.rps), 0),
                ratio(x.rps, n.and_then(|r| r.rps)),
                ratio(x.p99, n.and_then(|r| r.p99)),
                ratio(x.cpu, n.and_then(|r| r.cpu)),
                ratio(x.rps, a.and_then(|r| r.rps)),
                ratio(x.p99, a.and_then(|r| r.p99)),
            ));
        }
    }
    line("");
    line("## Targets (issue #9)");
    line("");
    let mut checks: Vec<String> = Vec::new();
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    for scenario in ["plain", "mtls"] {
        let mut pairs = Vec::new();
        for &c in &conns {
            if let (Some(x), Some(n)) = (find(scenario, "xsrouter", c), find(scenario, "nginx", c))
            {
                pairs.push((
                    c,
                    x.rps.unwrap_or(0.0) / n.rps.unwrap_or(f64::MAX).max(1e-9),
                    x.p99.unwrap_or(f64::MAX) / n.p99.unwrap_or(0.0).max(1e-9),
                ));
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let rps_ok = pairs.iter().all(|p| p.1 >= 1.0);
        let p99_ok = pairs.iter().all(|p| p.2 <= 1.0);
        let detail = pairs
            .iter()
            .map(|(c, r, l)| format!("{c}: {r:.2}× req/s, {l:.2}× p99"))
            .collect::<Vec<_>>()
            .join("; ");
        checks.push(format!(
            "{scenario}: throughput ≥ nginx at every concurrency — {}; p99 ≤ nginx — {} ({detail})",
            verdict(rps_ok),
            verdict(p99_ok)
        ));
    }
    let mut ar = Vec::new();
    for (scenario, _) in SCENARIOS {
        for &c in &conns {
            if let (Some(x), Some(a)) = (
                find(scenario, "xsrouter", c),
                find(scenario, "approuter", c),
            ) {
                ar.push((
                    scenario,
                    c,
                    x.rps.unwrap_or(0.0) / a.rps.unwrap_or(f64::MAX).max(1e-9),
                    x.p99.unwrap_or(f64::MAX) / a.p99.unwrap_or(0.0).max(1e-9),
                ));
            }
        }
    }
    if !ar.is_empty() {
        let ok = ar.iter().all(|p| p.2 >= 10.0 && p.3 <= 0.1);
        let detail = ar
            .iter()
            .map(|(s, c, r, l)| format!("{s}/{c}: {r:.1}×, p99 {l:.2}×"))
            .collect::<Vec<_>>()
            .join("; ");
        checks.push(format!(
            "≥10× approuter's throughput with p99 ≤ a tenth — {} ({detail})",
            verdict(ok)
        ));
    }
    for scenario in ["token", "exchange"] {
        let mut pairs = Vec::new();
        for &c in &conns {
            if let (Some(t), Some(p)) =
                (find(scenario, "xsrouter", c), find("plain", "xsrouter", c))
            {
                pairs.push((
                    c,
                    t.rps.unwrap_or(0.0) / p.rps.unwrap_or(f64::MAX).max(1e-9),
                ));
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let ok = pairs.iter().all(|p| p.1 >= 0.95);
        let detail = pairs
            .iter()
            .map(|(c, r)| format!("{c}: {r:.2}×"))
            .collect::<Vec<_>>()
            .join("; ");
        checks.push(format!(
            "{scenario} route within 5% of plain (xsrouter req/s, {scenario} ÷ plain) — {} ({detail})",
            verdict(ok)
        ));
    }
    if let Some((_, kib)) = idle.iter().find(|(p, _)| p == "xsrouter") {
        checks.push(format!(
            "idle RSS under 20 MiB — {} ({:.1} MiB)",
            verdict(*kib < 20.0 * 1024.0),
            kib / 1024.0
        ));
    }
    let at256: Vec<&Row> = rows
        .iter()
        .filter(|r| r.proxy == "xsrouter" && r.connections == 256)
        .collect();
    if !at256.is_empty() {
        let max = at256.iter().filter_map(|r| r.peak_kib).fold(0.0, f64::max);
        checks.push(format!(
            "RSS under 256 connections under 64 MiB — {} (highest peak {:.1} MiB)",
            verdict(max < 64.0 * 1024.0),
            max / 1024.0
        ));
    }
    for check in &checks {
        line(&format!("- {check}"));
    }
    line("");
    line("## Results per scenario");
    for (scenario, description) in SCENARIOS {
        if !rows.iter().any(|r| r.scenario == *scenario) {
            continue;
        }
        line("");
        line(&format!("### {scenario}"));
        line("");
        line(&format!("{description}."));
        line("");
        line(
            "| proxy | conns | req/s | p50 | p99 | p99.9 | CPU s / 10k req | peak RSS MiB | errors |",
        );
        line("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for proxy in PROXIES {
            for &c in &conns {
                let Some(r) = find(scenario, proxy, c) else {
                    continue;
                };
                line(&format!(
                    "| {proxy} | {c} | {} | {} | {} | {} | {} | {} | {} |",
                    f(r.rps, 0),
                    f(r.p50, 2),
                    f(r.p99, 2),
                    f(r.p999, 2),
                    f(r.cpu, 2),
                    f(mib(r.peak_kib), 1),
                    f(r.errors, 0),
                ));
            }
        }
    }
    line("");
    line("## Idle RSS (after start-up, before the first request)");
    line("");
    line("| proxy | RSS MiB |");
    line("|---|---:|");
    for (proxy, kib) in &idle {
        line(&format!("| {proxy} | {:.1} |", kib / 1024.0));
    }
    if !notes.trim().is_empty() {
        line("");
        line("## Notes");
        line("");
        for note in notes.lines().filter(|l| !l.trim().is_empty()) {
            line(&format!("- {note}"));
        }
    }
    std::fs::write(flags.req("out")?, md)?;
    Ok(())
}
