//! `errorPage` and `RETURN_ERROR_SOURCE` through a real router: custom pages for the router's own
//! errors (no route, login required, unreachable backend, CORS refusal), redirects to an error
//! path, backend errors passed through untouched, and configuration errors.

mod support;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, destinations, upstream};

const NOT_FOUND_PAGE: &str = "<html><body>custom: nothing here</body></html>";
const AUTH_PAGE: &str = "<html><body>custom: please log in</body></html>";
const GATEWAY_PAGE: &str = "{\"error\": \"backend unavailable\"}";

fn xs_app(error_page: Value) -> Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/down/(.*)$", "target": "/$1", "destination": "down", "authenticationType": "none"},
            {"source": "^/web/(.*)$", "target": "$1", "localDir": "web", "authenticationType": "none"},
            {"source": "^/private/(.*)$", "target": "/$1", "destination": "backend"}
        ],
        "cors": [{"uriPattern": "^/api/", "allowedOrigin": [{"host": "app.example"}]}],
        "errorPage": error_page
    })
}

struct Setup {
    router: Router,
    _upstream: upstream::Upstream,
    _dir: WorkDir,
}

async fn setup(error_page: Value, env: &[(&str, String)]) -> Setup {
    let upstream = upstream::start().await;
    // A port nobody listens on: bind, read the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let dir = WorkDir::new(&xs_app(error_page));
    dir.file("errors/404.html", NOT_FOUND_PAGE);
    dir.file("errors/auth.html", AUTH_PAGE);
    dir.file("errors/gateway.json", GATEWAY_PAGE);
    dir.file("web/index.html", "<p>home</p>");
    let mut env = env.to_vec();
    env.push((
        "destinations",
        destinations(&[("backend", upstream.url()), ("down", down)]),
    ));
    let router = Router::start(dir.path(), &env).await;
    Setup {
        router,
        _upstream: upstream,
        _dir: dir,
    }
}

fn pages() -> Value {
    json!([
        {"status": 404, "file": "errors/404.html"},
        {"status": [401, 403], "file": "./errors/auth.html"},
        {"status": 502, "file": "errors/gateway.json"},
        {"status": 405, "path": "/web/index.html"}
    ])
}

async fn get(router: &Router, path: &str) -> reqwest::Response {
    client().get(router.url(path)).send().await.expect("get")
}

#[tokio::test]
async fn router_errors_get_the_configured_pages() {
    let s = setup(pages(), &[]).await;
    let response = get(&s.router, "/nowhere").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=UTF-8"
    );
    assert_eq!(response.text().await.expect("body"), NOT_FOUND_PAGE);

    // A missing local file is the router's answer too.
    let response = get(&s.router, "/web/missing.html").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.expect("body"), NOT_FOUND_PAGE);

    let response = client()
        .post(s.router.url("/private/x"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.expect("body"), AUTH_PAGE);

    let response = client()
        .get(s.router.url("/api/x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.expect("body"), AUTH_PAGE);

    let response = get(&s.router, "/down/x").await;
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    assert_eq!(response.text().await.expect("body"), GATEWAY_PAGE);
}

#[tokio::test]
async fn backend_errors_pass_through_untouched() {
    let s = setup(pages(), &[("RETURN_ERROR_SOURCE", "true".into())]).await;
    for code in [404, 502, 401] {
        let response = get(&s.router, &format!("/api/status/{code}")).await;
        assert_eq!(response.status().as_u16(), code);
        assert!(response.headers().get("x-error-source").is_none(), "{code}");
        assert_eq!(
            response.text().await.expect("body"),
            format!("status {code}")
        );
    }
}

#[tokio::test]
async fn path_pages_redirect_without_looping() {
    let s = setup(pages(), &[]).await;
    let response = client()
        .delete(s.router.url("/web/index.html"))
        .send()
        .await
        .expect("delete");
    // The error page is the failing URL itself: no redirect to itself.
    assert_eq!(response.status(), 405);
    let response = client()
        .delete(s.router.url("/web/other.html"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/web/index.html");
}

#[tokio::test]
async fn return_error_source_marks_only_router_errors() {
    let s = setup(json!([]), &[("RETURN_ERROR_SOURCE", "true".into())]).await;
    let response = get(&s.router, "/nowhere").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-error-source"], "gateway");
    let response = get(&s.router, "/down/x").await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-error-source"], "gateway");
    let response = get(&s.router, "/api/ok").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-error-source").is_none());

    let off = setup(json!([]), &[]).await;
    let response = get(&off.router, "/nowhere").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("x-error-source").is_none());
    assert_eq!(response.text().await.expect("body"), "Not Found\n");
}

#[test]
fn bad_error_pages_stop_start_up() {
    let dir = WorkDir::new(&xs_app(json!([
        {"status": 404, "file": "errors/missing.html"},
        {"status": "500", "file": "errors/x.html"},
        {"status": 500, "file": "x", "colour": "red"}
    ])));
    dir.file("errors/x.html", "x");
    let err = support::load_runtime(
        dir.path(),
        &[(
            "destinations",
            destinations(&[
                ("backend", "http://127.0.0.1:1".into()),
                ("down", "http://127.0.0.1:1".into()),
            ]),
        )],
    )
    .expect_err("invalid")
    .to_string();
    for want in [
        "$.errorPage[0].file: `errors/missing.html` is not a file",
        "$.errorPage[1].status: must be an HTTP error status code",
        "colour",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
}
