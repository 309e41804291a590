//! Cross-origin resource sharing through a real router and echo upstream: preflights answered by
//! the router (before authentication), actual requests with `Access-Control-*` headers, refusals
//! (403) for origins, methods and headers a rule does not allow, same-origin and unmatched paths
//! left alone, the `CORS` variable, and configuration errors.

mod support;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, destinations, upstream};

const ORIGIN: &str = "https://app.example.com";

fn rules() -> Value {
    json!([
        {
            "uriPattern": "^/api/open/",
            "allowedOrigin": [],
            "allowedCredentials": false
        },
        {
            "uriPattern": "^/api/",
            "allowedOrigin": [
                {"host": "app.example.com", "protocol": "https"},
                {"host": "*.partner.example", "port": 8443}
            ],
            "allowedMethods": ["GET", "PUT", "OPTIONS"],
            "allowedHeaders": ["Content-Type", "X-Custom"],
            "exposeHeaders": ["X-Total", "ETag"],
            "maxAge": 3600
        },
        {
            "uriPattern": {"path": "^/HOSTED/", "matchCase": false},
            "hostPattern": "^only\\.example:\\d+$",
            "allowedOrigin": [{"host": "app.example.com"}]
        },
        {
            "uriPattern": "^/auth/",
            "allowedOrigin": [{"host": "app.example.com"}]
        }
    ])
}

struct Setup {
    router: Router,
    upstream: upstream::Upstream,
    _dir: WorkDir,
}

async fn setup(cors_in_file: Option<Value>, env: &[(&str, String)]) -> Setup {
    let upstream = upstream::start().await;
    let mut xs_app = json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/hosted/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/auth/(.*)$", "target": "/$1", "destination": "backend"}
        ]
    });
    if let Some(cors) = cors_in_file {
        xs_app["cors"] = cors;
    }
    let dir = WorkDir::new(&xs_app);
    let mut env = env.to_vec();
    env.push(("destinations", destinations(&[("backend", upstream.url())])));
    let router = Router::start(dir.path(), &env).await;
    Setup {
        router,
        upstream,
        _dir: dir,
    }
}

fn backend_calls(s: &Setup) -> usize {
    s.upstream.observed.paths.lock().expect("paths").len()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(
    s: &Setup,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .request(reqwest::Method::OPTIONS, s.router.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        request = request.header("access-control-request-headers", headers);
    }
    request.send().await.expect("preflight")
}

#[tokio::test]
async fn preflight_is_answered_by_the_router() {
    let s = setup(Some(rules()), &[]).await;
    let response = preflight(
        &s,
        "/api/items",
        ORIGIN,
        "PUT",
        Some("content-type, X-Custom"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("PUT")
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some("Content-Type, X-Custom")
    );
    assert_eq!(header(&response, "access-control-max-age"), Some("3600"));
    assert_eq!(header(&response, "vary"), Some("Origin"));
    assert!(response.bytes().await.expect("body").is_empty());
    // A wildcard origin with its port, the default max age of another rule.
    let response = preflight(
        &s,
        "/api/items",
        "https://a.b.partner.example:8443",
        "GET",
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://a.b.partner.example:8443")
    );
    assert_eq!(backend_calls(&s), 0, "preflights never reach the backend");
}

#[tokio::test]
async fn preflight_before_authentication() {
    let s = setup(Some(rules()), &[]).await;
    let response = preflight(&s, "/auth/x", ORIGIN, "POST", Some("Content-Type")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-max-age"), Some("1800"));
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some(
            "Origin, Accept, X-Requested-With, Content-Type, Access-Control-Request-Method, Access-Control-Request-Headers"
        )
    );
    // The actual request still needs a user; the refusal carries the CORS headers, so the
    // browser lets the page see the 401.
    let response = client()
        .post(s.router.url("/auth/x"))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ORIGIN)
    );
}

#[tokio::test]
async fn preflight_refusals() {
    let s = setup(Some(rules()), &[]).await;
    for (origin, method, headers) in [
        ("https://evil.example", "GET", None),
        ("http://app.example.com", "GET", None),
        ("https://app.example.com.evil.example", "GET", None),
        ("https://x.partner.example", "GET", None),
        (ORIGIN, "DELETE", None),
        (ORIGIN, "PUT", Some("content-type, authorization")),
    ] {
        let response = preflight(&s, "/api/items", origin, method, headers).await;
        assert_eq!(response.status(), 403, "{origin} {method} {headers:?}");
        assert!(header(&response, "access-control-allow-origin").is_none());
    }
    assert_eq!(backend_calls(&s), 0);
}

#[tokio::test]
async fn actual_requests_get_cors_headers_or_403() {
    let s = setup(Some(rules()), &[]).await;
    let response = client()
        .get(s.router.url("/api/items?x=1"))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("X-Total, ETag")
    );
    let echo: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("echo json");
    assert_eq!(echo["url"], "/items?x=1");
    assert_eq!(backend_calls(&s), 1);

    for (origin, method) in [("https://evil.example", "GET"), (ORIGIN, "POST")] {
        let response = client()
            .request(method.parse().expect("method"), s.router.url("/api/items"))
            .header("origin", origin)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 403, "{origin} {method}");
    }
    assert_eq!(
        backend_calls(&s),
        1,
        "refused requests never reach the backend"
    );

    // Any origin without credentials: `*`, no credentials header.
    let response = client()
        .get(s.router.url("/api/open/x"))
        .header("origin", "http://anyone.example:3000")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(header(&response, "access-control-allow-credentials").is_none());
}

#[tokio::test]
async fn same_origin_unmatched_and_originless_requests_are_left_alone() {
    let s = setup(Some(rules()), &[]).await;
    let own = format!("http://{}", s.router.addr);
    let uncovered = client()
        .get(s.router.url("/hosted/x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(
        uncovered.status(),
        200,
        "no rule for this host: not a CORS matter"
    );
    assert!(header(&uncovered, "access-control-allow-origin").is_none());
    for origin in [Some(own.as_str()), None] {
        let mut request = client().get(s.router.url("/api/items"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("get");
        assert_eq!(response.status(), 200, "{origin:?}");
        assert!(header(&response, "access-control-allow-origin").is_none());
    }
    // A front proxy's host counts as the router's own.
    let response = client()
        .get(s.router.url("/api/items"))
        .header("origin", "https://router.example")
        .header("x-forwarded-host", "router.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(header(&response, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn host_pattern_and_case_insensitive_uri_pattern() {
    let s = setup(Some(rules()), &[]).await;
    let response = client()
        .get(s.router.url("/hosted/x"))
        .header("host", "only.example:1234")
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 403);
    let response = client()
        .get(s.router.url("/hosted/x"))
        .header("host", "only.example:1234")
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ORIGIN)
    );
}

#[tokio::test]
async fn malformed_origin_is_refused() {
    let s = setup(Some(rules()), &[]).await;
    for origin in ["null", "app.example.com", "https://a%2eb"] {
        let response = client()
            .get(s.router.url("/api/items"))
            .header("origin", origin)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 403, "{origin}");
    }
}

#[tokio::test]
async fn cors_variable_applies_when_the_file_has_no_matching_rule() {
    let env_rules = json!([
        {"uriPattern": "^/api/", "allowedOrigin": [{"host": "env.example"}], "allowedCredentials": false},
        {"uriPattern": "^/hosted/", "allowedOrigin": [{"host": "env.example"}]}
    ])
    .to_string();
    let file_rules = json!([{"uriPattern": "^/api/", "allowedOrigin": [{"host": "file.example"}]}]);
    let s = setup(Some(file_rules), &[("CORS", env_rules.clone())]).await;
    let get = |path: &'static str, origin: &'static str| {
        client()
            .get(s.router.url(path))
            .header("origin", origin)
            .send()
    };
    assert_eq!(
        get("/api/x", "https://file.example")
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        get("/api/x", "https://env.example")
            .await
            .expect("get")
            .status(),
        403
    );
    let hosted = get("/hosted/x", "https://env.example").await.expect("get");
    assert_eq!(hosted.status(), 200);
    assert_eq!(
        header(&hosted, "access-control-allow-origin"),
        Some("https://env.example")
    );

    let only_env = setup(None, &[("CORS", env_rules)]).await;
    let response = client()
        .get(only_env.router.url("/api/x"))
        .header("origin", "https://env.example")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://env.example")
    );
}

#[test]
fn bad_cors_configuration_names_the_property() {
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [],
        "cors": [
            {"uriPattern": "^/a(", "allowedOrigin": [{"host": "a.example"}]},
            {"uriPattern": "^/b", "allowedOrigin": [{"host": "https://a.example", "port": "x"}]},
            {"uriPattern": "^/c", "allowedOrigin": [{"host": "a.example"}], "allowedMethods": ["FETCH"]},
            {"uriPattern": "^/d", "allowedOrigin": [{"host": "a.example"}], "exposedHeaders": ["x"]}
        ]
    }));
    let err = support::load_runtime(dir.path(), &[])
        .expect_err("invalid")
        .to_string();
    for want in [
        "$.cors[0].uriPattern: invalid regular expression",
        "$.cors[1].allowedOrigin[0].host",
        "$.cors[1].allowedOrigin[0].port",
        "$.cors[2].allowedMethods[0]",
        "$.cors[3].exposedHeaders: unknown field `exposedHeaders`",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    let dir = WorkDir::new(&json!({"authenticationMethod": "none", "routes": []}));
    let err = support::load_runtime(dir.path(), &[("CORS", "[{\"allowedOrigin\": []}]".into())])
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("env CORS") && err.contains("uriPattern"),
        "{err}"
    );
}
