//! The `plugins` environment variable and `pluginMetadataEndpoint`, through the running router:
//! plugin routes take precedence over xs-app.json's, the endpoint lists the plugins as approuter
//! does, and bad plugins stop start-up naming the variable and the plugin.

mod support;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, load_runtime, upstream};

fn app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "pluginMetadataEndpoint": "/metadata",
        "routes": [{"source": "^/(.*)$", "target": "/from-app/$1", "destination": "app"}]
    }))
}

fn plugins() -> Value {
    json!([
        {"name": "p1", "source": "^/plugin/(.*)$", "target": "/from-plugin/$1", "destination": "plugin",
         "csrfProtection": false, "scope": ["viewer"]},
        {"name": "p2", "source": {"path": "^/P2/(.*)$", "matchCase": false}, "target": "/p2/$1",
         "destination": "plugin", "authenticationType": "none"}
    ])
}

async fn url_seen(router: &Router, path: &str) -> String {
    let response = client().get(router.url(path)).send().await.expect("send");
    assert_eq!(response.status(), 200, "{path}");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    body["url"].as_str().expect("url").to_owned()
}

#[tokio::test]
async fn plugin_routes_come_first_and_the_endpoint_lists_them() {
    let backend = upstream::start().await;
    let dir = app();
    let destinations =
        json!([{"name": "app", "url": backend.url()}, {"name": "plugin", "url": backend.url()}]);
    let router = Router::start(
        dir.path(),
        &[
            ("destinations", destinations.to_string()),
            ("plugins", plugins().to_string()),
        ],
    )
    .await;
    assert_eq!(
        url_seen(&router, "/plugin/a?x=1").await,
        "/from-plugin/a?x=1"
    );
    assert_eq!(
        url_seen(&router, "/p2/b").await,
        "/p2/b",
        "matchCase: false"
    );
    assert_eq!(url_seen(&router, "/other").await, "/from-app/other");

    for path in ["/metadata", "/metadata/anything"] {
        let response = client().get(router.url(path)).send().await.expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let listed: Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(
            listed,
            json!([
                {"name": "p1", "source": "^\\/plugin\\/(.*)$", "target": "/from-plugin/$1", "destination": "plugin",
                 "csrfProtection": false, "scope": ["viewer"]},
                {"name": "p2", "source": "^\\/P2\\/(.*)$", "target": "/p2/$1", "destination": "plugin",
                 "authenticationType": "none"}
            ]),
            "{path}"
        );
    }
    // Only GET is answered by the endpoint; other methods are routed as usual.
    let post = client()
        .post(router.url("/metadata"))
        .send()
        .await
        .expect("send");
    let body: Value = serde_json::from_slice(&post.bytes().await.expect("body")).expect("json");
    assert_eq!(body["url"], "/from-app/metadata");

    let without = Router::start(dir.path(), &[("destinations", destinations.to_string())]).await;
    let none = client()
        .get(without.url("/metadata"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        none.text().await.expect("body"),
        "null",
        "approuter lists no plugins as null"
    );
}

fn problems(env: &[(&str, String)]) -> Vec<String> {
    let dir = app();
    match load_runtime(dir.path(), env) {
        Ok(_) => Vec::new(),
        Err(xsrouter::config::LoadError::Invalid(err)) => {
            err.problems.iter().map(|p| p.to_string()).collect()
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn bad_plugins_stop_start_up_naming_the_plugin() {
    let destinations = (
        "destinations",
        json!([{"name": "app", "url": "http://127.0.0.1:9"}]).to_string(),
    );
    let bad = json!([
        {"name": "local", "source": "^/l/", "localDir": "web", "destination": "app"},
        {"source": "^/n/", "destination": "app"},
        {"name": "unknown", "source": "^/u/", "destination": "nowhere"},
        {"name": "regex", "source": "^/(unclosed", "destination": "app"},
        {"name": "csrf", "source": "^/c/", "destination": "app", "csrfProtection": "no"}
    ]);
    let found = problems(&[destinations.clone(), ("plugins", bad.to_string())]);
    let expected = [
        "env plugins: $[0].localDir: unknown property",
        "env plugins: $[1]: missing required property `name`",
        "env plugins: $[2].destination: unknown destination `nowhere`",
        "env plugins: $[3].source:",
        "env plugins: $[4].csrfProtection: invalid type",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let found = problems(&[destinations, ("plugins", "{\"name\": 1}".to_owned())]);
    assert_eq!(
        found,
        vec!["env plugins: $: must be a JSON array of plugins"]
    );
}
