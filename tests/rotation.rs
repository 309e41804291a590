//! Certificate rotation without restart: the binding files are rewritten several times while
//! clients keep sending requests; no request fails, new connections present the new
//! certificate, and a broken credential is rejected while the last good one stays in use.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::mtls;
use support::pki::{KeyForm, Leaf, Pki};
use support::{Router, WorkDir, client};

/// Replaces a file the way Kubernetes updates mounted secrets: write aside, then rename.
fn replace_file(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn bind(dir: &Path, leaf: &Leaf, pki: &Pki) {
    replace_file(dir, "key", &leaf.key_pem);
    replace_file(dir, "certificate", &leaf.chain_pem(pki));
}

/// An mTLS upstream, the router's working directory and an xsuaa binding directory holding
/// the first certificate generation.
struct Setup {
    client_pki: Pki,
    upstream: mtls::MtlsUpstream,
    dir: WorkDir,
    bindings: tempfile::TempDir,
    binding: std::path::PathBuf,
}

impl Setup {
    /// `close_every`: the upstream ends each connection after that many requests.
    async fn new(close_every: usize, first: &str) -> Self {
        let server_pki = Pki::new("Server");
        let client_pki = Pki::new("Client");
        let upstream = mtls::start(&server_pki, &client_pki, close_every).await;
        let dir = WorkDir::new(&json!({
            "authenticationMethod": "none",
            "routes": [{"source": "^/mtls/(.*)$", "target": "/$1", "destination": "secure"}]
        }));
        dir.file("server-ca.pem", server_pki.root_pem());
        let bindings = tempfile::tempdir().expect("tmp");
        let binding = bindings.path().join("xsuaa");
        std::fs::create_dir(&binding).expect("dir");
        std::fs::write(binding.join("type"), "xsuaa").expect("write");
        bind(
            &binding,
            &client_pki.client(first, KeyForm::EcPkcs8),
            &client_pki,
        );
        Self {
            client_pki,
            upstream,
            dir,
            bindings,
            binding,
        }
    }

    /// The router's environment, re-reading credentials every `poll` seconds.
    fn env(&self, poll: u64) -> Vec<(&'static str, String)> {
        vec![
            ("destinations", json!([{"name": "secure", "url": self.upstream.url(), "forwardAuthCertificates": true}]).to_string()),
            ("SERVICE_BINDING_ROOT", self.bindings.path().display().to_string()),
            ("XS_CACERT_PATH", self.dir.path().join("server-ca.pem").display().to_string()),
            ("XSROUTER_CREDENTIALS_POLL_INTERVAL", poll.to_string()),
        ]
    }

    fn rotate(&self, cn: &str, form: KeyForm) {
        bind(
            &self.binding,
            &self.client_pki.client(cn, form),
            &self.client_pki,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request() {
    // The upstream closes every 5th connection, so clients keep opening new ones.
    let setup = Setup::new(5, "generation 0").await;
    let upstream = &setup.upstream;
    let router = Arc::new(Router::start(setup.dir.path(), &setup.env(1)).await);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (router, stop, sent, failed) =
            (router.clone(), stop.clone(), sent.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let outcome = match c.get(router.url("/mtls/x")).send().await {
                    Ok(response) => {
                        let status = response.status();
                        match response.text().await {
                            Ok(_) if status == 200 => None,
                            body => Some(format!("{status}: {body:?}")),
                        }
                    }
                    Err(err) => Some(err.to_string()),
                };
                if let Some(failure) = outcome {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("request failed during rotation: {failure}");
                }
            }
        }));
    }

    let pause = Duration::from_millis(1600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.rotate("generation 1", KeyForm::RsaPkcs8);
    tokio::time::sleep(pause).await;
    // A broken certificate: rejected, generation 1 stays.
    replace_file(
        &setup.binding,
        "certificate",
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(pause).await;
    let chains_before_generation_2 = upstream.chains().len();
    setup.rotate("generation 2", KeyForm::EcSec1);
    tokio::time::sleep(pause).await;
    setup.rotate("generation 3", KeyForm::RsaPkcs1);
    tokio::time::sleep(pause).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }

    let sent = sent.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    assert!(
        sent > 100,
        "the load was too light to mean anything: {sent} requests"
    );
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during rotation"
    );

    let chains = upstream.chains();
    let leaves: Vec<&str> = chains.iter().map(|c| c[0].as_str()).collect();
    for generation in [
        "generation 0",
        "generation 1",
        "generation 2",
        "generation 3",
    ] {
        assert!(
            leaves.contains(&generation),
            "{generation} never reached the upstream: {leaves:?}"
        );
    }
    // While the broken certificate was on disk, new connections still presented generation 1.
    let during_broken = &leaves[..chains_before_generation_2];
    assert_eq!(
        during_broken.last(),
        Some(&"generation 1"),
        "{during_broken:?}"
    );
    // Connections are recorded when their handshakes finish, so two concurrent handshakes may be
    // recorded out of order; but long after the last rotation, new connections show the last one.
    assert_eq!(leaves.last(), Some(&"generation 3"), "{leaves:?}");
    assert_eq!(
        *upstream.rejected.lock().expect("lock"),
        0,
        "no handshake was rejected"
    );
}

#[tokio::test]
async fn vcap_services_file_is_reread() {
    let server_pki = Pki::new("Server");
    let client_pki = Pki::new("Client");
    let upstream = mtls::start(&server_pki, &client_pki, 3).await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/mtls/(.*)$", "target": "/$1", "destination": "secure"}]
    }));
    let ca = dir.file("server-ca.pem", server_pki.root_pem());
    let vcap = |leaf: &Leaf| {
        json!({"xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {
            "clientid": "c", "url": "https://u.example", "certificate": leaf.chain_pem(&client_pki), "key": leaf.key_pem}}]})
        .to_string()
    };
    let file = dir.file(
        "vcap.json",
        vcap(&client_pki.client("first", KeyForm::EcPkcs8)),
    );
    let env = [
        (
            "destinations",
            json!([{"name": "secure", "url": upstream.url(), "forwardAuthCertificates": true}])
                .to_string(),
        ),
        ("VCAP_SERVICES_FILE_PATH", file.display().to_string()),
        ("XS_CACERT_PATH", ca.display().to_string()),
        ("XSROUTER_CREDENTIALS_POLL_INTERVAL", "1".to_owned()),
    ];
    let router = Router::start(dir.path(), &env).await;
    let c = client();
    let get = || async {
        c.get(router.url("/mtls/x"))
            .send()
            .await
            .expect("send")
            .status()
    };
    assert_eq!(get().await, 200);
    replace_file(
        dir.path(),
        "vcap.json",
        &vcap(&client_pki.client("second", KeyForm::EcPkcs8)),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !upstream.chains().iter().any(|c| c[0] == "second") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rewritten file was never picked up: {:?}",
            upstream.chains()
        );
        assert_eq!(get().await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_credentials_in_the_running_binary() {
    let setup = Setup::new(1, "before hup").await; // every connection is new
    let upstream = &setup.upstream;
    // Polling would take ten minutes: only the signal can explain a quick reload.
    let router = support::process::RouterProcess::start(setup.dir.path(), &setup.env(600));
    let c = client();
    assert_eq!(
        c.get(router.url("/mtls/a"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    setup.rotate("after hup", KeyForm::EcPkcs8);
    router.signal("HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !upstream
        .chains()
        .iter()
        .any(|chain| chain[0] == "after hup")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload: {:?}\n{}",
            upstream.chains(),
            router.log_text()
        );
        assert_eq!(
            c.get(router.url("/mtls/b"))
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = router.log_text();
    assert!(
        log.contains("SIGHUP: re-reading the bound credentials")
            && log.contains("rotated client certificate"),
        "{log}"
    );
    assert!(
        log.contains("subject=") && !log.contains("PRIVATE KEY"),
        "certificate logged, key never: {log}"
    );
}
