//! Smaller approuter behaviours through a real router: SAP statistics (`sap-statistics` header
//! or query parameter → `sap-statistics-approuter`), and `x-csrf-token: fetch` on `/` served by
//! the welcome file's route instead of a redirect, with the token for a logged-in user.

mod support;

use serde_json::{Value, json};
use support::browser::Browser;
use support::pki::Pki;
use support::token_service::TokenService;
use support::{Router, WorkDir, client, destinations, upstream};

const CLIENT: &str = "sb-xsrouter!t1";
const APP: &str = "xsrouter!t1";

async fn public_router() -> (Router, upstream::Upstream, WorkDir) {
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "welcomeFile": "web/index.html",
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/web/(.*)$", "target": "$1", "localDir": "web"}
        ]
    }));
    dir.file("web/index.html", "<p>welcome</p>");
    let router = Router::start(
        dir.path(),
        &[("destinations", destinations(&[("backend", backend.url())]))],
    )
    .await;
    (router, backend, dir)
}

async fn echo(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("echo json")
}

fn statistics_value(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("sap-statistics-approuter")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

/// `total=<n>, ext=<m>` with m <= n.
fn parse_statistics(value: &str) -> (u64, u64) {
    let (total, ext) = value.split_once(", ").expect("two parts");
    let total: u64 = total
        .strip_prefix("total=")
        .and_then(|t| t.parse().ok())
        .expect("total");
    let ext: u64 = ext
        .strip_prefix("ext=")
        .and_then(|e| e.parse().ok())
        .expect("ext");
    (total, ext)
}

#[tokio::test]
async fn sap_statistics_by_header_or_query() {
    let (router, _backend, _dir) = public_router().await;
    let response = client()
        .get(router.url("/api/slow/150"))
        .header("sap-statistics", "true")
        .send()
        .await
        .expect("get");
    let value = statistics_value(&response).expect("statistics header");
    let (total, ext) = parse_statistics(&value);
    assert!(ext >= 150 && total >= ext, "{value}");
    let seen = echo(response).await;
    assert_eq!(seen["headers"]["sap-statistics"][0], "true");

    let response = client()
        .get(router.url("/api/x?sap-statistics=true"))
        .send()
        .await
        .expect("get");
    assert!(statistics_value(&response).is_some());
    let seen = echo(response).await;
    assert_eq!(seen["headers"]["sap-statistics"][0], "true");
    assert_eq!(seen["url"], "/x?sap-statistics=true");

    let response = client()
        .get(router.url("/api/x?sap-statistics=false"))
        .send()
        .await
        .expect("get");
    assert!(statistics_value(&response).is_none());
    let seen = echo(response).await;
    assert!(seen["headers"]["sap-statistics"].is_null());

    // Local files are not measured (approuter reports backend calls only).
    let response = client()
        .get(router.url("/web/index.html"))
        .header("sap-statistics", "true")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(statistics_value(&response).is_none());
}

#[tokio::test]
async fn csrf_fetch_on_the_root_is_served_by_the_welcome_route() {
    let (router, _backend, _dir) = public_router().await;
    let redirect = client().get(router.url("/")).send().await.expect("get");
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "/web/index.html");
    let fetched = client()
        .get(router.url("/"))
        .header("x-csrf-token", "Fetch")
        .send()
        .await
        .expect("get");
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.text().await.expect("body"), "<p>welcome</p>");
}

#[tokio::test]
async fn csrf_fetch_on_the_root_returns_the_session_token() {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.set_login_user("alice", &["openid"]);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "welcomeFile": "/app/home",
        "routes": [{"source": "^/app/(.*)$", "target": "/$1", "destination": "backend"}]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", destinations(&[("backend", backend.url())])),
        ],
    )
    .await;
    let mut browser = Browser::default();
    let home = browser.login(&router, "/app/home").await;
    assert_eq!(home.status(), 200);
    let fetched = browser
        .get(&router.url("/"), &[("x-csrf-token", "fetch")])
        .await;
    assert_eq!(fetched.status(), 200);
    let token = fetched.headers()["x-csrf-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(token.len() >= 16, "{token}");
    let seen = echo(fetched).await;
    assert_eq!(seen["url"], "/home");
    // The token is the session's: a POST with it is accepted.
    let posted = browser
        .send(
            client().post(router.url("/app/save")).body("x"),
            &[("x-csrf-token", &token)],
        )
        .await;
    assert_eq!(posted.status(), 200);
    // Without a session the fetch still needs a login.
    let anonymous = client()
        .get(router.url("/"))
        .header("x-csrf-token", "fetch")
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn user_api_answers_from_the_login_token() {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.set_login_user("alice", &["openid", &format!("{APP}.Read")]);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/user-api(.*)", "target": "$1", "service": "sap-approuter-userapi"},
            {"source": "^/app/(.*)$", "target": "/$1", "destination": "backend"}
        ]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", destinations(&[("backend", backend.url())])),
        ],
    )
    .await;
    let anonymous = client()
        .get(router.url("/user-api/currentUser"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);

    let mut browser = Browser::default();
    let current = browser.login(&router, "/user-api/currentUser").await;
    assert_eq!(current.status(), 200);
    assert_eq!(
        current.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let user = echo(current).await;
    assert_eq!(user["firstname"], "alice");
    assert_eq!(user["lastname"], "Test");
    assert_eq!(user["email"], "alice@test.example");
    assert_eq!(user["name"], "alice");
    assert_eq!(user["displayName"], "alice Test (alice)");
    let scopes = user["scopes"].as_array().expect("scopes");
    assert!(scopes.contains(&json!(format!("{APP}.Read"))), "{scopes:?}");

    let attributes = echo(browser.get(&router.url("/user-api/attributes"), &[]).await).await;
    assert_eq!(attributes["name"], "alice");
    assert!(attributes.get("displayName").is_none());

    let other = browser.get(&router.url("/user-api/other"), &[]).await;
    assert_eq!(other.status(), 404);
    assert_eq!(backend.observed.paths.lock().expect("paths").len(), 0);
}
