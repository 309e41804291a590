//! WebSockets through the router against real WebSocket servers on loopback (plain `ws://` and
//! `wss://` with mutual TLS): frames both ways until a side closes, the `Origin` check, refusals
//! (disabled, no destination, no session), and the destination's token and client certificate
//! on the upgrade request.

mod support;

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use support::browser::Browser;
use support::pki::{KeyForm, Pki};
use support::token_service::TokenService;
use support::{Router, WorkDir};

/// What a WebSocket upstream saw.
#[derive(Default)]
struct Seen {
    /// Path and headers of every upgrade request.
    handshakes: Vec<(String, http::HeaderMap)>,
    /// Close codes received from the router (1005: none given).
    closes: Vec<u16>,
    /// Client-certificate chains (CNs, leaf first) of TLS connections.
    chains: Vec<Vec<String>>,
}

struct WsUpstream {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl WsUpstream {
    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn handshake(&self, i: usize) -> (String, http::HeaderMap) {
        self.seen.lock().expect("lock").handshakes[i].clone()
    }

    fn closes(&self) -> Vec<u16> {
        self.seen.lock().expect("lock").closes.clone()
    }
}

/// The message that makes the echo upstream close the connection (code 4002, "done").
const CLOSE_PLEASE: &str = "close please";

/// Echoes text and binary messages; records the handshake and the close code.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback type
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, seen: Arc<Mutex<Seen>>) {
    let record = seen.clone();
    let callback = move |request: &Request, response: Response| {
        record
            .lock()
            .expect("lock")
            .handshakes
            .push((request.uri().to_string(), request.headers().clone()));
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(text) if text.as_str() == CLOSE_PLEASE => {
                let frame = CloseFrame {
                    code: CloseCode::from(4002),
                    reason: "done".into(),
                };
                let _ = ws.close(Some(frame)).await;
            }
            Message::Text(_) | Message::Binary(_) => {
                let sent = ws.send(message).await;
                if sent.is_err() {
                    break;
                }
            }
            Message::Close(frame) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                seen.lock().expect("lock").closes.push(code);
            }
            _ => {}
        }
    }
}

async fn plain_upstream() -> WsUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(echo(stream, task_seen.clone()));
        }
    });
    WsUpstream { port, seen }
}

/// A `wss://` upstream that requires a client certificate issued under `client_pki`.
async fn mtls_upstream(server_pki: &Pki, client_pki: &Pki) -> WsUpstream {
    let acceptor = TlsAcceptor::from(Arc::new(server_pki.mtls_server_config(client_pki)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), task_seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let chain = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .map(support::mtls::cn_of)
                    .collect();
                seen.lock().expect("lock").chains.push(chain);
                echo(tls, seen).await;
            });
        }
    });
    WsUpstream { port, seen }
}

/// Opens a WebSocket to the router; `Err(status)` when the router refused the upgrade.
async fn open(
    router: &Router,
    path: &str,
    headers: &[(&str, String)],
) -> Result<WebSocketStream<TcpStream>, u16> {
    let mut request = format!("ws://{}{path}", router.addr)
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let stream = TcpStream::connect(router.addr).await.expect("connect");
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("websocket handshake failed: {other}"),
    }
}

fn own_origin(router: &Router) -> (&'static str, String) {
    ("origin", format!("http://{}", router.addr))
}

async fn next_data(ws: &mut WebSocketStream<TcpStream>) -> Message {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("stream open")
            .expect("message");
        if !matches!(message, Message::Ping(_)) {
            return message;
        }
    }
}

fn public_app(websockets: bool) -> WorkDir {
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "websockets": {"enabled": websockets},
        "routes": [
            {"source": "^/ws/(.*)$", "target": "/sockets/$1", "destination": "echo"},
            {"source": "^/files/(.*)$", "localDir": "files"}
        ]
    }));
    dir.file("files/index.html", "<html></html>");
    dir
}

fn echo_destination(upstream: &WsUpstream, scheme: &str) -> (&'static str, String) {
    (
        "destinations",
        json!([{"name": "echo", "url": upstream.url(scheme)}]).to_string(),
    )
}

#[tokio::test]
async fn frames_are_relayed_both_ways_until_the_client_closes() {
    let upstream = plain_upstream().await;
    let dir = public_app(true);
    for scheme in ["ws", "http"] {
        let router = Router::start(dir.path(), &[echo_destination(&upstream, scheme)]).await;
        let mut ws = open(&router, "/ws/chat?room=1", &[own_origin(&router)])
            .await
            .expect("upgrade accepted");
        ws.send(Message::text("hello")).await.expect("send");
        assert_eq!(next_data(&mut ws).await, Message::text("hello"));
        let binary = vec![0u8, 1, 2, 255, 128];
        ws.send(Message::binary(binary.clone()))
            .await
            .expect("send");
        assert_eq!(next_data(&mut ws).await, Message::binary(binary));
        // A large message crosses many reads and writes.
        let large = "x".repeat(300_000);
        ws.send(Message::text(large.clone())).await.expect("send");
        assert_eq!(next_data(&mut ws).await, Message::text(large));
        // Pings reach the destination, which answers them (approuter drops pings).
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .expect("ping");
        let pong = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("pong in time")
            .expect("open")
            .expect("message");
        assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
        ws.close(Some(CloseFrame {
            code: CloseCode::from(4001),
            reason: "bye".into(),
        }))
        .await
        .expect("close");
        // The destination's close answer comes back, then the stream ends.
        while let Some(Ok(_)) = ws.next().await {}
        router.stop().await;
    }
    assert_eq!(upstream.closes(), vec![4001, 4001]);
    let (path, headers) = upstream.handshake(0);
    assert_eq!(path, "/sockets/chat?room=1", "target rewriting applies");
    assert!(headers.contains_key("x-forwarded-host"), "{headers:?}");
    assert!(headers.contains_key("x-correlationid"), "{headers:?}");
}

#[tokio::test]
async fn the_destination_closing_ends_the_client_side() {
    let upstream = plain_upstream().await;
    let dir = public_app(true);
    let router = Router::start(dir.path(), &[echo_destination(&upstream, "ws")]).await;
    let mut ws = open(&router, "/ws/x", &[own_origin(&router)])
        .await
        .expect("open");
    ws.send(Message::text("one")).await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("one"));
    ws.send(Message::text(CLOSE_PLEASE)).await.expect("send");
    match next_data(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4002);
            assert_eq!(frame.reason.as_str(), "done");
        }
        other => panic!("expected the destination's close, got {other:?}"),
    }
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test]
async fn the_origin_must_be_the_router_or_allowed_by_ws_allowed_origins() {
    let upstream = plain_upstream().await;
    let dir = public_app(true);
    let router = Router::start(dir.path(), &[echo_destination(&upstream, "ws")]).await;
    assert_eq!(
        open(&router, "/ws/x", &[]).await.err(),
        Some(403),
        "no Origin"
    );
    for foreign in [
        "http://evil.example",
        "https://127.0.0.1",
        "null",
        &format!("http://{}.evil.example", router.addr.ip()),
    ] {
        assert_eq!(
            open(&router, "/ws/x", &[("origin", foreign.to_owned())])
                .await
                .err(),
            Some(403),
            "{foreign}"
        );
    }
    // Forwarded by a front proxy: the router's URL is the forwarded one.
    let forwarded = [
        ("x-forwarded-host", "app.example.com".to_owned()),
        ("x-forwarded-proto", "https".to_owned()),
        ("origin", "https://app.example.com".to_owned()),
    ];
    assert!(open(&router, "/ws/x", &forwarded).await.is_ok());
    assert_eq!(upstream.seen.lock().expect("lock").handshakes.len(), 1);

    let allowed = json!([{"protocol": "https", "host": "*.trusted.example"}, {"host": "partner.example", "port": 8443}]);
    let router = Router::start(
        dir.path(),
        &[
            echo_destination(&upstream, "ws"),
            ("WS_ALLOWED_ORIGINS", allowed.to_string()),
        ],
    )
    .await;
    for (origin, expected) in [
        ("https://app.trusted.example", None),
        ("http://app.trusted.example", Some(403)),
        ("https://partner.example:8443", None),
        ("https://partner.example", Some(403)),
        (&format!("http://{}", router.addr), Some(403)),
    ] {
        assert_eq!(
            open(&router, "/ws/x", &[("origin", origin.to_owned())])
                .await
                .err(),
            expected,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn refused_upgrades() {
    let upstream = plain_upstream().await;
    let disabled = public_app(false);
    let router = Router::start(disabled.path(), &[echo_destination(&upstream, "ws")]).await;
    assert_eq!(
        open(&router, "/ws/x", &[own_origin(&router)]).await.err(),
        Some(403),
        "websockets disabled"
    );
    let enabled = public_app(true);
    let router = Router::start(enabled.path(), &[echo_destination(&upstream, "ws")]).await;
    assert_eq!(
        open(&router, "/files/index.html", &[own_origin(&router)])
            .await
            .err(),
        Some(404),
        "a localDir route has no websocket"
    );
    assert_eq!(
        open(&router, "/nothing", &[own_origin(&router)])
            .await
            .err(),
        Some(404)
    );
    assert_eq!(upstream.seen.lock().expect("lock").handshakes.len(), 0);

    // A destination that is down, and one that answers the upgrade with an ordinary response.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let down = format!("ws://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let http_only = support::upstream::start().await;
    let destinations =
        json!([{"name": "echo", "url": down}, {"name": "plain", "url": http_only.url()}]);
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "websockets": {"enabled": true},
        "routes": [
            {"source": "^/ws/(.*)$", "destination": "echo"},
            {"source": "^/plain/(.*)$", "target": "/$1", "destination": "plain"}
        ]
    }));
    let router = Router::start(dir.path(), &[("destinations", destinations.to_string())]).await;
    assert_eq!(
        open(&router, "/ws/x", &[own_origin(&router)]).await.err(),
        Some(502)
    );
    assert_eq!(
        open(&router, "/plain/x", &[own_origin(&router)])
            .await
            .err(),
        Some(200),
        "the destination's own answer is passed on"
    );
}

const CLIENT: &str = "sb-xsrouter!t1";
const APP: &str = "xsrouter!t1";

#[tokio::test]
async fn authenticated_routes_need_a_session_and_the_upgrade_carries_tokens() {
    let pki = Pki::new("Token Server");
    let ts = TokenService::start(&pki, &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.register_client("ws-client", Some("ws-secret"), None);
    ts.set_login_user("alice", &[&format!("{APP}.Chat"), "openid"]);
    let upstream = plain_upstream().await;
    let dir = WorkDir::new(&json!({
        "websockets": {"enabled": true},
        "routes": [
            {"source": "^/chat/(.*)$", "target": "/$1", "destination": "user", "scope": "$XSAPPNAME.Chat"},
            {"source": "^/admin/(.*)$", "target": "/$1", "destination": "user", "scope": "$XSAPPNAME.Admin"},
            {"source": "^/feed/(.*)$", "target": "/$1", "destination": "technical", "authenticationType": "none"}
        ]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
    let destinations = json!([
        {"name": "user", "url": upstream.url("ws"), "forwardAuthToken": true},
        {"name": "technical", "url": upstream.url("ws"), "authentication": "OAuth2ClientCredentials",
         "tokenServiceURL": ts.token_url(), "clientId": "ws-client", "clientSecret": "ws-secret"}
    ]);
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", destinations.to_string()),
        ],
    )
    .await;
    let origin = own_origin(&router);

    assert_eq!(
        open(&router, "/chat/room", std::slice::from_ref(&origin))
            .await
            .err(),
        Some(401),
        "no session: 401, not a login redirect"
    );
    let mut browser = Browser::default();
    browser.login(&router, "/chat/index").await;
    let cookie = ("cookie", browser.cookie_header());
    let mut ws = open(&router, "/chat/room", &[origin.clone(), cookie.clone()])
        .await
        .expect("with a session");
    ws.send(Message::text("hi")).await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("hi"));
    let handshakes = upstream.seen.lock().expect("lock").handshakes.clone();
    let (_, headers) = handshakes.last().expect("a handshake");
    let token = headers["authorization"]
        .to_str()
        .expect("ascii")
        .strip_prefix("Bearer ")
        .expect("bearer");
    assert_eq!(ts.claims(token)["user_name"], "alice");
    assert!(
        headers
            .get("cookie")
            .is_none_or(|c| !c.to_str().unwrap_or_default().contains("JSESSIONID")),
        "the session cookie stays with the router"
    );
    assert_eq!(
        open(&router, "/admin/room", &[origin.clone(), cookie])
            .await
            .err(),
        Some(403),
        "scopes apply"
    );

    // A service with its own token needs no Origin.
    let service_token = ts.issue_user_token("svc", CLIENT, &[&format!("{APP}.Chat")], 600);
    assert!(
        open(
            &router,
            "/chat/svc",
            &[(
                "x-approuter-authorization",
                format!("Bearer {service_token}")
            )]
        )
        .await
        .is_ok()
    );

    // A technical token for a public route's destination.
    let mut ws = open(&router, "/feed/news", &[origin]).await.expect("feed");
    ws.send(Message::text("x")).await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("x"));
    let handshakes = upstream.seen.lock().expect("lock").handshakes.clone();
    let (path, headers) = handshakes.last().expect("a handshake");
    assert_eq!(path, "/news");
    let token = headers["authorization"]
        .to_str()
        .expect("ascii")
        .strip_prefix("Bearer ")
        .expect("bearer");
    let claims: Value = ts.claims(token);
    assert_eq!(claims["client_id"], "ws-client");
    assert_eq!(claims["grant_type"], "client_credentials");
}

#[tokio::test]
async fn wss_destination_over_mutual_tls_presents_the_bound_certificate() {
    let server_pki = Pki::new("WS Server");
    let client_pki = Pki::new("WS Client");
    let upstream = mtls_upstream(&server_pki, &client_pki).await;
    let leaf = client_pki.client("router identity", KeyForm::EcPkcs8);
    let dir = public_app(true);
    let ca = dir.file("server-ca.pem", server_pki.root_pem());
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "url": "https://sub.authentication.example", "xsappname": APP,
        "credential-type": "x509", "certificate": leaf.chain_pem(&client_pki), "key": leaf.key_pem}}]});
    let destinations =
        json!([{"name": "echo", "url": upstream.url("wss"), "forwardAuthCertificates": true}]);
    let router = Router::start(
        dir.path(),
        &[
            ("destinations", destinations.to_string()),
            ("VCAP_SERVICES", vcap.to_string()),
            ("XS_CACERT_PATH", ca.display().to_string()),
        ],
    )
    .await;
    let mut ws = open(&router, "/ws/secure", &[own_origin(&router)])
        .await
        .expect("open");
    for i in 0..3 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        assert_eq!(next_data(&mut ws).await, Message::text(text));
    }
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    let seen = upstream.seen.lock().expect("lock");
    assert_eq!(
        seen.chains,
        vec![vec![
            leaf.cn.clone(),
            "WS Client Intermediate CA".to_owned()
        ]]
    );
    assert_eq!(seen.handshakes.len(), 1);
    assert_eq!(seen.closes, vec![1005]);
}

#[tokio::test]
async fn logout_closes_the_sessions_websockets_only() {
    let ts = TokenService::start(&Pki::new("Token Server"), &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    ts.set_login_user("alice", &["openid"]);
    let upstream = plain_upstream().await;
    let dir = WorkDir::new(&json!({
        "websockets": {"enabled": true},
        "routes": [{"source": "^/chat/(.*)$", "target": "/$1", "destination": "user"}],
        "logout": {"logoutEndpoint": "/do/logout", "logoutMethod": "GET"}
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "url": ts.url, "xsappname": APP}}]});
    let destinations =
        json!([{"name": "user", "url": upstream.url("ws"), "forwardAuthToken": true}]);
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("destinations", destinations.to_string()),
        ],
    )
    .await;
    let origin = own_origin(&router);
    let (mut leaving, mut staying) = (Browser::default(), Browser::default());
    leaving.login(&router, "/chat/index").await;
    staying.login(&router, "/chat/index").await;
    let open_for = |browser: &Browser| vec![origin.clone(), ("cookie", browser.cookie_header())];
    let mut first = open(&router, "/chat/a", &open_for(&leaving))
        .await
        .expect("open");
    let mut second = open(&router, "/chat/b", &open_for(&leaving))
        .await
        .expect("open");
    let mut other = open(&router, "/chat/c", &open_for(&staying))
        .await
        .expect("open");
    for ws in [&mut first, &mut second, &mut other] {
        ws.send(Message::text("before")).await.expect("send");
        assert_eq!(next_data(ws).await, Message::text("before"));
    }

    let logout = leaving.get(&router.url("/do/logout"), &[]).await;
    assert_eq!(logout.status(), 302);
    for ws in [&mut first, &mut second] {
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the logged-out session's websocket is closed"
        );
    }
    other.send(Message::text("after")).await.expect("send");
    assert_eq!(next_data(&mut other).await, Message::text("after"));
}

#[tokio::test]
async fn websockets_through_the_routers_own_tls_listener() {
    let upstream = plain_upstream().await;
    let dir = public_app(true);
    let server_pki = Pki::new("Router TLS");
    let (chain, key) = server_pki.server();
    let cert_file = dir.file("tls/server.pem", chain);
    let key_file = dir.file("tls/server-key.pem", key);
    let router = Router::start(
        dir.path(),
        &[
            echo_destination(&upstream, "ws"),
            ("XSROUTER_TLS_CERT", cert_file.display().to_string()),
            ("XSROUTER_TLS_KEY", key_file.display().to_string()),
        ],
    )
    .await;
    let mut config = support::pki::tls_client_config(&server_pki, None);
    // An HTTP/1.1 upgrade: no HTTP/2 by ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = || async {
        let tcp = TcpStream::connect(router.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await.expect("tls")
    };
    let request = |origin: &str| {
        let mut request = format!("wss://localhost:{}/ws/secure", router.addr.port())
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("origin"));
        request
    };
    // Over the router's TLS, its own origin is https.
    let refused = tokio_tungstenite::client_async(
        request(&format!("http://localhost:{}", router.addr.port())),
        connect().await,
    )
    .await;
    assert!(
        matches!(refused, Err(tungstenite::Error::Http(ref r)) if r.status() == 403),
        "{refused:?}"
    );
    let (mut ws, _) = tokio_tungstenite::client_async(
        request(&format!("https://localhost:{}", router.addr.port())),
        connect().await,
    )
    .await
    .expect("upgrade over TLS");
    ws.send(Message::text("over tls")).await.expect("send");
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message");
    assert_eq!(echoed, Message::text("over tls"));
    let (path, headers) = upstream.handshake(0);
    assert_eq!(path, "/sockets/secure");
    assert_eq!(headers["x-forwarded-proto"], "https");
}
