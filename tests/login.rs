//! Browser login and what it unlocks, end to end: authorization code + state + PKCE against the
//! XSUAA-compatible test token service, sessions, CSRF, scopes, service-to-router tokens,
//! exchanged tokens for destinations, and logout.

mod support;

use serde_json::{Value, json};
use support::browser::{Browser, bearer, echo, location};
use support::pki::Pki;
use support::token_service::TokenService;
use support::{Router, WorkDir, client, upstream};

const CLIENT: &str = "sb-xsrouter!t1";
const APP: &str = "xsrouter!t1";

struct Setup {
    ts: TokenService,
    backend: upstream::Upstream,
    router: Router,
    _dir: WorkDir,
}

async fn setup(extra_env: &[(&'static str, String)]) -> Setup {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.register_client("exchange-client", Some("x-secret"), None);
    ts.set_login_user("alice", &[&format!("{APP}.Read"), "openid"]);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/app/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Read"},
            {"source": "^/admin/(.*)$", "target": "/$1", "destination": "backend", "scope": {"GET": "$XSAPPNAME.Read", "default": "$XSAPPNAME.Admin"}},
            {"source": "^/exchange/(.*)$", "target": "/$1", "destination": "exchanged", "csrfProtection": false},
            {"source": "^/dyn/(.*)$", "target": "/$1", "destination": "backend", "dynamicIdentityProvider": true, "identityProvider": "default-idp"}
        ],
        "logout": {"logoutEndpoint": "/do/logout", "logoutPage": "/bye.html", "logoutMethod": "GET"},
        "destinations": {"backend": {"logoutPath": "/session/end", "logoutMethod": "GET"}}
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
    let destinations = json!([
        {"name": "backend", "url": backend.url(), "forwardAuthToken": true},
        {"name": "exchanged", "url": backend.url(), "authentication": "OAuth2JWTBearer",
         "tokenServiceURL": format!("{}/oauth/token", ts.url), "clientId": "exchange-client", "clientSecret": "x-secret"}
    ]);
    let mut env = vec![
        ("VCAP_SERVICES", vcap.to_string()),
        ("destinations", destinations.to_string()),
    ];
    env.extend(extra_env.iter().cloned());
    let router = Router::start(dir.path(), &env).await;
    Setup {
        ts,
        backend,
        router,
        _dir: dir,
    }
}

#[tokio::test]
async fn browser_login_with_state_and_pkce_then_the_backend_gets_the_user_token() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    let answer = echo(browser.login(&s.router, "/app/orders?top=5").await).await;
    assert_eq!(answer["url"], "/orders?top=5");
    let token = bearer(&answer);
    assert_eq!(s.ts.claims(&token)["user_name"], "alice");
    let authorize = &s.ts.authorize_requests()[0];
    assert_eq!(
        authorize.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(authorize.contains_key("state") && authorize.contains_key("code_challenge"));
    let redeem =
        s.ts.requests()
            .into_iter()
            .find(|r| r.grant_type() == Some("authorization_code"))
            .expect("code redeemed");
    assert!(redeem.form.contains_key("code_verifier"));
    // The session cookie is HttpOnly, and the router's cookies never reach the backend.
    assert!(
        !answer["headers"]["cookie"]
            .to_string()
            .contains("JSESSIONID")
    );
}

#[tokio::test]
async fn forged_or_mixed_callbacks_are_refused() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    let start = browser.get(&s.router.url("/app/x"), &[]).await;
    let authorize = location(&start);
    let idp = browser.get(&authorize, &[]).await;
    let callback = location(&idp);
    // Same code, wrong state.
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(browser.get(&tampered, &[]).await.status(), 401);
    // The pending login was consumed: even the right callback is refused now.
    assert_eq!(browser.get(&callback, &[]).await.status(), 401);
    // No login cookie at all.
    let stranger = client().get(&callback).send().await.expect("send");
    assert_eq!(stranger.status(), 400);
    assert!(!browser.cookies.contains_key("JSESSIONID"));
}

#[tokio::test]
async fn pkce_binds_the_code_to_the_browser_that_started_the_login() {
    // Without state, a code from one login presented with another browser's login cookie is
    // redeemed with the wrong verifier, which the token service refuses.
    let s = setup(&[("STATE_PARAMETER_SECRET", "false".to_owned())]).await;
    let mut victim = Browser::default();
    let mut attacker = Browser::default();
    let victim_start = victim.get(&s.router.url("/app/x"), &[]).await;
    let _attacker_start = attacker.get(&s.router.url("/app/x"), &[]).await;
    let idp = victim.get(&location(&victim_start), &[]).await;
    let callback = location(&idp);
    let response = attacker.get(&callback, &[]).await;
    assert_eq!(response.status(), 401);
    assert!(!attacker.cookies.contains_key("JSESSIONID"));
}

#[tokio::test]
async fn denied_login_is_403() {
    let s = setup(&[]).await;
    s.ts.set_login_denied(true);
    let mut browser = Browser::default();
    let start = browser.get(&s.router.url("/app/x"), &[]).await;
    let idp = browser.get(&location(&start), &[]).await;
    assert_eq!(browser.get(&location(&idp), &[]).await.status(), 403);
}

#[tokio::test]
async fn csrf_fetch_accept_and_reject() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    echo(browser.login(&s.router, "/app/x").await).await;
    let url = s.router.url("/app/x");
    let denied = browser.send(client().post(&url), &[]).await;
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["x-csrf-token"], "Required");
    let fetched = browser.get(&url, &[("x-csrf-token", "Fetch")]).await;
    let token = fetched.headers()["x-csrf-token"]
        .to_str()
        .expect("token")
        .to_owned();
    assert!(token.len() >= 20);
    let wrong = browser
        .send(client().post(&url), &[("x-csrf-token", "not-the-token")])
        .await;
    assert_eq!(wrong.status(), 403);
    let accepted = echo(
        browser
            .send(client().post(&url).body("x"), &[("x-csrf-token", &token)])
            .await,
    )
    .await;
    assert_eq!(accepted["method"], "POST");
    assert_eq!(
        accepted["headers"]["x-csrf-token"],
        Value::Null,
        "the token stays with the router"
    );
    // The same token keeps working for the session.
    let again = browser.get(&url, &[("x-csrf-token", "fetch")]).await;
    assert_eq!(again.headers()["x-csrf-token"], token.as_str());
}

#[tokio::test]
async fn scopes_grant_and_deny() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    echo(browser.login(&s.router, "/admin/x").await).await; // GET needs Read: granted
    let fetched = browser
        .get(&s.router.url("/admin/x"), &[("x-csrf-token", "fetch")])
        .await;
    let token = fetched.headers()["x-csrf-token"]
        .to_str()
        .expect("token")
        .to_owned();
    let denied = browser
        .send(
            client().delete(s.router.url("/admin/x")),
            &[("x-csrf-token", &token)],
        )
        .await;
    assert_eq!(denied.status(), 403, "DELETE needs Admin");
}

#[tokio::test]
async fn service_to_router_tokens() {
    let s = setup(&[]).await;
    let url = s.router.url("/app/svc");
    let call = |token: String| {
        client()
            .get(&url)
            .header("x-approuter-authorization", format!("Bearer {token}"))
            .send()
    };
    let good =
        s.ts.issue_user_token("svc-user", CLIENT, &[&format!("{APP}.Read")], 600);
    let answer = echo(call(good.clone()).await.expect("send")).await;
    assert_eq!(
        bearer(&answer),
        good,
        "forwardAuthToken passes the validated token"
    );
    assert_eq!(answer["headers"]["x-approuter-authorization"], Value::Null);

    let expired =
        s.ts.issue_user_token("svc-user", CLIENT, &[&format!("{APP}.Read")], 0);
    let claims = s.ts.claims(&good);
    let mut forged_claims = claims.clone();
    forged_claims["user_name"] = "mallory".into();
    let foreign = TokenService::sign_with_foreign_key(&forged_claims);
    let wrong_audience = s.ts.issue_user_token_with(
        "svc-user",
        "other-client",
        &["other!t9.Read"],
        600,
        &["other-client"],
        None,
    );
    let wrong_issuer = s.ts.issue_user_token_with(
        "svc-user",
        CLIENT,
        &[&format!("{APP}.Read")],
        600,
        &[CLIENT],
        Some("https://evil.example/oauth/token"),
    );
    for (name, token) in [
        ("expired", expired),
        ("foreign key", foreign),
        ("audience", wrong_audience),
        ("issuer", wrong_issuer),
    ] {
        assert_eq!(call(token).await.expect("send").status(), 401, "{name}");
    }
    let not_bearer = client()
        .get(&url)
        .header("x-approuter-authorization", "Basic dTpw")
        .send()
        .await
        .expect("send");
    assert_eq!(not_bearer.status(), 400);
    // Missing scope with a valid token.
    let unscoped = s.ts.issue_user_token("svc-user", CLIENT, &["openid"], 600);
    assert_eq!(call(unscoped).await.expect("send").status(), 403);
    assert_eq!(
        s.backend.connections(),
        1,
        "only the good call reached the backend"
    );
}

#[tokio::test]
async fn the_users_token_is_exchanged_for_jwt_bearer_destinations() {
    let s = setup(&[]).await;
    let mut alice = Browser::default();
    let answer = echo(alice.login(&s.router, "/exchange/a").await).await;
    let exchanged = bearer(&answer);
    let claims = s.ts.claims(&exchanged);
    assert_eq!(claims["user_name"], "alice");
    assert_eq!(claims["cid"], "exchange-client");

    s.ts.set_login_user("bob", &[&format!("{APP}.Read")]);
    let mut bob = Browser::default();
    let answer = echo(bob.login(&s.router, "/exchange/b").await).await;
    assert_eq!(s.ts.claims(&bearer(&answer))["user_name"], "bob");
    // Alice again: her cached exchanged token, not Bob's.
    let again = echo(alice.get(&s.router.url("/exchange/c"), &[]).await).await;
    assert_eq!(bearer(&again), exchanged);
}

#[tokio::test]
async fn logout_ends_the_session_and_visits_the_identity_provider() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    echo(browser.login(&s.router, "/app/x").await).await;
    let session = browser.cookies["JSESSIONID"].clone();
    let out = browser.get(&s.router.url("/do/logout"), &[]).await;
    assert_eq!(out.status(), 302);
    let idp_logout = location(&out);
    assert!(
        idp_logout.starts_with(&format!("{}/logout.do?", s.ts.url)),
        "{idp_logout}"
    );
    assert!(
        idp_logout.contains(&urlencode(&s.router.url("/bye.html"))),
        "{idp_logout}"
    );
    assert!(
        !browser.cookies.contains_key("JSESSIONID"),
        "the cookie is cleared"
    );
    // The old session id is dead even if replayed.
    let replay = client()
        .get(s.router.url("/app/x"))
        .header("cookie", format!("JSESSIONID={session}"))
        .send()
        .await
        .expect("send");
    assert_eq!(replay.status(), 302, "back to login");
    // The backend's logoutPath was called (in the background) with the user's token.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let called = || {
        s.backend
            .observed
            .paths
            .lock()
            .expect("lock")
            .iter()
            .any(|(p, _)| p == "/session/end")
    };
    while !called() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend logout was never called"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls = s.backend.observed.paths.lock().expect("lock").clone();
    let (path, authorization) = calls
        .iter()
        .find(|(p, _)| p == "/session/end")
        .expect("logout call")
        .clone();
    assert_eq!(path, "/session/end");
    assert_eq!(
        s.ts.claims(authorization.trim_start_matches("Bearer "))["user_name"],
        "alice"
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn backend_session_cookies_stay_in_the_session() {
    let s = setup(&[]).await;
    let mut browser = Browser::default();
    echo(browser.login(&s.router, "/app/x").await).await;
    // The test backend's /headers answers with `Set-Cookie: backend=1; Path=/` (a session cookie).
    let response = browser.get(&s.router.url("/app/headers"), &[]).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("set-cookie")
            .is_none_or(|v| !v.to_str().unwrap_or("").contains("backend=1")),
        "kept from the browser: {:?}",
        response.headers()
    );
    assert!(!browser.cookies.contains_key("backend"));
    // ...and replayed to the same destination.
    let answer = echo(browser.get(&s.router.url("/app/x"), &[]).await).await;
    assert_eq!(answer["headers"]["cookie"][0], "backend=1");
    // Another browser's session has no such cookie.
    let mut other = Browser::default();
    let answer = echo(other.login(&s.router, "/app/y").await).await;
    assert_eq!(answer["headers"]["cookie"], Value::Null);
}

#[tokio::test]
async fn sap_idp_picks_the_identity_provider_only_where_allowed() {
    let s = setup(&[]).await;
    let idp_of = |location: &str| {
        url::Url::parse(location)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "idp")
            .map(|(_, v)| v.into_owned())
    };
    let dynamic = client()
        .get(s.router.url("/dyn/x?sap_idp=corp-idp&a=1"))
        .send()
        .await
        .expect("send");
    assert_eq!(idp_of(&location(&dynamic)).as_deref(), Some("corp-idp"));
    let fixed = client()
        .get(s.router.url("/dyn/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(idp_of(&location(&fixed)).as_deref(), Some("default-idp"));
    let not_allowed = client()
        .get(s.router.url("/app/x?sap_idp=corp-idp"))
        .send()
        .await
        .expect("send");
    assert_eq!(idp_of(&location(&not_allowed)), None);
    // After login the parameter is not passed on to the backend.
    let mut browser = Browser::default();
    let answer = echo(
        browser
            .login(&s.router, "/dyn/y?sap_idp=corp-idp&a=1")
            .await,
    )
    .await;
    assert_eq!(answer["url"], "/y?a=1");
}

#[tokio::test]
async fn the_login_token_is_refreshed_before_it_expires() {
    let s = setup(&[]).await;
    s.ts.set_expires_in(4); // renewed from halfway: after 2 s
    let mut browser = Browser::default();
    let first = bearer(&echo(browser.login(&s.router, "/app/a").await).await);
    let same = bearer(&echo(browser.get(&s.router.url("/app/b"), &[]).await).await);
    assert_eq!(
        same, first,
        "no refresh in the first half of the token's life"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let refreshed = bearer(&echo(browser.get(&s.router.url("/app/c"), &[]).await).await);
    assert_ne!(refreshed, first);
    assert_eq!(s.ts.claims(&refreshed)["user_name"], "alice");
    let refreshes =
        s.ts.requests()
            .iter()
            .filter(|r| r.grant_type() == Some("refresh_token"))
            .count();
    assert_eq!(refreshes, 1);
    // The refreshed token is kept: the next request uses it without another refresh.
    assert_eq!(
        bearer(&echo(browser.get(&s.router.url("/app/d"), &[]).await).await),
        refreshed
    );
}

#[tokio::test]
async fn ias_login_and_ias_dependency_exchange_through_the_router() {
    let pki = Pki::new("IAS Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client("ias-app", Some("ias-secret"), None);
    ts.set_login_user("carol", &["openid"]);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/ias/(.*)$", "target": "/$1", "destination": "orders", "authenticationType": "ias"}]
    }));
    let vcap = json!({"identity": [{"name": "ias", "label": "identity", "credentials": {
        "clientid": "ias-app", "clientsecret": "ias-secret", "url": ts.url}}]});
    let destinations =
        json!([{"name": "orders", "url": backend.url(), "IASDependencyName": "orders-api"}]);
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", destinations.to_string()),
        ],
    )
    .await;
    let mut browser = Browser::default();
    let answer = echo(browser.login(&router, "/ias/list").await).await;
    let authorize = &ts.authorize_requests()[0];
    assert_eq!(
        authorize.get("scope").map(String::as_str),
        Some("openid"),
        "IAS login asks for openid"
    );
    let exchanged = bearer(&answer);
    let claims = ts.claims(&exchanged);
    assert_eq!(claims["user_name"], "carol");
    assert!(
        claims["aud"]
            .as_array()
            .expect("aud")
            .iter()
            .any(|a| a == "orders-api"),
        "{claims}"
    );
    let exchange = ts
        .requests()
        .into_iter()
        .find(|r| r.form.contains_key("resource"))
        .expect("exchange request");
    assert_eq!(
        exchange.form.get("resource").map(String::as_str),
        Some("urn:sap:identity:application:provider:name:orders-api")
    );
}

#[tokio::test]
async fn business_service_routes_exchange_the_users_token() {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.register_client("orders-uaa", Some("orders-secret"), None);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/orders/(.*)$", "target": "/$1", "service": "com.test.orders", "endpoint": "api"}]
    }));
    let vcap = json!({
        "xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {"clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}],
        "orders": [{"name": "orders", "label": "orders", "credentials": {"sap.cloud.service": "com.test.orders",
            "endpoints": {"api": backend.url()}, "uaa": {"clientid": "orders-uaa", "clientsecret": "orders-secret", "url": ts.url}}}]
    });
    let router = Router::start(dir.path(), &[("VCAP_SERVICES", vcap.to_string())]).await;
    let mut browser = Browser::default();
    let answer = echo(browser.login(&router, "/orders/items").await).await;
    let claims = ts.claims(&bearer(&answer));
    assert_eq!(claims["cid"], "orders-uaa");
    assert_eq!(
        claims["user_name"], "alice",
        "the user's token was exchanged, not a technical one minted"
    );
    assert_eq!(
        claims["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
}

#[tokio::test]
async fn post_logout_needs_the_csrf_token_and_pkce_can_be_switched_off() {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/app/(.*)$", "target": "/$1", "destination": "backend"}],
        "logout": {"logoutEndpoint": "/logout"}
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {"clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url}}]});
    let env = [
        ("VCAP_SERVICES", vcap.to_string()),
        (
            "destinations",
            json!([{"name": "backend", "url": backend.url()}]).to_string(),
        ),
        ("PKCE_ENABLED", "false".to_owned()),
    ];
    let router = Router::start(dir.path(), &env).await;
    let mut browser = Browser::default();
    echo(browser.login(&router, "/app/x").await).await;
    assert!(
        !ts.authorize_requests()[0].contains_key("code_challenge"),
        "PKCE_ENABLED=false"
    );
    // POST is the default logout method, and it needs the session's CSRF token.
    assert_eq!(browser.get(&router.url("/logout"), &[]).await.status(), 405);
    let refused = browser
        .send(client().post(router.url("/logout")), &[])
        .await;
    assert_eq!(refused.status(), 403);
    let token = browser
        .get(&router.url("/app/x"), &[("x-csrf-token", "fetch")])
        .await
        .headers()["x-csrf-token"]
        .to_str()
        .expect("token")
        .to_owned();
    let out = browser
        .send(
            client().post(router.url("/logout")),
            &[("x-csrf-token", &token)],
        )
        .await;
    assert_eq!(out.status(), 302);
    assert!(!browser.cookies.contains_key("JSESSIONID"));
}
