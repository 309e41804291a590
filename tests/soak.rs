//! Soak: the real binary under sustained mixed traffic — static files, a plain destination,
//! an mTLS destination whose bound certificate is rotated all the time, a token destination
//! whose token service goes down and comes back, and full browser logins — for a configurable
//! time. Not part of the normal run (`#[ignore]`):
//!
//! ```sh
//! SOAK_SECONDS=600 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! It reports requests sent, failures outside the injected token-service outages (must be 0),
//! failures inside them, and the router's resident memory and open file descriptors at start,
//! during and at the end. It fails on any unexpected failure, on file descriptors that do not
//! come back to their baseline, or on memory that more than doubles.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::pki::{KeyForm, Pki};
use support::process::RouterProcess;
use support::token_service::TokenService;
use support::{WorkDir, mtls, upstream};

const CLIENT: &str = "sb-soak!t1";
const APP: &str = "soak!t1";
/// Token lifetime: cached for half of it, so the token service is asked every ~10 s.
const TOKEN_SECONDS: u64 = 20;
const ROTATE_EVERY: Duration = Duration::from_secs(15);
const OUTAGE_EVERY: Duration = Duration::from_secs(30);
const OUTAGE_LENGTH: Duration = Duration::from_secs(3);

/// The pid of the one `xsrouter` child of this process.
fn router_pid() -> u32 {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...
                let Some((comm, rest)) = stat.split_once(") ") else {
                    return false;
                };
                comm.ends_with("(xsrouter")
                    && rest.split_whitespace().nth(1) == Some(me.to_string().as_str())
            })
        })
        .expect("the xsrouter child process")
}

/// (resident set in KiB, open file descriptors) of `pid`.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// The router's identity: every generation has this CN (the token service knows the client by
/// it); generations differ in key, key form and serial.
const ROUTER_CN: &str = "soak router";

fn write_binding(binding: &Path, pki: &Pki, form: KeyForm, ts: &TokenService) {
    let leaf = pki.client(ROUTER_CN, form);
    std::fs::create_dir_all(binding).expect("binding dir");
    for (name, value) in [
        ("type", "xsuaa".to_owned()),
        ("clientid", CLIENT.to_owned()),
        ("credential-type", "x509".to_owned()),
        ("url", ts.url.clone()),
        ("certurl", ts.cert_url.clone()),
        ("xsappname", APP.to_owned()),
        ("key", leaf.key_pem.clone()),
        ("certificate", leaf.chain_pem(pki)),
    ] {
        // Write aside, then rename: as Kubernetes updates a mounted secret.
        let tmp = binding.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, value).expect("write binding file");
        std::fs::rename(&tmp, binding.join(name)).expect("rename binding file");
    }
}

/// When the token service was down (start, end), to tell injected failures from real ones.
#[derive(Default)]
struct Outages(Mutex<Vec<(Instant, Option<Instant>)>>);

impl Outages {
    fn injected(&self, started: Instant, ended: Instant) -> bool {
        let grace = Duration::from_secs(1);
        self.0.lock().expect("outages").iter().any(|(from, to)| {
            let to = to.unwrap_or_else(Instant::now) + grace;
            started <= to && ended >= *from
        })
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    unexpected: AtomicU64,
    injected: AtomicU64,
    samples: Mutex<Vec<String>>,
    per_kind: Mutex<HashMap<&'static str, u64>>,
}

impl Tally {
    fn record(
        &self,
        kind: &'static str,
        outcome: Result<(), String>,
        started: Instant,
        outages: &Outages,
        faultable: bool,
    ) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        *self
            .per_kind
            .lock()
            .expect("kinds")
            .entry(kind)
            .or_default() += 1;
        if let Err(reason) = outcome {
            if faultable && outages.injected(started, Instant::now()) {
                self.injected.fetch_add(1, Ordering::Relaxed);
            } else {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                let mut samples = self.samples.lock().expect("samples");
                if samples.len() < 20 {
                    samples.push(format!("{kind}: {reason}"));
                }
            }
        }
    }
}

async fn expect_ok(request: reqwest::RequestBuilder) -> Result<(), String> {
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// A whole browser login and five requests in the session; Err names the failing step.
async fn login_session(router: &RouterProcess) -> Result<(), String> {
    let c = support::client();
    let mut cookies: HashMap<String, String> = HashMap::new();
    let get = async |url: String,
                     cookies: &mut HashMap<String, String>|
           -> Result<reqwest::Response, String> {
        let header = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = c
            .get(&url)
            .header("cookie", header)
            .send()
            .await
            .map_err(|e| format!("{url}: {e:?}"))?;
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    };
    let location = |r: &reqwest::Response| -> Result<String, String> {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("{} without location", r.status()))
    };
    let start = get(router.url("/app/start"), &mut cookies).await?;
    let authorize = location(&start)?;
    let idp = get(authorize, &mut cookies).await?;
    let callback = location(&idp)?;
    let back = get(callback, &mut cookies).await?;
    if back.status() != 302 {
        let status = back.status();
        let body = back.text().await.unwrap_or_default();
        return Err(format!("callback answered {status}: {}", body.trim()));
    }
    for i in 0..5 {
        let response = get(router.url(&format!("/app/in-session/{i}")), &mut cookies).await?;
        if response.status() != 200 {
            return Err(format!("in session: {}", response.status()));
        }
        let _ = response.bytes().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with SOAK_SECONDS=... --ignored --nocapture"]
async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let server_pki = Pki::new("Soak Server");
    let client_pki = Pki::new("Soak Client");
    let ts_pki = Pki::new("Soak Token Server");
    let ts = TokenService::start(&ts_pki, &client_pki).await;
    ts.register_client(CLIENT, None, Some(ROUTER_CN));
    ts.register_client("tok-client", Some("tok-secret"), None);
    ts.set_login_user("soak-user", &[&format!("{APP}.Read"), "openid"]);
    ts.set_expires_in(TOKEN_SECONDS);
    let plain = upstream::start().await;
    // The mTLS upstream ends each connection after 50 requests: new handshakes all the time.
    let secure = mtls::start(&server_pki, &client_pki, 50).await;

    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/web/(.*)$", "target": "$1", "localDir": "web", "authenticationType": "none"},
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "plain", "authenticationType": "none"},
            {"source": "^/mtls/(.*)$", "target": "/$1", "destination": "secure", "authenticationType": "none"},
            {"source": "^/tok/(.*)$", "target": "/$1", "destination": "tok", "authenticationType": "none"},
            {"source": "^/app/(.*)$", "target": "/$1", "destination": "app", "scope": "$XSAPPNAME.Read"}
        ]
    }));
    dir.file("web/index.html", "<html>soak</html>".repeat(100));
    dir.file(
        "server-ca.pem",
        format!("{}{}", server_pki.root_pem(), ts_pki.root_pem()),
    );
    let bindings = tempfile::tempdir().expect("bindings");
    let binding: PathBuf = bindings.path().join("xsuaa");
    write_binding(&binding, &client_pki, KeyForm::EcPkcs8, &ts);
    let destinations = json!([
        {"name": "plain", "url": plain.url()},
        {"name": "secure", "url": secure.url(), "forwardAuthCertificates": true},
        {"name": "tok", "url": plain.url(), "authentication": "OAuth2ClientCredentials",
         "tokenServiceURL": format!("{}/oauth/token", ts.url), "clientId": "tok-client", "clientSecret": "tok-secret"},
        {"name": "app", "url": plain.url(), "forwardAuthToken": true}
    ]);
    let router = Arc::new(RouterProcess::start(
        dir.path(),
        &[
            ("destinations", destinations.to_string()),
            (
                "SERVICE_BINDING_ROOT",
                bindings.path().display().to_string(),
            ),
            (
                "XS_CACERT_PATH",
                dir.path().join("server-ca.pem").display().to_string(),
            ),
            ("XSROUTER_CREDENTIALS_POLL_INTERVAL", "2".to_owned()),
            // Sessions of finished logins expire after a minute, so memory can level off.
            ("SESSION_TIMEOUT", "1".to_owned()),
            (
                "RUST_LOG",
                "warn,xsrouter=info,xsrouter::access=warn".to_owned(),
            ),
        ],
    ));
    let pid = router_pid();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let outages = Arc::new(Outages::default());
    let mut workers = Vec::new();
    // Keep-alive clients cycling through the public kinds.
    for w in 0..4 {
        let (router, stop, tally, outages) =
            (router.clone(), stop.clone(), tally.clone(), outages.clone());
        workers.push(tokio::spawn(async move {
            let c = support::client();
            let kinds: [(&'static str, &str, bool); 4] = [
                ("static", "/web/index.html", false),
                ("plain", "/api/x?q=1", false),
                ("mtls", "/mtls/x", false),
                ("token", "/tok/x", true),
            ];
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let (kind, path, faultable) = kinds[i % kinds.len()];
                i += 1;
                let started = Instant::now();
                let outcome = expect_ok(c.get(router.url(path))).await;
                tally.record(kind, outcome, started, &outages, faultable);
            }
        }));
    }
    // A new connection for every request.
    {
        let (router, stop, tally, outages) =
            (router.clone(), stop.clone(), tally.clone(), outages.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = expect_ok(support::client().get(router.url("/api/fresh"))).await;
                tally.record("fresh-connection", outcome, started, &outages, false);
            }
        }));
    }
    // Logins: the code exchange needs the token service, so outages may fail them.
    {
        let (router, stop, tally, outages) =
            (router.clone(), stop.clone(), tally.clone(), outages.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = login_session(&router).await;
                tally.record("login+5", outcome, started, &outages, true);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    // Warm-up, then the baseline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_start, fds_start) = usage(pid);
    println!("soak: {seconds} s; router pid {pid}; baseline RSS {rss_start} KiB, {fds_start} fds");
    let began = Instant::now();
    let end = began + Duration::from_secs(seconds);
    let mut next_rotation = began + ROTATE_EVERY;
    let mut next_outage = began + OUTAGE_EVERY;
    let mut next_sample = began + Duration::from_secs(10);
    let rotations = AtomicUsize::new(0);
    let mut outage_count = 0;
    let forms = [
        KeyForm::RsaPkcs8,
        KeyForm::EcSec1,
        KeyForm::RsaPkcs1,
        KeyForm::EcPkcs8,
    ];
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_rotation {
            let n = rotations.fetch_add(1, Ordering::Relaxed) + 1;
            write_binding(&binding, &client_pki, forms[n % forms.len()], &ts);
            next_rotation += ROTATE_EVERY;
        }
        if now >= next_outage {
            outages
                .0
                .lock()
                .expect("outages")
                .push((Instant::now(), None));
            ts.set_down(true);
            tokio::time::sleep(OUTAGE_LENGTH).await;
            ts.set_down(false);
            if let Some(last) = outages.0.lock().expect("outages").last_mut() {
                last.1 = Some(Instant::now());
            }
            outage_count += 1;
            next_outage += OUTAGE_EVERY;
        }
        if now >= next_sample {
            let (rss, fds) = usage(pid);
            println!(
                "soak: t={:>4} s sent {:>8} unexpected {:>3} injected {:>4} RSS {rss} KiB fds {fds}",
                began.elapsed().as_secs(),
                tally.sent.load(Ordering::Relaxed),
                tally.unexpected.load(Ordering::Relaxed),
                tally.injected.load(Ordering::Relaxed),
            );
            next_sample += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let (rss_end_busy, fds_end_busy) = usage(pid);
    // Clients are gone; give the router a moment to close what they left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_end, fds_end) = usage(pid);

    let sent = tally.sent.load(Ordering::Relaxed);
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    let injected = tally.injected.load(Ordering::Relaxed);
    let mut kinds: Vec<_> = tally
        .per_kind
        .lock()
        .expect("kinds")
        .clone()
        .into_iter()
        .collect();
    kinds.sort();
    let handshakes = secure.chains().len();
    println!("soak: duration {} s", began.elapsed().as_secs());
    println!("soak: requests sent {sent} ({kinds:?}; a login+5 counts once)");
    println!(
        "soak: failed outside injected faults {unexpected}; failed during token-service outages {injected}"
    );
    println!(
        "soak: certificate rotations {}, mTLS handshakes at the upstream {handshakes}, token-service outages {outage_count}",
        rotations.load(Ordering::Relaxed),
    );
    println!(
        "soak: RSS start {rss_start} KiB, end {rss_end_busy} KiB (busy) / {rss_end} KiB (idle)"
    );
    println!("soak: open fds start {fds_start}, end {fds_end_busy} (busy) / {fds_end} (idle)");
    for sample in tally.samples.lock().expect("samples").iter() {
        println!("soak: unexpected failure: {sample}");
    }
    for line in router
        .log_text()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
    {
        println!("soak: router log: {line}");
    }
    assert_eq!(unexpected, 0, "unexpected failures");
    assert!(sent > 1000, "too little traffic to mean anything: {sent}");
    assert_eq!(
        *secure.rejected.lock().expect("rejected"),
        0,
        "an mTLS handshake was refused"
    );
    assert!(
        fds_end <= fds_start + 16,
        "file descriptors did not come back: {fds_start} → {fds_end}"
    );
    assert!(
        rss_end <= rss_start * 2 + 10 * 1024,
        "memory grew: {rss_start} → {rss_end} KiB"
    );
}
