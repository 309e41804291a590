//! Route matching and target rewriting: a fuzzed route (source, target) loaded through the
//! real configuration loader, then fuzzed request URLs and hosts looked up against it, with the
//! request checks that run before routing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xsrouter::config::{Environment, Runtime};
use xsrouter::routing::{self, Lookup, request_path};

fn workdir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("web")).expect("web dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let source = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let url = parts.next().unwrap_or_default();
    let host = parts.next();
    let _ = request_path::check(url);
    let _ = xsrouter::host_header::is_host(host.unwrap_or_default().as_bytes());
    let _ = routing::take_sap_idp(url);
    let doc = serde_json::json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": source, "target": target, "destination": "d"},
            {"source": source, "destination": "$1"},
            {"source": source, "target": target, "localDir": "web", "httpMethods": ["GET"]},
            {"source": "^/(.*)$", "target": target, "destination": "*"},
        ]
    });
    let dir = workdir();
    if std::fs::write(dir.path().join("xs-app.json"), doc.to_string()).is_err() {
        return;
    }
    let env = Environment::from_pairs([
        ("destinations", r#"[{"name":"d","url":"http://127.0.0.1:1/base"}]"#.to_owned()),
        ("DESTINATION_HOST_PATTERN", "^([^.]+)\\.router\\.example$".to_owned()),
    ]);
    let Ok(runtime) = Runtime::load(dir.path(), env) else {
        return;
    };
    for method in [http::Method::GET, http::Method::POST] {
        if let Lookup::Found(found) = runtime.routes.lookup(&method, url, host) {
            // What the proxy does next with the rewritten URL must not panic either.
            let _ = request_path::check(&found.url);
            let _ = http::Uri::try_from(found.url.as_str());
        }
    }
});
