//! Several router instances sharing sessions through a real Redis (`EXT_SESSION_MGT` with a bound
//! instance, or `REDIS_URL`): log in on one, continue and log out on another, lose an instance,
//! restart Redis, read what Redis holds, and expire idle sessions.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::browser::{Browser, bearer, echo, location};
use support::pki::Pki;
use support::redis::RedisServer;
use support::token_service::TokenService;
use support::{Router, WorkDir, client, upstream};
use xsrouter::auth::redis_store::{RedisStore, SessionCipher};
use xsrouter::auth::session::{Session, SessionStore, UserSession};
use xsrouter::config::session_store::{RedisEndpoint, SessionStoreSettings};

use xsrouter::pipeline::AppState;
use xsrouter::secret::Secret;

const CLIENT: &str = "sb-xsrouter!t1";
const APP: &str = "xsrouter!t1";
const SECRET: &str = "a-session-secret-shared-by-every-instance-0123456789";
const REDIS_PASSWORD: &str = "redis-test-password";

/// The identity provider, a backend, and the router's working directory: everything the
/// instances share except the session store settings.
struct Site {
    ts: TokenService,
    _backend: upstream::Upstream,
    dir: WorkDir,
    vcap: Value,
    destinations: String,
}

impl Site {
    async fn new() -> Self {
        let ts = TokenService::start(&Pki::new("Token Server"), &Pki::new("Client")).await;
        ts.register_client(CLIENT, Some("router-secret"), None);
        ts.set_login_user("alice", &[&format!("{APP}.Read"), "openid"]);
        let backend = upstream::start().await;
        let dir = WorkDir::new(&json!({
            "routes": [
                {"source": "^/app/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Read"}
            ],
            "logout": {"logoutEndpoint": "/do/logout", "logoutMethod": "GET"}
        }));
        let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
            "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
        let destinations =
            json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}])
                .to_string();
        Self {
            ts,
            _backend: backend,
            dir,
            vcap,
            destinations,
        }
    }

    /// The environment of an instance with `EXT_SESSION_MGT` naming the bound instance
    /// `session-redis` (credentials as platforms give them).
    fn ext_session_mgt(&self, redis: &RedisServer, extra: Value) -> Vec<(&'static str, String)> {
        let credentials = json!({"hostname": "127.0.0.1", "port": redis.port,
            "password": REDIS_PASSWORD, "tls": false, "cluster_mode": false});
        self.bound(credentials, extra)
    }

    /// `EXT_SESSION_MGT` (plus `extra` properties) and `session-redis` bound with `credentials`.
    fn bound(&self, credentials: Value, extra: Value) -> Vec<(&'static str, String)> {
        let mut ext = json!({"instanceName": "session-redis", "storageType": "redis", "sessionSecret": SECRET});
        if let (Some(ext), Value::Object(extra)) = (ext.as_object_mut(), extra) {
            ext.extend(extra);
        }
        let mut vcap = self.vcap.clone();
        vcap["redis-cache"] =
            json!([{"name": "session-redis", "label": "redis-cache", "credentials": credentials}]);
        vec![
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", self.destinations.clone()),
            ("EXT_SESSION_MGT", ext.to_string()),
        ]
    }

    /// The environment of an instance with a plain `REDIS_URL`.
    fn redis_url(&self, redis: &RedisServer) -> Vec<(&'static str, String)> {
        vec![
            ("VCAP_SERVICES", self.vcap.to_string()),
            ("destinations", self.destinations.clone()),
            ("REDIS_URL", redis.url()),
            ("XSROUTER_SESSION_SECRET", SECRET.to_owned()),
        ]
    }

    async fn router(&self, env: &[(&'static str, String)]) -> Router {
        Router::start(self.dir.path(), env).await
    }
}

async fn raw_get(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis.connection().await)
        .await
        .expect("GET")
}

async fn exists(redis: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut redis.connection().await)
        .await
        .expect("EXISTS")
        == 1
}

async fn pttl(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut redis.connection().await)
        .await
        .expect("PTTL")
}

async fn keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis.connection().await)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

/// What `AppState::build` says when the router cannot start with `env` (None: it starts).
async fn start_up_error(dir: &std::path::Path, env: Vec<(&'static str, String)>) -> Option<String> {
    let runtime = support::load_runtime(dir, &env).expect("valid configuration");
    AppState::build(runtime).await.err().map(|e| e.to_string())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_on_one_instance_continue_and_log_out_on_another() {
    let redis = RedisServer::with_password(REDIS_PASSWORD).await;
    let site = Site::new().await;
    let env = site.ext_session_mgt(&redis, json!({}));
    let a = site.router(&env).await;
    let b = site.router(&env).await;

    let mut browser = Browser::default();
    let on_a = echo(browser.login(&a, "/app/x").await).await;
    let token = bearer(&on_a);
    assert_eq!(site.ts.claims(&token)["user_name"], "alice");
    let session = browser.session_id();

    // Instance B knows the session: same user, same token, no login.
    let on_b = echo(browser.get(&b.url("/app/y"), &[]).await).await;
    assert_eq!(bearer(&on_b), token);
    assert_eq!(on_b["url"], "/y");

    // A CSRF token fetched on A is accepted on B.
    let fetched = browser
        .get(&a.url("/app/x"), &[("x-csrf-token", "fetch")])
        .await;
    let csrf = fetched.headers()["x-csrf-token"]
        .to_str()
        .expect("csrf token")
        .to_owned();
    let posted = browser
        .send(
            client().post(b.url("/app/x")).body("x"),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(echo(posted).await["method"], "POST");

    // Log out on B: A forgets the session too, and Redis holds nothing for it.
    let out = browser.get(&b.url("/do/logout"), &[]).await;
    assert_eq!(out.status(), 302);
    assert!(!browser.cookies.contains_key("JSESSIONID"));
    let cipher = SessionCipher::new(SECRET).expect("cipher");
    assert!(!exists(&redis, &cipher.redis_key(&session)).await);
    for router in [&a, &b] {
        let replay = client()
            .get(router.url("/app/x"))
            .header("cookie", format!("JSESSIONID={session}"))
            .send()
            .await
            .expect("send");
        assert_eq!(replay.status(), 302, "logged out everywhere: back to login");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_instance_finishes_on_another() {
    let redis = RedisServer::start().await;
    let site = Site::new().await;
    let env = site.redis_url(&redis);
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let start = browser.get(&a.url("/app/x"), &[]).await;
    assert_eq!(start.status(), 302, "login starts on A");
    let nonce = browser.cookies["XSROUTER_LOGIN"].clone();
    let idp = browser.get(&location(&start), &[]).await;
    assert_eq!(idp.status(), 302);
    let callback = location(&idp);
    // Behind one load balancer both instances answer the same URL: here the callback goes to B.
    let on_b = callback.replacen(&a.url("/"), &b.url("/"), 1);
    assert_ne!(on_b, callback);
    let back = browser.get(&on_b, &[]).await;
    assert_eq!(back.status(), 302, "{:?}", back.text().await);
    assert_eq!(location(&back), "/app/x");
    let token = bearer(&echo(browser.get(&a.url("/app/x"), &[]).await).await);
    assert_eq!(site.ts.claims(&token)["user_name"], "alice");

    // The login was taken from Redis: the same callback, with its login cookie, is refused on
    // both instances.
    for router in [&a, &b] {
        let replay = client()
            .get(callback.replacen(&a.url("/"), &router.url("/"), 1))
            .header("cookie", format!("XSROUTER_LOGIN={nonce}"))
            .send()
            .await
            .expect("send");
        assert_eq!(replay.status(), 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_dies_mid_session_and_the_others_carry_on() {
    let redis = RedisServer::start().await;
    let site = Site::new().await;
    let env = site.redis_url(&redis);
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let token = bearer(&echo(browser.login(&a, "/app/x").await).await);
    let a_url = a.url("/app/x");
    drop(a); // no goodbye: its tasks are gone
    assert!(
        client().get(&a_url).send().await.is_err(),
        "instance A is really gone"
    );
    let on_b = echo(browser.get(&b.url("/app/after-a"), &[]).await).await;
    assert_eq!(bearer(&on_b), token);
    // An instance started later (a replacement) knows the session as well.
    let c = site.router(&env).await;
    let on_c = echo(browser.get(&c.url("/app/on-c"), &[]).await).await;
    assert_eq!(bearer(&on_c), token);
    assert_eq!(
        site.ts.requests().len(),
        1,
        "one token request (the login) for all three instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_costs_503s_at_worst_then_sessions_come_back() {
    let mut redis = RedisServer::with_password(REDIS_PASSWORD).await;
    let site = Site::new().await;
    let env = site.ext_session_mgt(
        &redis,
        json!({"defaultRetryTimeout": 300, "backOffMultiplier": 20}),
    );
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let token = bearer(&echo(browser.login(&a, "/app/x").await).await);

    redis.stop();
    for router in [&a, &b] {
        let started = Instant::now();
        let down = browser.get(&router.url("/app/x"), &[]).await;
        assert_eq!(down.status(), 503, "the session store is down");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded retries: {:?}",
            started.elapsed()
        );
        assert!(
            browser.cookies.contains_key("JSESSIONID"),
            "the session cookie is kept"
        );
    }

    redis.restart().await;
    // The routers reconnect by themselves; what Redis acknowledged is still there.
    for router in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let response = browser.get(&router.url("/app/back"), &[]).await;
            match response.status().as_u16() {
                503 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => break echo(response).await,
            }
        };
        assert_eq!(bearer(&answer), token, "same session after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_sealed_sessions_under_opaque_keys_with_a_sliding_ttl() {
    let redis = RedisServer::start().await;
    let site = Site::new().await;
    let mut env = site.redis_url(&redis);
    env.push(("SESSION_TIMEOUT", "1".to_owned()));
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let token = bearer(&echo(browser.login(&a, "/app/x").await).await);
    let session = browser.session_id();

    let cipher = SessionCipher::new(SECRET).expect("cipher");
    let key = cipher.redis_key(&session);
    let all = keys(&redis).await;
    assert_eq!(all, vec![key.clone()], "one key: the session's");
    assert!(
        !key.contains(&session),
        "the key does not reveal the session id"
    );

    let raw = raw_get(&redis, &key).await.expect("a stored session");
    for visible in ["alice", &token, &session, "user_name", "access_token"] {
        assert!(!contains(&raw, visible), "`{visible}` readable in Redis");
    }
    // Only the secret opens it, and only for its own session id.
    let opened = cipher.open(&session, &raw).expect("opens with the secret");
    let user = opened.user.expect("logged in");
    assert_eq!(user.claims["user_name"], "alice");
    assert_eq!(user.access_token.expose(), token);
    let stranger =
        SessionCipher::new("some-other-secret-that-is-long-enough-0123").expect("cipher");
    assert!(
        stranger.open(&session, &raw).is_err(),
        "another secret fails"
    );
    assert!(cipher.open("some-other-session-id", &raw).is_err());

    // TTL = SESSION_TIMEOUT (1 minute), restarted by every use on any instance.
    let fresh = pttl(&redis, &key).await;
    assert!((55_000..=60_000).contains(&fresh), "PTTL {fresh}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let aged = pttl(&redis, &key).await;
    assert!(aged <= fresh - 1500, "PTTL {aged} after waiting");
    echo(browser.get(&b.url("/app/touch"), &[]).await).await;
    let touched = pttl(&redis, &key).await;
    assert!(
        touched >= aged + 1500,
        "PTTL {touched} after a request (was {aged})"
    );
}

fn store_settings(redis: &RedisServer, secret: &str) -> SessionStoreSettings {
    SessionStoreSettings {
        instance: "test-redis".to_owned(),
        redis: RedisEndpoint {
            host: "127.0.0.1".to_owned(),
            port: redis.port,
            username: None,
            password: None,
            db: 0,
            tls: false,
            cluster: false,
            verify_certificate: true,
            verify_hostname: true,
        },
        secret: Secret::new(secret),
        retry_timeout: Duration::from_millis(300),
        backoff_step: Duration::from_millis(20),
    }
}

fn logged_in(user: &str) -> Session {
    let mut session = Session::new();
    // Through serde, as the store sees it: fields added later with defaults need no change here.
    let user: UserSession = serde_json::from_value(json!({
        "access_token": format!("token-of-{user}"), "refresh_token": null, "id_token": null,
        "claims": {"user_name": user}, "expires_at": 4_000_000_000_i64, "provider": "Xsuaa"
    }))
    .expect("a user session");
    session.user = Some(user);
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_from_redis_and_used_ones_live_on() {
    let redis = RedisServer::start().await;
    let idle = Duration::from_millis(1500);
    let store = RedisStore::connect(&store_settings(&redis, SECRET), idle, &[])
        .await
        .expect("store");
    let (used, unused) = (logged_in("alice"), logged_in("bob"));
    let (used_id, unused_id) = (used.id.clone(), unused.id.clone());
    store.save(used).await.expect("save");
    store.save(unused).await.expect("save");
    let unused_key = store.cipher().redis_key(&unused_id);
    assert!(exists(&redis, &unused_key).await);
    let ttl = pttl(&redis, &unused_key).await;
    assert!((1000..=1500).contains(&ttl), "PTTL {ttl}");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store.load(&used_id).await.expect("load").is_some(),
            "a session in use stays"
        );
    }
    assert!(
        !exists(&redis, &unused_key).await,
        "Redis removed the idle session's key"
    );
    assert!(store.load(&unused_id).await.expect("load").is_none());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(keys(&redis).await.is_empty(), "{:?}", keys(&redis).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_stay_ended_and_other_secrets_see_nothing() {
    let redis = RedisServer::start().await;
    let idle = Duration::from_secs(60);
    let store = RedisStore::connect(&store_settings(&redis, SECRET), idle, &[])
        .await
        .expect("store");
    let session = logged_in("alice");
    let id = session.id.clone();
    store.save(session.clone()).await.expect("save");
    let loaded = store.load(&id).await.expect("load").expect("stored");
    assert_eq!(loaded.user.expect("user").claims["user_name"], "alice");

    // Another secret: a different key space, and nothing it can read.
    let other = RedisStore::connect(
        &store_settings(&redis, "a-different-secret-for-another-deployment"),
        idle,
        &[],
    )
    .await
    .expect("store");
    assert!(other.load(&id).await.expect("load").is_none());

    // A logout elsewhere, then a slow request writes back what it loaded before: still ended.
    store.delete(&id).await.expect("delete");
    store
        .save(session)
        .await
        .expect("stale save is dropped, not an error");
    assert!(store.load(&id).await.expect("load").is_none());
    assert!(!exists(&redis, &store.cipher().redis_key(&id)).await);
    let marker = pttl(&redis, &store.cipher().ended_key(&id)).await;
    assert!(
        (1..=60_000).contains(&marker),
        "the end marker expires too: {marker}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_clearly_when_redis_is_missing_unreachable_or_refuses_us() {
    let site = Site::new().await;
    let load = |env: &[(&'static str, String)]| support::load_runtime(site.dir.path(), env);

    // Not bound at all: a configuration problem that names the instance.
    let mut unbound = site.ext_session_mgt(&RedisServer::start().await, json!({}));
    unbound[0] = ("VCAP_SERVICES", site.vcap.to_string());
    let err = load(&unbound).expect_err("no such instance").to_string();
    assert!(
        err.contains("env EXT_SESSION_MGT: $.instanceName: no bound service instance is named `session-redis`"),
        "{err}"
    );

    // Bound, but nothing listens there.
    let mut gone = RedisServer::start().await;
    let env = site.ext_session_mgt(&gone, json!({"defaultRetryTimeout": 200}));
    gone.stop();
    let started = Instant::now();
    let err = AppState::build(load(&env).expect("valid configuration"))
        .await
        .err()
        .expect("Redis is unreachable")
        .to_string();
    assert!(
        err.contains("`session-redis`") && err.contains(&format!("127.0.0.1:{}", gone.port)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Reachable, but the password is wrong.
    let guarded = RedisServer::with_password("the-real-password").await;
    let env = site.ext_session_mgt(&guarded, json!({"defaultRetryTimeout": 200}));
    let err = AppState::build(load(&env).expect("valid configuration"))
        .await
        .err()
        .expect("wrong password")
        .to_string();
    assert!(err.contains("`session-redis`"), "{err}");
    assert!(!err.contains(REDIS_PASSWORD), "no secrets in errors: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_checks_the_certificate_and_its_name_unless_told_not_to() {
    let pki = Pki::new("Redis CA");
    let redis = RedisServer::with_tls(&pki).await;
    let site = Site::new().await;
    let ca = site.dir.file("redis-ca.pem", pki.root_pem());
    let at = |host: &str| json!({"hostname": host, "port": redis.port, "tls": true, "cluster_mode": false});
    let trusting = |mut env: Vec<(&'static str, String)>| {
        env.push(("XS_CACERT_PATH", ca.display().to_string()));
        env
    };
    let build = |env: Vec<(&'static str, String)>| start_up_error(site.dir.path(), env);
    let quick = json!({"defaultRetryTimeout": 100});

    // Trusted through XS_CACERT_PATH, and the certificate names the host: two instances share.
    let env = trusting(site.bound(at("localhost"), json!({})));
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let token = bearer(&echo(browser.login(&a, "/app/x").await).await);
    assert_eq!(
        bearer(&echo(browser.get(&b.url("/app/y"), &[]).await).await),
        token
    );
    let session_key = SessionCipher::new(SECRET)
        .expect("cipher")
        .redis_key(&browser.session_id());
    assert!(exists(&redis, &session_key).await, "stored over TLS");

    // Without the CA: refused at start-up.
    let err = build(site.bound(at("localhost"), quick.clone()))
        .await
        .expect("untrusted CA");
    assert!(
        err.contains("`session-redis`") && err.contains("(TLS)") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // A certificate for other names: refused, unless hostname validation is skipped.
    let err = build(trusting(site.bound(at("127.0.0.2"), quick.clone())))
        .await
        .expect("wrong name");
    assert!(
        err.contains("`session-redis`") && err.contains("not valid for name \"127.0.0.2\""),
        "{err}"
    );
    let skip = json!({"defaultRetryTimeout": 100, "skipCertHostnameValidation": true});
    assert_eq!(
        build(trusting(site.bound(at("127.0.0.2"), skip.clone()))).await,
        None
    );
    // ... which still needs a trusted certificate.
    assert!(build(site.bound(at("127.0.0.2"), skip)).await.is_some());
    // rejectUnauthorized false accepts any certificate.
    let any = json!({"defaultRetryTimeout": 100, "rejectUnauthorized": false});
    assert_eq!(build(site.bound(at("127.0.0.2"), any)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_spreads_sessions_over_its_nodes() {
    let nodes = RedisServer::cluster(3).await;
    let site = Site::new().await;
    let credentials =
        json!({"hostname": "127.0.0.1", "port": nodes[0].port, "tls": false, "cluster_mode": true});
    let env = site.bound(credentials, json!({}));
    let a = site.router(&env).await;
    let b = site.router(&env).await;
    let mut browser = Browser::default();
    let token = bearer(&echo(browser.login(&a, "/app/x").await).await);
    assert_eq!(
        bearer(&echo(browser.get(&b.url("/app/y"), &[]).await).await),
        token
    );
    let session = browser.session_id();
    assert_eq!(browser.get(&b.url("/do/logout"), &[]).await.status(), 302);
    let replay = client()
        .get(a.url("/app/x"))
        .header("cookie", format!("JSESSIONID={session}"))
        .send()
        .await
        .expect("send");
    assert_eq!(replay.status(), 302, "logged out on every instance");

    // Many sessions land on every node; each session's record and end marker share a slot.
    let mut settings = store_settings(&nodes[0], SECRET);
    settings.redis.cluster = true;
    let store = RedisStore::connect(&settings, Duration::from_secs(60), &[])
        .await
        .expect("cluster store");
    let sessions: Vec<Session> = (0..30).map(|i| logged_in(&format!("user{i}"))).collect();
    for session in &sessions {
        store.save(session.clone()).await.expect("save");
    }
    for node in &nodes {
        let size: i64 = redis::cmd("DBSIZE")
            .query_async(&mut node.connection().await)
            .await
            .expect("DBSIZE");
        assert!(size > 0, "node {} holds no session", node.port);
    }
    for session in &sessions {
        let loaded = store
            .load(&session.id)
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(loaded.id, session.id);
        store
            .delete(&session.id)
            .await
            .expect("delete across slots");
        assert!(store.load(&session.id).await.expect("load").is_none());
    }
}
