//! `replace` on `localDir` routes, through the running router: placeholders from environment
//! variables and bound services with mustache escaping, `pathSuffixes` deciding which files are
//! rendered, `cacheControl` on rendered files, and start-up errors for unresolvable services.

mod support;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, load_runtime};

const TEMPLATE: &str = "<title>{{title}}</title><script src=\"{{{cdn}}}/x.js\"></script>{{{ui5.url}}}|{{ui5.url}}|[{{ui5.clientsecret}}]|[{{missing}}]{{#ui5}}<{{url}}>{{/ui5}}";

fn app(replace: Value) -> WorkDir {
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/web/(.*)$", "target": "/$1", "localDir": "web", "cacheControl": "no-store", "replace": replace},
            {"source": "^/plain/(.*)$", "target": "/$1", "localDir": "web"}
        ]
    }));
    dir.file("web/index.html", TEMPLATE);
    dir.file("web/sub/page.html", "{{title}}");
    dir.file("web/page.html", "{{title}}");
    dir.file("web/broken/index.html", "{{#open}} never closed");
    dir
}

fn ui5_service(name: &str) -> Value {
    json!({"name": name, "label": "sapui5", "tags": ["ui5"],
           "credentials": {"url": "https://ui5.example/lib?a=1&b=2", "clientsecret": "top-secret"}})
}

fn env(vcap: Value) -> Vec<(&'static str, String)> {
    vec![
        ("title", "Tom & \"Jerry\" <b>".to_owned()),
        ("cdn", "https://cdn.example/v1".to_owned()),
        ("VCAP_SERVICES", vcap.to_string()),
    ]
}

fn standard_replace() -> Value {
    json!({"pathSuffixes": ["index.html", "/sub/page.html"], "vars": ["title", "cdn"],
           "services": {"ui5": {"tag": "ui5"}}})
}

#[tokio::test]
async fn matching_files_are_rendered_with_escaping_and_cache_control() {
    let dir = app(standard_replace());
    let router = Router::start(dir.path(), &env(json!({"sapui5": [ui5_service("my-ui5")]}))).await;
    let expected = "<title>Tom &amp; &quot;Jerry&quot; &lt;b&gt;</title><script src=\"https://cdn.example/v1/x.js\"></script>https://ui5.example/lib?a=1&b=2|https:&#x2F;&#x2F;ui5.example&#x2F;lib?a&#x3D;1&amp;b&#x3D;2|[]|[]<https:&#x2F;&#x2F;ui5.example&#x2F;lib?a&#x3D;1&amp;b&#x3D;2>";
    for path in ["/web/", "/web/index.html"] {
        let response = client().get(router.url(path)).send().await.expect("send");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=UTF-8",
            "{path}"
        );
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert!(response.headers().get("etag").is_none(), "{path}");
        assert_eq!(response.text().await.expect("body"), expected, "{path}");
    }
    let rendered = client()
        .get(router.url("/web/sub/page.html"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        rendered.text().await.expect("body"),
        "Tom &amp; &quot;Jerry&quot; &lt;b&gt;"
    );
    // Not a configured suffix: served as it is, with validators.
    let verbatim = client()
        .get(router.url("/web/page.html"))
        .send()
        .await
        .expect("send");
    assert!(verbatim.headers().get("etag").is_some());
    assert_eq!(verbatim.text().await.expect("body"), "{{title}}");
    // Routes without `replace` never render.
    let plain = client()
        .get(router.url("/plain/index.html"))
        .send()
        .await
        .expect("send");
    assert_eq!(plain.text().await.expect("body"), TEMPLATE);

    let head = client()
        .head(router.url("/web/index.html"))
        .send()
        .await
        .expect("send");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        expected.len().to_string().as_str()
    );
    let broken = client()
        .get(router.url("/web/broken/"))
        .send()
        .await
        .expect("send");
    assert_eq!(broken.status(), 500);
    let post = client()
        .post(router.url("/web/index.html"))
        .send()
        .await
        .expect("send");
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn services_by_name_and_from_default_services_json() {
    let replace = json!({"pathSuffixes": [".html"], "services": {"ui5": "my-ui5"}});
    let dir = app(replace);
    let router = Router::start(
        dir.path(),
        &env(json!({"sapui5": [ui5_service("my-ui5"), ui5_service("other")]})),
    )
    .await;
    let body = client()
        .get(router.url("/web/index.html"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("</script>https://ui5.example/lib?a=1&b=2|"),
        "{body}"
    );
    assert!(
        body.starts_with("<title></title>"),
        "vars not listed stay empty: {body}"
    );

    let replace = json!({"pathSuffixes": [".html"], "services": {"ui5": {"tag": "ui5"}}});
    let dir = app(replace);
    dir.file(
        "default-services.json",
        json!({"ui5": {"url": "http://local-ui5"}}).to_string(),
    );
    let router = Router::start(dir.path(), &[]).await;
    let body = client()
        .get(router.url("/web/index.html"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(body.contains("</script>http://local-ui5|"), "{body}");
}

fn problems(dir: &WorkDir, vcap: Value) -> Vec<String> {
    match load_runtime(dir.path(), &env(vcap)) {
        Ok(_) => Vec::new(),
        Err(xsrouter::config::LoadError::Invalid(err)) => {
            err.problems.iter().map(|p| p.to_string()).collect()
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn unresolvable_services_stop_start_up() {
    let dir = app(standard_replace());
    let found = problems(&dir, json!({}));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .ends_with("xs-app.json: $.routes[0].replace.services.ui5: no bound service matches"),
        "{found:#?}"
    );
    let found = problems(
        &dir,
        json!({"sapui5": [ui5_service("a"), ui5_service("b")]}),
    );
    assert!(
        found[0].ends_with("$.routes[0].replace.services.ui5: 2 bound services match"),
        "{found:#?}"
    );
    let colliding =
        app(json!({"pathSuffixes": [".html"], "vars": ["ui5"], "services": {"ui5": "a"}}));
    let found = problems(&colliding, json!({"sapui5": [ui5_service("a")]}));
    assert!(
        found[0].ends_with(
            "$.routes[0].replace.services.ui5: `ui5` is both a variable in `vars` and a service"
        ),
        "{found:#?}"
    );
    let no_suffix = app(json!({"vars": ["title"]}));
    let found = problems(&no_suffix, json!({}));
    assert!(
        found[0].contains("$.routes[0].replace")
            && found[0].contains("missing field `pathSuffixes`"),
        "{found:#?}"
    );
}
