//! Route selection through a real router: order, methods, case, dynamic destinations,
//! authentication (fail closed until login exists) and unknown routes.

mod support;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, destinations, upstream};

async fn url_seen(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    echo["url"].as_str().expect("url").to_owned()
}

#[tokio::test]
async fn first_matching_route_wins_and_methods_fall_through() {
    let a = upstream::start().await;
    let b = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/m/(.*)$", "target": "/read/$1", "destination": "a", "httpMethods": ["GET", "HEAD"]},
            {"source": "^/m/(.*)$", "target": "/write/$1", "destination": "b", "httpMethods": ["POST", "PUT"]},
            {"source": "^/m/special$", "destination": "b"},
            {"source": {"path": "^/CaSe/(.*)$", "matchCase": false}, "target": "/ci/$1", "destination": "a"}
        ]
    }));
    let env = [(
        "destinations",
        destinations(&[("a", a.url()), ("b", b.url())]),
    )];
    let router = Router::start(dir.path(), &env).await;
    let c = client();
    assert_eq!(
        url_seen(c.get(router.url("/m/x")).send().await.expect("send")).await,
        "/read/x"
    );
    assert_eq!(
        url_seen(c.post(router.url("/m/x")).send().await.expect("send")).await,
        "/write/x"
    );
    // The earlier routes match /m/special by path, so it never reaches the third route for GET.
    assert_eq!(
        url_seen(c.get(router.url("/m/special")).send().await.expect("send")).await,
        "/read/special"
    );
    let response = c.delete(router.url("/m/x")).send().await.expect("send");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST, PUT");
    assert_eq!(
        url_seen(c.get(router.url("/case/Q")).send().await.expect("send")).await,
        "/ci/Q"
    );
    assert_eq!(
        url_seen(c.get(router.url("/CASE/Q")).send().await.expect("send")).await,
        "/ci/Q"
    );
    let response = c
        .get(router.url("/nothing/here"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-frame-options"], "SAMEORIGIN");
    assert_eq!(response.text().await.expect("body").trim(), "Not Found");
}

#[tokio::test]
async fn destination_from_capture_group_and_host_pattern() {
    let a = upstream::start().await;
    let b = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/dyn/([^/]+)/(.*)$", "target": "/$2", "destination": "$1"},
            {"source": "^/host/(.*)$", "target": "/h/$1", "destination": "*"}
        ]
    }));
    let env = [
        (
            "destinations",
            destinations(&[("a", a.url()), ("b", b.url())]),
        ),
        (
            "DESTINATION_HOST_PATTERN",
            "^([a-z]+)\\.apps\\.test(:\\d+)?$".to_owned(),
        ),
    ];
    let router = Router::start(dir.path(), &env).await;
    let c = client();
    assert_eq!(
        url_seen(
            c.get(router.url("/dyn/b/x?y=1"))
                .send()
                .await
                .expect("send")
        )
        .await,
        "/x?y=1"
    );
    assert_eq!(b.connections(), 1);
    assert_eq!(a.connections(), 0);
    let response = c
        .get(router.url("/dyn/unknown/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.status(),
        404,
        "an unknown destination name from the URL is not found"
    );

    let seen = url_seen(
        c.get(router.url("/host/p"))
            .header("host", "a.apps.test")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(seen, "/h/p");
    assert_eq!(a.connections(), 1);
    let response = c
        .get(router.url("/host/p"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn routes_that_need_login_redirect_browsers_and_refuse_the_rest() {
    let up = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/public/(.*)$", "target": "/$1", "destination": "d", "authenticationType": "none"},
            {"source": "^/private/(.*)$", "target": "/$1", "destination": "d", "authenticationType": "xsuaa"},
            {"source": "^/default/(.*)$", "target": "/$1", "destination": "d"}
        ]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"],
        "credentials": {"clientid": "sb-app", "clientsecret": "s3cr3t", "url": "https://uaa.example"}}]});
    let env = [
        ("destinations", destinations(&[("d", up.url())])),
        ("VCAP_SERVICES", vcap.to_string()),
    ];
    let router = Router::start(dir.path(), &env).await;
    let c = client();
    assert_eq!(
        url_seen(c.get(router.url("/public/x")).send().await.expect("send")).await,
        "/x"
    );
    for path in ["/private/x", "/default/x"] {
        let response = c.get(router.url(path)).send().await.expect("send");
        assert_eq!(response.status(), 302, "{path}");
        let location = response.headers()["location"].to_str().expect("location");
        assert!(
            location.starts_with("https://uaa.example/oauth/authorize?"),
            "{location}"
        );
        let xhr = c
            .get(router.url(path))
            .header("x-requested-with", "XMLHttpRequest")
            .send()
            .await
            .expect("send");
        assert_eq!(xhr.status(), 401, "{path}");
        let post = c.post(router.url(path)).send().await.expect("send");
        assert_eq!(post.status(), 401, "{path}");
    }
    assert_eq!(
        up.connections(),
        1,
        "protected routes never reached the backend"
    );
}

#[tokio::test]
async fn bad_request_paths_are_refused_before_routing() {
    let up = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "destination": "d"}]
    }));
    let router = Router::start(
        dir.path(),
        &[("destinations", destinations(&[("d", up.url())]))],
    )
    .await;
    for path in ["/a/../b", "/%2e%2e/etc/passwd", "/a/%252e%252e/b", "/a%00"] {
        let response = support::raw_get(router.addr, path).await;
        assert_eq!(response.status, 400, "{path}");
    }
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn a_route_that_names_an_unbound_login_service_stops_start_up() {
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/(.*)$", "destination": "d", "authenticationType": "ias"}]
    }));
    let env = [(
        "destinations",
        destinations(&[("d", "http://127.0.0.1:9".to_owned())]),
    )];
    let err = match Router::try_start(dir.path(), &env).await {
        Ok(_) => panic!("start-up should fail"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("$.routes[0].authenticationType: the route requires IAS login, but no IAS service is bound"), "{err}");
}
