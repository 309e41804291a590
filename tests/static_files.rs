//! Local files (`localDir` routes) through a real router: content types, caching headers and
//! validators, methods, directories, the implicit `resources` route, the welcome file, and
//! paths that try to leave the directory (sent raw, since clients normalize dot segments).

mod support;

use http::HeaderMap;
use serde_json::{Value, json};
use support::{RawResponse, Router, WorkDir, client, raw_get, raw_request};

/// Content of a file that lies next to `resources/`, outside every served directory.
const SECRET: &str = "TOP-SECRET-5e1f0c: never served";
const INDEX: &str = "<!doctype html><h1>home</h1>";
const SUB_INDEX: &str = "<p>sub index</p>";
const PAGE: &str = "<p>a page</p>";
const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0];

/// A working directory with `resources/` full of files and `secret.txt` outside it.
fn site(xs_app: &Value) -> WorkDir {
    let dir = WorkDir::new(xs_app);
    dir.file("secret.txt", SECRET);
    dir.file("resources/index.html", INDEX);
    dir.file("resources/style.css", "body { color: red }");
    dir.file("resources/data.json", r#"{"a": 1}"#);
    dir.file("resources/logo.png", PNG);
    dir.file("resources/blob.unknownext", "???");
    dir.file("resources/hello.txt", "hello");
    dir.file("resources/sub/index.html", SUB_INDEX);
    dir.file("resources/sub/page.html", PAGE);
    std::fs::create_dir_all(dir.path().join("resources/empty")).expect("empty dir");
    dir
}

/// Routes over `resources/`: one with `cacheControl`, one with target rewriting, a catch-all.
fn routes() -> Value {
    json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/cached/(.*)$", "target": "$1", "localDir": "resources",
             "cacheControl": "public, max-age=3600, immutable"},
            {"source": "^/web/(.*)$", "target": "$1", "localDir": "resources"},
            {"source": "^/(.*)$", "localDir": "resources"}
        ]
    })
}

async fn start(dir: &WorkDir) -> Router {
    Router::start(dir.path(), &[]).await
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    let answer = Answer {
        status,
        headers,
        body,
    };
    assert_eq!(
        answer.header("x-frame-options"),
        Some("SAMEORIGIN"),
        "every router response carries x-frame-options (status {status})"
    );
    answer
}

async fn get(router: &Router, path: &str) -> Answer {
    send(client().get(router.url(path))).await
}

/// Checks a raw answer: the frame option is set and the secret is nowhere in it.
fn assert_safe(path: &str, response: &RawResponse) {
    assert!(
        !String::from_utf8_lossy(&response.body).contains(SECRET)
            && !response.head.contains(SECRET),
        "{path} leaked the secret: {response:?}"
    );
    assert_eq!(
        response.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN"),
        "{path}: {response:?}"
    );
}

#[tokio::test]
async fn content_types_follow_the_extension() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for (path, content_type, body) in [
        (
            "/index.html",
            "text/html; charset=UTF-8",
            INDEX.as_bytes().to_vec(),
        ),
        (
            "/style.css",
            "text/css; charset=UTF-8",
            b"body { color: red }".to_vec(),
        ),
        (
            "/data.json",
            "application/json; charset=UTF-8",
            br#"{"a": 1}"#.to_vec(),
        ),
        ("/logo.png", "image/png", PNG.to_vec()),
        (
            "/blob.unknownext",
            "application/octet-stream",
            b"???".to_vec(),
        ),
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            answer.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(answer.body, body, "{path}");
    }
}

#[tokio::test]
async fn cache_control_comes_from_the_route() {
    let dir = site(&routes());
    let router = start(&dir).await;
    let answer = get(&router, "/cached/style.css").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "body { color: red }");
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=3600, immutable")
    );
    // The route's value holds for HEAD and for 304 answers as well.
    let head = send(client().head(router.url("/cached/style.css"))).await;
    assert_eq!(
        head.header("cache-control"),
        Some("public, max-age=3600, immutable")
    );
    let etag = answer.header("etag").expect("etag").to_owned();
    let not_modified = send(
        client()
            .get(router.url("/cached/style.css"))
            .header("if-none-match", etag),
    )
    .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(
        not_modified.header("cache-control"),
        Some("public, max-age=3600, immutable")
    );
    // Another route over the same directory does not inherit it.
    let other = get(&router, "/web/style.css").await;
    assert_eq!(other.status, 200);
    assert_ne!(
        other.header("cache-control"),
        Some("public, max-age=3600, immutable")
    );
}

/// Observed on approuter 23.0.0: a `localDir` route without `cacheControl` sends no
/// Cache-Control at all (validators only); xsrouter does the same.
#[tokio::test]
async fn without_cache_control_no_header_is_sent_as_in_approuter() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for path in ["/style.css", "/web/index.html", "/web/sub/"] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("cache-control"), None, "{path}");
        assert!(answer.header("etag").is_some(), "{path}");
    }
}

#[tokio::test]
async fn validators_and_conditional_requests() {
    let dir = site(&routes());
    let router = start(&dir).await;
    let first = get(&router, "/hello.txt").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "hello");
    let etag = first.header("etag").expect("ETag").to_owned();
    assert!(
        etag.starts_with("W/\"") && etag.ends_with('"') && etag.len() > 5,
        "{etag}"
    );
    let last_modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let modified = httpdate::parse_http_date(&last_modified).expect("an HTTP date");
    let on_disk = std::fs::metadata(dir.path().join("resources/hello.txt"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        httpdate::fmt_http_date(modified),
        httpdate::fmt_http_date(on_disk)
    );
    // The same file gives the same validator.
    assert_eq!(
        get(&router, "/hello.txt").await.header("etag"),
        Some(etag.as_str())
    );

    for inm in [
        etag.clone(),
        etag.trim_start_matches("W/").to_owned(),
        "\"nope\", ".to_owned() + &etag,
        "*".to_owned(),
    ] {
        let answer = send(
            client()
                .get(router.url("/hello.txt"))
                .header("if-none-match", &inm),
        )
        .await;
        assert_eq!(answer.status, 304, "If-None-Match: {inm}");
        assert!(answer.body.is_empty(), "a 304 has no body");
        assert_eq!(answer.header("etag"), Some(etag.as_str()));
        assert_eq!(answer.header("last-modified"), Some(last_modified.as_str()));
    }
    let changed = send(
        client()
            .get(router.url("/hello.txt"))
            .header("if-none-match", "W/\"0-0\""),
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.text(), "hello");

    let since = send(
        client()
            .get(router.url("/hello.txt"))
            .header("if-modified-since", &last_modified),
    )
    .await;
    assert_eq!(since.status, 304);
    assert!(since.body.is_empty());
    let older = httpdate::fmt_http_date(modified - std::time::Duration::from_secs(3600));
    let stale = send(
        client()
            .get(router.url("/hello.txt"))
            .header("if-modified-since", older),
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "hello");

    // Changing the file changes the validator.
    dir.file("resources/hello.txt", "hello, changed");
    let after = send(
        client()
            .get(router.url("/hello.txt"))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(after.status, 200);
    assert_eq!(after.text(), "hello, changed");
    assert_ne!(after.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    let dir = site(&routes());
    let router = start(&dir).await;
    let response = raw_request(
        router.addr,
        b"HEAD /data.json HTTP/1.1\r\nHost: router.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.is_empty(), "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(
        response.header("content-length").as_deref(),
        Some(r#"{"a": 1}"#.len().to_string().as_str())
    );
    assert!(response.header("etag").is_some(), "{response:?}");
    assert!(response.header("last-modified").is_some(), "{response:?}");
    assert_eq!(
        response.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    let get = get(&router, "/data.json").await;
    assert_eq!(get.header("etag"), response.header("etag").as_deref());

    let missing = send(client().head(router.url("/nope.txt"))).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty());
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let dir = site(&routes());
    let router = start(&dir).await;
    let c = client();
    for (method, path) in [
        (reqwest::Method::POST, "/hello.txt"),
        (reqwest::Method::PUT, "/hello.txt"),
        (reqwest::Method::DELETE, "/hello.txt"),
        (reqwest::Method::PATCH, "/web/hello.txt"),
        (reqwest::Method::OPTIONS, "/cached/hello.txt"),
        // Even where there is no file.
        (reqwest::Method::POST, "/nope.txt"),
    ] {
        let answer = send(c.request(method.clone(), router.url(path)).body("x")).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
        assert_eq!(answer.text(), "Method Not Allowed\n", "{method} {path}");
    }
    // The file is untouched.
    assert_eq!(get(&router, "/hello.txt").await.text(), "hello");
}

#[tokio::test]
async fn directories_redirect_to_the_slash_and_serve_their_index() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for (path, location) in [
        ("/sub", "/sub/"),
        ("/sub?x=1&y=%20", "/sub/?x=1&y=%20"),
        ("/web/sub", "/web/sub/"),
        ("/web/sub?lang=de", "/web/sub/?lang=de"),
        ("/empty", "/empty/"),
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 301, "{path}");
        assert_eq!(answer.header("location"), Some(location), "{path}");
    }
    for (path, body) in [
        ("/sub/", SUB_INDEX),
        ("/sub/?x=1", SUB_INDEX),
        ("/web/sub/", SUB_INDEX),
        ("/web/", INDEX),
        ("/cached/sub/", SUB_INDEX),
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.text(), body, "{path}");
        assert_eq!(
            answer.header("content-type"),
            Some("text/html; charset=UTF-8"),
            "{path}"
        );
    }
    // A directory without index.html is not listed.
    let answer = get(&router, "/empty/").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.text(), "Not Found\n");
}

#[tokio::test]
async fn missing_files_are_not_found() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for path in [
        "/nope.html",
        "/sub/nope.html",
        "/web/nope",
        "/hello.txt/more",
        "/nodir/",
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.text(), "Not Found\n", "{path}");
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn target_rewriting_picks_the_file() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for (path, body) in [
        ("/web/sub/page.html", PAGE),
        ("/web/sub/page.html?v=1&x=/y", PAGE),
        ("/web/hello.txt", "hello"),
        ("/sub/page.html", PAGE),
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.text(), body, "{path}");
    }
    // The rewritten path is used as is: `/web/web/...` looks for resources/web/...
    assert_eq!(get(&router, "/web/web/hello.txt").await.status, 404);
}

#[tokio::test]
async fn implicit_resources_route_without_local_dir_routes() {
    let dir = site(&json!({"authenticationMethod": "none", "routes": []}));
    let router = start(&dir).await;
    let answer = get(&router, "/hello.txt").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello");
    let answer = get(&router, "/sub/page.html?x=1").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), PAGE);
    let answer = get(&router, "/sub").await;
    assert_eq!(answer.status, 301);
    assert_eq!(answer.header("location"), Some("/sub/"));
    // Only resources/ is served, not the working directory.
    for path in ["/secret.txt", "/xs-app.json", "/resources/hello.txt"] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(!answer.text().contains(SECRET));
    }
    // xs-app.json may leave out `routes` entirely.
    let dir = site(&json!({"authenticationMethod": "none"}));
    let router = start(&dir).await;
    assert_eq!(get(&router, "/hello.txt").await.text(), "hello");
}

#[tokio::test]
async fn no_implicit_resources_route_once_a_route_has_local_dir() {
    let dir = site(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/only/(.*)$", "target": "$1", "localDir": "resources/sub"}]
    }));
    let router = start(&dir).await;
    assert_eq!(get(&router, "/only/page.html").await.text(), PAGE);
    let answer = get(&router, "/hello.txt").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.text(), "Not Found\n");
}

#[tokio::test]
async fn the_implicit_route_requires_login_unless_authentication_is_off() {
    // Without `authenticationMethod: none` the implicit route is an XSUAA route, which answers
    // 401 while login is not available: files are never served unauthenticated by accident.
    let dir = site(&json!({"routes": []}));
    let router = start(&dir).await;
    let answer = get(&router, "/hello.txt").await;
    assert_eq!(answer.status, 401);
    assert!(!answer.text().contains("hello"));
}

#[tokio::test]
async fn welcome_file_redirects_the_root() {
    for welcome in ["index.html", "/index.html"] {
        let dir = site(&json!({
            "authenticationMethod": "none",
            "welcomeFile": welcome,
            "routes": [{"source": "^/(.*)$", "localDir": "resources"}]
        }));
        let router = start(&dir).await;
        for path in ["/", "/?a=1", "/?redirect=//evil.example"] {
            let answer = get(&router, path).await;
            assert_eq!(answer.status, 302, "{welcome} {path}");
            assert_eq!(
                answer.header("location"),
                Some("/index.html"),
                "{welcome} {path}"
            );
            assert!(answer.body.is_empty(), "{welcome} {path}");
        }
        let answer = get(&router, "/index.html").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), INDEX);
        // Only the root redirects.
        assert_eq!(get(&router, "/hello.txt").await.text(), "hello");
    }
}

#[tokio::test]
async fn welcome_file_never_redirects_to_another_host() {
    let dir = site(&json!({
        "authenticationMethod": "none",
        "welcomeFile": "//evil.example/x",
        "routes": [{"source": "^/(.*)$", "localDir": "resources"}]
    }));
    let router = start(&dir).await;
    let answer = get(&router, "/").await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.header("location"), Some("/evil.example/x"));
}

#[tokio::test]
async fn hostile_paths_are_bad_requests() {
    let dir = site(&routes());
    let router = start(&dir).await;
    for path in [
        "/../x",
        "/../secret.txt",
        "/%2e%2e/x",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/a/%2e%2e/b",
        "/a/%2e%2e/%2e%2e/secret.txt",
        "/%252e%252e/x",
        "/%252e%252e/secret.txt",
        "/%2f..%2fetc/passwd",
        "/%2f..%2fsecret.txt",
        "/..%5c..%5cetc",
        "/..%5csecret.txt",
        "/a%00b",
        "/hello.txt%00.png",
        "/%25252e%25252e/secret",
        "/%25252e%25252e/secret.txt",
        "/web/../secret.txt",
        "/web/%2e%2e/secret.txt",
        "/web/..%2fsecret.txt",
        "/web/sub/..%252f..%252fsecret.txt",
        "/cached/%2e%2e/secret.txt",
        "/sub/./page.html",
        "/sub/%2e/page.html",
    ] {
        let response = raw_get(router.addr, path).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            "Bad Request: invalid path\n",
            "{path}"
        );
        assert_safe(path, &response);
    }
}

#[tokio::test]
async fn encoded_slashes_and_backslashes_stay_inside_the_directory() {
    let dir = site(&routes());
    let router = start(&dir).await;
    // An encoded slash is only an empty segment: it cannot make the path absolute.
    let secret = dir.path().join("secret.txt");
    let absolute = secret
        .to_str()
        .expect("UTF-8 temp path")
        .replace('/', "%2F");
    let cases = [
        (format!("/{absolute}"), 404),
        (format!("/web/{absolute}"), 404),
        ("/%2fsecret.txt".to_owned(), 404),
        ("/web/%2fsecret.txt".to_owned(), 404),
        ("/%2F%2Fsecret.txt".to_owned(), 404),
        ("/%5csecret.txt".to_owned(), 400),
        ("/%5c..%5csecret.txt".to_owned(), 400),
        ("/sub%5c..%5c..%5csecret.txt".to_owned(), 400),
        ("/web/%5csecret.txt".to_owned(), 400),
    ];
    for (path, status) in &cases {
        let response = raw_get(router.addr, path).await;
        assert_eq!(response.status, *status, "{path}: {response:?}");
        assert_safe(path, &response);
    }
    // An encoded slash between names still finds the file.
    let response = raw_get(router.addr, "/sub%2fpage.html").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(String::from_utf8_lossy(&response.body), PAGE);
    // Raw backslashes count as separators for the dot-segment check.
    for path in [
        "/..\\secret.txt",
        "/\\..\\secret.txt",
        "/sub\\..\\..\\secret.txt",
    ] {
        let response = raw_get(router.addr, path).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert_safe(path, &response);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_may_not_lead_out_of_the_directory() {
    let dir = site(&routes());
    let resources = dir.path().join("resources");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), resources.join("escape.txt"))
        .expect("file symlink");
    std::os::unix::fs::symlink(dir.path(), resources.join("up")).expect("dir symlink");
    std::os::unix::fs::symlink("../secret.txt", resources.join("relative.txt"))
        .expect("relative symlink");
    std::os::unix::fs::symlink(resources.join("hello.txt"), resources.join("inside.txt"))
        .expect("inner symlink");
    let router = start(&dir).await;
    for path in [
        "/escape.txt",
        "/relative.txt",
        "/up/secret.txt",
        "/web/escape.txt",
        "/web/up/secret.txt",
        "/up/",
    ] {
        let answer = get(&router, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.text(), "Not Found\n", "{path}");
        // Not even the length of the file leaks.
        assert_ne!(
            answer.header("content-length"),
            Some(SECRET.len().to_string().as_str()),
            "{path}"
        );
    }
    let head = send(client().head(router.url("/escape.txt"))).await;
    assert_eq!(head.status, 404);
    // A symlink that stays inside is an ordinary file.
    let answer = get(&router, "/inside.txt").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello");
}
