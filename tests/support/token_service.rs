//! An XSUAA-compatible OAuth token service on loopback: a plain listener that authenticates
//! clients by secret and a TLS listener that requires a client certificate (XSUAA's `certurl`).
//!
//! Both listeners serve `POST /oauth/token` (XSUAA) and `POST /oauth2/token` (IAS),
//! `GET /token_keys` (JWKS) and `GET /.well-known/openid-configuration`. Grants:
//! `client_credentials`, `urn:ietf:params:oauth:grant-type:jwt-bearer` (with IAS-style
//! `resource`), `refresh_token` and `authorization_code` (with PKCE, RFC 7636, `S256` only).
//! Tokens are RS256 JWTs shaped like XSUAA's. Failures can be injected: a delay, the next n token
//! requests answering a status, or the service being down (connections accepted and closed at
//! once).
//!
//! The browser login: `GET /oauth/authorize` (XSUAA) and `GET /oauth2/authorize` (IAS) log in a
//! configurable user at once (no login page) and redirect to the client's `redirect_uri` with a
//! single-use code; `GET /logout.do` (XSUAA) and `GET /oauth2/logout` (IAS, OpenID Connect
//! RP-initiated logout) record the call and redirect back.
//!
//! Identity zones (tenants), as XSUAA serves a subscriber at `<subdomain>.<uaadomain>`: a request
//! whose `Host` is `<subdomain>.localhost[:port]` reaches the zone of that subdomain; any other
//! host (`127.0.0.1`, `localhost`) the default zone. A zone's tokens carry its issuer
//! (`http://<subdomain>.localhost:<plain port>/oauth/token`, also for tokens issued over the mTLS
//! listener), its `zid` and its subdomain as `ext_attr.zdn`; codes and refresh tokens are redeemed
//! only in the zone that issued them, and a jwt-bearer assertion must come from the same zone.
//! Every call of the browser-facing endpoints and the key and discovery documents is recorded with
//! the host it named ([`TokenService::visits`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pki::Pki;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The IAS `resource` prefix naming a dependency (provider application).
pub const RESOURCE_PREFIX: &str = "urn:sap:identity:application:provider:name:";
/// The zone (`zid`) of every token.
pub const ZONE_ID: &str = "5f5e1d0c-test-zone-0000-000000000001";
const DEFAULT_SCOPES: [&str; 1] = ["uaa.resource"];
/// How long an authorization code may be redeemed (XSUAA: 60 s).
const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// One request to a token endpoint, as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `/oauth/token` or `/oauth2/token`.
    pub path: String,
    /// The form fields (for a repeated field, the last value).
    pub form: BTreeMap<String, String>,
    /// The client id from `Authorization: Basic`, if any.
    pub basic_client_id: Option<String>,
    /// Whether it came over the mTLS listener.
    pub via_mtls: bool,
    /// The CN of the client certificate the connection presented.
    pub client_cert_cn: Option<String>,
    /// The `Host` header, or the authority over HTTP/2 (tells tenants' subdomains apart).
    pub host: Option<String>,
    /// The status answered; 0 while (or if never) answered.
    pub status: u16,
}

impl TokenRequest {
    pub fn grant_type(&self) -> Option<&str> {
        self.form.get("grant_type").map(String::as_str)
    }

    /// The client id from Basic authentication, else from the form.
    pub fn client_id(&self) -> Option<&str> {
        self.basic_client_id
            .as_deref()
            .or_else(|| self.form.get("client_id").map(String::as_str))
    }
}

#[derive(Debug, Clone)]
struct Client {
    secret: Option<String>,
    cert_cn: Option<String>,
}

/// An identity zone: a tenant's subdomain of the service, or the default zone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zone {
    /// `None`: the default zone (`127.0.0.1`, `localhost`).
    pub subdomain: Option<String>,
}

impl Zone {
    /// The zone a request's `Host` names: `<subdomain>.localhost[:port]` → that subdomain (its
    /// first label), anything else the default zone.
    pub fn of_host(host: Option<&str>) -> Self {
        let name = host
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let subdomain = name
            .strip_suffix(".localhost")
            .and_then(|rest| rest.split('.').next())
            .filter(|label| !label.is_empty())
            .map(str::to_owned);
        Self { subdomain }
    }

    /// A zone by subdomain.
    pub fn named(subdomain: &str) -> Self {
        Self {
            subdomain: Some(subdomain.to_owned()),
        }
    }

    /// The zone id (`zid`): [`ZONE_ID`] for the default zone, else derived from the subdomain.
    pub fn zid(&self) -> String {
        match &self.subdomain {
            None => ZONE_ID.to_owned(),
            Some(sub) => uuid_of(sub),
        }
    }

    /// The zone's subdomain as tokens name it (`ext_attr.zdn`; `test` for the default zone).
    pub fn zdn(&self) -> &str {
        self.subdomain.as_deref().unwrap_or("test")
    }
}

/// A call of an authorize, logout, key or discovery endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub path: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The query parameters (for a repeated one, the last value).
    pub query: BTreeMap<String, String>,
}

/// What a refresh token stands for.
#[derive(Debug, Clone)]
struct RefreshGrant {
    zone: Zone,
    client_id: String,
    user: serde_json::Map<String, Value>,
    scopes: Vec<String>,
    audiences: Vec<String>,
}

/// What an authorization code stands for.
#[derive(Debug, Clone)]
struct AuthCode {
    zone: Zone,
    client_id: String,
    /// As the authorize request sent it; the token request must send the identical string.
    redirect_uri: String,
    /// The `S256` code challenge, if the authorize request sent one.
    code_challenge: Option<String>,
    nonce: Option<String>,
    user: String,
    scopes: Vec<String>,
    issued: Instant,
}

struct State {
    clients: HashMap<String, Client>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    codes: HashMap<String, AuthCode>,
    code_lifetime: Duration,
    login_user: String,
    login_scopes: Vec<String>,
    login_denied: bool,
    authorize_requests: Vec<BTreeMap<String, String>>,
    logout_requests: Vec<BTreeMap<String, String>>,
    visits: Vec<Visit>,
    requests: Vec<TokenRequest>,
    expires_in: u64,
    delay: Duration,
    fail_remaining: usize,
    /// The next token requests answer this status, content type and body verbatim.
    canned: Vec<(u16, &'static str, String)>,
    fail_status: u16,
}

/// The service's signing key (one per process: RSA key generation is slow).
struct SigningKey {
    pair: ring::signature::RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
    kid: String,
}

fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(generate_key)
}

/// Another key with the service key's `kid`: what it signs must not verify.
fn foreign_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey {
        kid: signing_key().kid.clone(),
        ..generate_key()
    })
}

fn generate_key() -> SigningKey {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("rsa keygen");
    let der = key.to_pkcs8_der().expect("pkcs8");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring key");
    let n = key.n().to_bytes_be();
    let e = key.e().to_bytes_be();
    let digest = ring::digest::digest(&ring::digest::SHA256, &n);
    let kid = format!("default-jwt-key-{}", hex(&digest.as_ref()[..5]));
    SigningKey { pair, n, e, kid }
}

/// An RS256 JWT of `claims` signed with `key`; the header names `jku` if given.
fn sign_jwt(key: &SigningKey, jku: Option<&str>, claims: &Value) -> String {
    let mut header = json!({
        "alg": "RS256",
        "kid": key.kid,
        "typ": "JWT",
    });
    if let Some(jku) = jku {
        header["jku"] = json!(jku);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.pair.public().modulus_len()];
    key.pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .expect("sign token");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// BASE64URL(SHA-256(verifier)): the `S256` code challenge of RFC 7636.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// RFC 7636 4.1/4.2: 43 to 128 unreserved characters.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A stable UUID-shaped id for `name` (from its SHA-256), as XSUAA's zone and user ids look.
fn uuid_of(name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let h = hex(&digest.as_ref()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(len: usize) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("random bytes");
    hex(&bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

struct Inner {
    url: String,
    /// The plain listener's port (zone issuers name it).
    port: u16,
    cert_url: String,
    state: Mutex<State>,
    token_requests: AtomicUsize,
    rejected_handshakes: AtomicUsize,
    down: watch::Sender<bool>,
}

/// A running token service.
pub struct TokenService {
    /// `http://127.0.0.1:P`: clients authenticate with a secret.
    pub url: String,
    /// `https://127.0.0.1:Q`: requires a client certificate issued under the client PKI.
    pub cert_url: String,
    pub addr: SocketAddr,
    pub cert_addr: SocketAddr,
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the connection a request arrived on proved.
#[derive(Debug, Clone)]
struct Connection {
    via_mtls: bool,
    cert_cn: Option<String>,
}

impl TokenService {
    /// Plain listener (`url`) authenticates clients by secret; the TLS listener (`cert_url`,
    /// server certificate from `server_pki.server()`) requires a client certificate issued under
    /// `client_pki`.
    pub async fn start(server_pki: &Pki, client_pki: &Pki) -> Self {
        Self::start_for_zones(server_pki, client_pki, &[]).await
    }

    /// As [`Self::start`], with the mTLS listener's server certificate also valid for
    /// `<subdomain>.localhost` for each of `subdomains` (the zones' `certurl` hosts).
    pub async fn start_for_zones(server_pki: &Pki, client_pki: &Pki, subdomains: &[&str]) -> Self {
        xsrouter::install_crypto_provider();
        // Generate the key now rather than inside the first request.
        let _ = signing_key();
        let zone_hosts: Vec<String> = subdomains
            .iter()
            .map(|s| format!("{s}.localhost"))
            .collect();
        let mut names = vec!["localhost", "127.0.0.1"];
        names.extend(zone_hosts.iter().map(String::as_str));
        let config = server_pki.mtls_server_config_for(client_pki, &names);
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tls = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = plain.local_addr().expect("addr");
        let cert_addr = tls.local_addr().expect("addr");
        let url = format!("http://127.0.0.1:{}", addr.port());
        let cert_url = format!("https://127.0.0.1:{}", cert_addr.port());
        let inner = Arc::new(Inner {
            url: url.clone(),
            port: addr.port(),
            cert_url: cert_url.clone(),
            state: Mutex::new(State {
                clients: HashMap::new(),
                refresh_tokens: HashMap::new(),
                codes: HashMap::new(),
                code_lifetime: CODE_LIFETIME,
                login_user: "alice".to_owned(),
                login_scopes: vec!["openid".to_owned()],
                login_denied: false,
                authorize_requests: Vec::new(),
                logout_requests: Vec::new(),
                visits: Vec::new(),
                requests: Vec::new(),
                expires_in: 3600,
                delay: Duration::ZERO,
                fail_remaining: 0,
                canned: Vec::new(),
                fail_status: 503,
            }),
            token_requests: AtomicUsize::new(0),
            rejected_handshakes: AtomicUsize::new(0),
            down: watch::Sender::new(false),
        });

        let plain_task = {
            let inner = inner.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = plain.accept().await {
                    if *inner.down.borrow() {
                        drop(stream);
                        continue;
                    }
                    let connection = Connection {
                        via_mtls: false,
                        cert_cn: None,
                    };
                    tokio::spawn(serve(stream, inner.clone(), connection));
                }
            })
        };
        let tls_task = {
            let inner = inner.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = tls.accept().await {
                    if *inner.down.borrow() {
                        drop(stream);
                        continue;
                    }
                    let acceptor = acceptor.clone();
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await;
                        let Ok(Ok(stream)) = handshake else {
                            inner.rejected_handshakes.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        let cert_cn = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(common_name);
                        let connection = Connection {
                            via_mtls: true,
                            cert_cn,
                        };
                        serve(stream, inner, connection).await;
                    });
                }
            })
        };
        Self {
            url,
            cert_url,
            addr,
            cert_addr,
            inner,
            tasks: vec![plain_task, tls_task],
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("token service state")
    }

    /// Registers (or replaces) a client. `secret`: what it may authenticate with on either
    /// listener; `cert_cn`: the CN its client certificate must have on the mTLS listener.
    pub fn register_client(&self, client_id: &str, secret: Option<&str>, cert_cn: Option<&str>) {
        self.state().clients.insert(
            client_id.to_owned(),
            Client {
                secret: secret.map(str::to_owned),
                cert_cn: cert_cn.map(str::to_owned),
            },
        );
    }

    /// Lifetime of the tokens issued from now on (default 3600 s).
    pub fn set_expires_in(&self, seconds: u64) {
        self.state().expires_in = seconds;
    }

    /// Delay before answering each token request (default none).
    pub fn set_delay(&self, d: Duration) {
        self.state().delay = d;
    }

    /// The next `n` token requests answer `status` with an OAuth error JSON.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut state = self.state();
        state.fail_remaining = n;
        state.fail_status = status;
    }

    /// The next `n` token requests answer `status` with `body` as `content_type`, verbatim
    /// (malformed JSON, answers without `expires_in`, ...).
    pub fn answer_next(&self, n: usize, status: u16, content_type: &'static str, body: &str) {
        self.state().canned = vec![(status, content_type, body.to_owned()); n];
    }

    /// While down, both listeners accept connections and close them at once, without an HTTP
    /// answer; open connections are closed when the service goes down.
    pub fn set_down(&self, down: bool) {
        self.inner.down.send_replace(down);
    }

    /// POSTs to the token endpoints so far, failed ones included.
    pub fn token_requests(&self) -> usize {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// Every token request so far, in arrival order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state().requests.clone()
    }

    /// TLS handshakes on the mTLS listener that failed (e.g. no client certificate).
    pub fn rejected_handshakes(&self) -> usize {
        self.inner.rejected_handshakes.load(Ordering::SeqCst)
    }

    /// `<url>/oauth/token` (the XSUAA token endpoint; also the `iss` of every token).
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url)
    }

    /// `<cert_url>/oauth/token`.
    pub fn cert_token_url(&self) -> String {
        format!("{}/oauth/token", self.cert_url)
    }

    /// A user's token as a login at `client_id` would yield (`grant_type`
    /// `authorization_code`); usable as a jwt-bearer assertion. `expires_in` 0 makes it expired.
    pub fn issue_user_token(
        &self,
        user: &str,
        client_id: &str,
        scopes: &[&str],
        expires_in: u64,
    ) -> String {
        self.user_token_in(&Zone::default(), user, client_id, scopes, expires_in)
    }

    /// Verifies `jwt`'s RS256 signature with the service's key and returns its claims (expiry is
    /// not checked). Panics if the token is malformed or the signature invalid.
    pub fn claims(&self, jwt: &str) -> Value {
        verify(jwt).unwrap_or_else(|err| panic!("not a token of this service: {err}"))
    }

    /// The JSON Web Key Set served at `/token_keys`.
    pub fn jwks(&self) -> Value {
        jwks()
    }

    /// Like [`Self::issue_user_token`], but `aud`, when not empty, is the token's whole `aud`
    /// claim (instead of the client and the scopes' xsappnames), and `issuer_override` its
    /// `iss`. Signed with the service key.
    pub fn issue_user_token_with(
        &self,
        user: &str,
        client_id: &str,
        scopes: &[&str],
        expires_in: u64,
        aud: &[&str],
        issuer_override: Option<&str>,
    ) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let user_claims = user_claims(user);
        let mut claims = self.inner.token_claims(
            &Zone::default(),
            client_id,
            "authorization_code",
            &scopes,
            &[],
            Some(&user_claims),
            expires_in,
        );
        if !aud.is_empty() {
            claims["aud"] = json!(aud);
        }
        if let Some(issuer) = issuer_override {
            claims["iss"] = json!(issuer);
        }
        self.inner.sign(&Zone::default(), &claims)
    }

    /// A well-formed RS256 JWT of `claims` whose header names the service key's `kid`, but
    /// signed by a different RSA key: its signature does not verify. The header's `jku` is
    /// derived from an `iss` ending in `/oauth/token` or `/oauth2/token`, as the service's own.
    pub fn sign_with_foreign_key(claims: &Value) -> String {
        let jku = claims["iss"].as_str().and_then(|iss| {
            iss.strip_suffix("/oauth/token")
                .or_else(|| iss.strip_suffix("/oauth2/token"))
                .map(|base| format!("{base}/token_keys"))
        });
        sign_jwt(foreign_key(), jku.as_deref(), claims)
    }

    /// The user the authorize endpoints log in from now on (default `alice` with `openid`), and
    /// the scopes their tokens carry.
    pub fn set_login_user(&self, user: &str, scopes: &[&str]) {
        let mut state = self.state();
        state.login_user = user.to_owned();
        state.login_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// While set, the authorize endpoints redirect with `error=access_denied` instead of a code.
    pub fn set_login_denied(&self, denied: bool) {
        self.state().login_denied = denied;
    }

    /// How long authorization codes issued from now on may be redeemed (default 60 s; zero:
    /// expired at once).
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        self.state().code_lifetime = lifetime;
    }

    /// The query parameters of every request to an authorize endpoint so far (refused ones
    /// included), in arrival order; for a repeated parameter, the last value.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.state().authorize_requests.clone()
    }

    /// The query parameters of every request to a logout endpoint so far, in arrival order.
    pub fn logout_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.state().logout_requests.clone()
    }

    /// Every call of the authorize, logout, `/token_keys` and discovery endpoints so far, with
    /// the host it named, in arrival order.
    pub fn visits(&self) -> Vec<Visit> {
        self.state().visits.clone()
    }

    /// `http://<subdomain>.localhost:<port>`: the zone's URL on the plain listener (its `url`).
    pub fn zone_url(&self, subdomain: &str) -> String {
        format!("http://{subdomain}.localhost:{}", self.addr.port())
    }

    /// `https://<subdomain>.localhost:<port>`: the zone's URL on the mTLS listener (its `certurl`).
    pub fn zone_cert_url(&self, subdomain: &str) -> String {
        format!("https://{subdomain}.localhost:{}", self.cert_addr.port())
    }

    /// Like [`Self::issue_user_token`], issued in the zone of `subdomain`.
    pub fn issue_zone_user_token(
        &self,
        subdomain: &str,
        user: &str,
        client_id: &str,
        scopes: &[&str],
        expires_in: u64,
    ) -> String {
        self.user_token_in(&Zone::named(subdomain), user, client_id, scopes, expires_in)
    }

    fn user_token_in(
        &self,
        zone: &Zone,
        user: &str,
        client_id: &str,
        scopes: &[&str],
        expires_in: u64,
    ) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let user_claims = user_claims(user);
        self.inner
            .sign_token(
                zone,
                client_id,
                "authorization_code",
                &scopes,
                &[],
                Some(&user_claims),
                expires_in,
            )
            .0
    }

    /// `<url>/oauth/authorize` (the XSUAA authorization endpoint).
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.url)
    }

    /// `<url>/logout.do` (the XSUAA logout endpoint).
    pub fn logout_url(&self) -> String {
        format!("{}/logout.do", self.url)
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Closes the open connections.
        self.inner.down.send_replace(true);
    }
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends or the service goes down.
async fn serve<S>(io: S, inner: Arc<Inner>, connection: Connection)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut down = inner.down.subscribe();
    let app = {
        let inner = inner.clone();
        axum::Router::new().fallback(move |request: Request| {
            let inner = inner.clone();
            let connection = connection.clone();
            async move { inner.handle(request, &connection).await }
        })
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let served = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::select! {
        _ = served => {}
        _ = async { let _ = down.wait_for(|down| *down).await; } => {}
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// `302 Found` to `location` (400 if it cannot be a header value).
fn found(location: &str) -> Response {
    let Ok(value) = http::HeaderValue::from_str(location) else {
        return oauth_error(400, "invalid_request", "the redirect is not a valid URI");
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::FOUND;
    response.headers_mut().insert(http::header::LOCATION, value);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The host a request named: its `Host` header (HTTP/1.1), else its URI's authority (HTTP/2).
fn request_host(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

/// The query's parameters, decoded; for a repeated one, the last value.
fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An OAuth error answer.
fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let mut response = json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    if status == 401 && error == "invalid_client" {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"UAA/client\", error=\"invalid_client\""),
        );
    }
    response
}

/// The error code an injected failure answers with.
fn error_code_for(status: u16) -> &'static str {
    match status {
        429 | 503 => "temporarily_unavailable",
        400 => "invalid_request",
        401 => "invalid_client",
        403 => "access_denied",
        s if s >= 500 => "server_error",
        _ => "invalid_request",
    }
}

/// The claims describing a user, as XSUAA puts them into user tokens.
fn user_claims(user: &str) -> serde_json::Map<String, Value> {
    let user_id = uuid_of(user);
    let email = if user.contains('@') {
        user.to_owned()
    } else {
        format!("{user}@test.example")
    };
    let mut claims = serde_json::Map::new();
    claims.insert("user_name".into(), json!(user));
    claims.insert("user_id".into(), json!(user_id));
    claims.insert("user_uuid".into(), json!(user_id));
    claims.insert("sub".into(), json!(user_id));
    claims.insert("origin".into(), json!("sap.default"));
    claims.insert("email".into(), json!(email));
    claims.insert("given_name".into(), json!(user));
    claims.insert("family_name".into(), json!("Test"));
    claims.insert("xs.user.attributes".into(), json!({}));
    claims.insert(
        "ext_attr".into(),
        json!({ "enhancer": "XSUAA", "zdn": "test" }),
    );
    claims
}

/// The user claims a jwt-bearer assertion hands on to the exchanged token.
const USER_CLAIMS: [&str; 11] = [
    "user_name",
    "user_id",
    "user_uuid",
    "sub",
    "origin",
    "email",
    "given_name",
    "family_name",
    "ext_attr",
    "xs.user.attributes",
    "xs.system.attributes",
];

fn jwks() -> Value {
    let key = signing_key();
    json!({
        "keys": [{
            "kty": "RSA",
            "kid": key.kid,
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(&key.n),
            "e": URL_SAFE_NO_PAD.encode(&key.e),
        }]
    })
}

/// Checks `jwt`'s header and RS256 signature; the claims, or why not.
fn verify(jwt: &str) -> Result<Value, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err(format!("{} parts instead of 3", parts.len()));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|err| format!("{what} is not base64url: {err}"))
    };
    let header: Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|err| format!("header is not JSON: {err}"))?;
    let key = signing_key();
    if header["alg"] != "RS256" {
        return Err(format!("alg {} instead of RS256", header["alg"]));
    }
    if header["kid"] != key.kid.as_str() {
        return Err(format!("unknown kid {}", header["kid"]));
    }
    let signed_len = jwt.len() - signature.len() - 1;
    ring::signature::RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    }
    .verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &jwt.as_bytes()[..signed_len],
        &decode(signature, "signature")?,
    )
    .map_err(|_| "signature invalid".to_owned())?;
    let claims: Value = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|err| format!("payload is not JSON: {err}"))?;
    if !claims.is_object() {
        return Err("payload is not a JSON object".to_owned());
    }
    Ok(claims)
}

fn string_array(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A successful token answer.
struct Issued {
    access_token: String,
    jti: String,
    scopes: Vec<String>,
    expires_in: u64,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

impl Issued {
    fn response(&self) -> Response {
        let mut body = json!({
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": self.scopes.join(" "),
            "jti": self.jti,
        });
        if let Some(refresh) = &self.refresh_token {
            body["refresh_token"] = json!(refresh);
        }
        if let Some(id_token) = &self.id_token {
            body["id_token"] = json!(id_token);
        }
        json_response(200, &body)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("token service state")
    }

    fn base(&self, connection: &Connection) -> &str {
        if connection.via_mtls {
            &self.cert_url
        } else {
            &self.url
        }
    }

    async fn handle(self: Arc<Self>, request: Request, connection: &Connection) -> Response {
        if *self.down.borrow() {
            // The connection is being closed; never answer.
            std::future::pending::<()>().await;
        }
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let host = request_host(request.headers(), request.uri());
        if method == http::Method::GET
            && matches!(
                path.as_str(),
                "/oauth/authorize"
                    | "/oauth2/authorize"
                    | "/logout.do"
                    | "/oauth2/logout"
                    | "/token_keys"
                    | "/.well-known/openid-configuration"
            )
        {
            self.lock().visits.push(Visit {
                path: path.clone(),
                host: host.clone(),
                query: query_params(request.uri().query()),
            });
        }
        let zone = Zone::of_host(host.as_deref());
        match path.as_str() {
            "/oauth/token" | "/oauth2/token" => {
                if method != http::Method::POST {
                    let mut response = oauth_error(405, "method_not_allowed", "use POST");
                    response
                        .headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
                    return response;
                }
                self.token_endpoint(path, request, connection).await
            }
            "/oauth/authorize" | "/oauth2/authorize" if method == http::Method::GET => {
                self.authorize(&zone, request.uri().query())
            }
            "/logout.do" | "/oauth2/logout" if method == http::Method::GET => {
                self.logout(&path, request.uri().query())
            }
            "/token_keys" if method == http::Method::GET => json_response(200, &jwks()),
            "/.well-known/openid-configuration" if method == http::Method::GET => {
                let base = self.base(connection);
                json_response(
                    200,
                    &json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/oauth2/authorize"),
                        "token_endpoint": format!("{base}/oauth2/token"),
                        "end_session_endpoint": format!("{base}/oauth2/logout"),
                        "jwks_uri": format!("{base}/token_keys"),
                        "grant_types_supported": [
                            "authorization_code",
                            "client_credentials",
                            JWT_BEARER,
                            "refresh_token",
                        ],
                        "code_challenge_methods_supported": ["S256"],
                        "token_endpoint_auth_methods_supported": [
                            "client_secret_basic",
                            "client_secret_post",
                            "tls_client_auth",
                        ],
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }),
                )
            }
            "/token_keys"
            | "/.well-known/openid-configuration"
            | "/oauth/authorize"
            | "/oauth2/authorize"
            | "/logout.do"
            | "/oauth2/logout" => json_response(405, &json!({ "error": "method_not_allowed" })),
            _ => json_response(404, &json!({ "error": "not_found" })),
        }
    }

    async fn token_endpoint(
        &self,
        path: String,
        request: Request,
        connection: &Connection,
    ) -> Response {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let basic = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_basic);
        let index = {
            let mut state = self.lock();
            state.requests.push(TokenRequest {
                path,
                form: pairs.iter().cloned().collect(),
                basic_client_id: basic.as_ref().map(|(id, _)| id.clone()),
                via_mtls: connection.via_mtls,
                client_cert_cn: connection.cert_cn.clone(),
                host: request_host(&parts.headers, &parts.uri),
                status: 0,
            });
            state.requests.len() - 1
        };
        let delay = self.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let form_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        let zone = Zone::of_host(request_host(&parts.headers, &parts.uri).as_deref());
        let response = self.token_response(&zone, &pairs, basic, form_type, connection);
        if let Some(record) = self.lock().requests.get_mut(index) {
            record.status = response.status().as_u16();
        }
        response
    }

    fn token_response(
        &self,
        zone: &Zone,
        pairs: &[(String, String)],
        basic: Option<(String, String)>,
        form_type: bool,
        connection: &Connection,
    ) -> Response {
        {
            let mut state = self.lock();
            if !state.canned.is_empty() {
                let (status, content_type, body) = state.canned.remove(0);
                let mut response = Response::new(Body::from(body));
                *response.status_mut() =
                    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::IM_A_TEAPOT);
                if let Ok(value) = http::HeaderValue::from_str(content_type) {
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, value);
                }
                return response;
            }
            if state.fail_remaining > 0 {
                state.fail_remaining -= 1;
                let status = state.fail_status;
                return oauth_error(status, error_code_for(status), "injected failure");
            }
        }
        if !form_type {
            return oauth_error(
                400,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            );
        }
        let field = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let client_id = match self.authenticate(field, basic, connection) {
            Ok(client_id) => client_id,
            Err(description) => return oauth_error(401, "invalid_client", &description),
        };
        let mut audiences = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                "resource" => match value.strip_prefix(RESOURCE_PREFIX) {
                    Some(dependency) if !dependency.is_empty() => {
                        audiences.push(dependency.to_owned())
                    }
                    _ => {
                        return oauth_error(
                            400,
                            "invalid_target",
                            &format!("unknown resource {value}"),
                        );
                    }
                },
                "audience" => audiences.extend(value.split_whitespace().map(str::to_owned)),
                _ => {}
            }
        }
        let requested_scopes: Option<Vec<String>> = field("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|s| !s.is_empty());
        let expires_in = self.lock().expires_in;
        match field("grant_type") {
            None => oauth_error(400, "invalid_request", "grant_type is missing"),
            Some("client_credentials") => {
                let scopes = requested_scopes
                    .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect());
                let (access_token, jti) = self.sign_token(
                    zone,
                    &client_id,
                    "client_credentials",
                    &scopes,
                    &audiences,
                    None,
                    expires_in,
                );
                Issued {
                    access_token,
                    jti,
                    scopes,
                    expires_in,
                    refresh_token: None,
                    id_token: None,
                }
                .response()
            }
            Some(JWT_BEARER) => {
                let Some(assertion) = field("assertion") else {
                    return oauth_error(400, "invalid_request", "assertion is missing");
                };
                let claims = match verify(assertion) {
                    Ok(claims) => claims,
                    Err(err) => {
                        return oauth_error(
                            401,
                            "invalid_grant",
                            &format!("invalid assertion: {err}"),
                        );
                    }
                };
                if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
                    return oauth_error(401, "invalid_grant", "the assertion has expired");
                }
                if claims["user_name"].is_null() && claims["user_id"].is_null() {
                    return oauth_error(401, "invalid_grant", "the assertion is not a user token");
                }
                if claims["zid"].as_str() != Some(zone.zid().as_str()) {
                    return oauth_error(
                        401,
                        "invalid_grant",
                        "the assertion was issued in another identity zone",
                    );
                }
                let user: serde_json::Map<String, Value> = USER_CLAIMS
                    .iter()
                    .filter_map(|name| {
                        claims
                            .get(*name)
                            .map(|value| ((*name).to_owned(), value.clone()))
                    })
                    .collect();
                let granted = string_array(&claims["scope"]);
                let scopes = match requested_scopes {
                    Some(requested) => requested
                        .into_iter()
                        .filter(|s| granted.contains(s))
                        .collect(),
                    None => granted,
                };
                self.user_grant(
                    zone, client_id, JWT_BEARER, user, scopes, audiences, expires_in,
                )
                .response()
            }
            Some("refresh_token") => {
                let Some(refresh_token) = field("refresh_token") else {
                    return oauth_error(400, "invalid_request", "refresh_token is missing");
                };
                let grant = {
                    let mut state = self.lock();
                    match state.refresh_tokens.get(refresh_token) {
                        Some(grant) if grant.client_id == client_id && grant.zone == *zone => {
                            state.refresh_tokens.remove(refresh_token)
                        }
                        _ => None,
                    }
                };
                let Some(grant) = grant else {
                    return oauth_error(401, "invalid_grant", "invalid refresh token");
                };
                let mut all_audiences = grant.audiences;
                all_audiences.extend(audiences);
                self.user_grant(
                    zone,
                    client_id,
                    "refresh_token",
                    grant.user,
                    grant.scopes,
                    all_audiences,
                    expires_in,
                )
                .response()
            }
            Some("authorization_code") => {
                let code = match self.redeem_code(zone, client_id.as_str(), field) {
                    Ok(code) => code,
                    Err((error, description)) => return oauth_error(400, error, &description),
                };
                let user = user_claims(&code.user);
                let id_token =
                    self.id_token(zone, &client_id, &user, code.nonce.as_deref(), expires_in);
                let mut issued = self.user_grant(
                    zone,
                    client_id,
                    "authorization_code",
                    user,
                    code.scopes,
                    audiences,
                    expires_in,
                );
                issued.id_token = Some(id_token);
                issued.response()
            }
            Some(other) => oauth_error(
                400,
                "unsupported_grant_type",
                &format!("unsupported grant type: {other}"),
            ),
        }
    }

    /// A token for a user, with a (single-use) refresh token.
    #[allow(clippy::too_many_arguments)]
    fn user_grant(
        &self,
        zone: &Zone,
        client_id: String,
        grant_type: &str,
        user: serde_json::Map<String, Value>,
        scopes: Vec<String>,
        audiences: Vec<String>,
        expires_in: u64,
    ) -> Issued {
        let (access_token, jti) = self.sign_token(
            zone,
            &client_id,
            grant_type,
            &scopes,
            &audiences,
            Some(&user),
            expires_in,
        );
        let refresh_token = format!("{}-r", random_hex(16));
        self.lock().refresh_tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                zone: zone.clone(),
                client_id,
                user,
                scopes: scopes.clone(),
                audiences,
            },
        );
        Issued {
            access_token,
            jti,
            scopes,
            expires_in,
            refresh_token: Some(refresh_token),
            id_token: None,
        }
    }

    /// Spends the code the token request presents (any presentation of a known code spends it,
    /// as in UAA) and checks it against the request: its client, the identical `redirect_uri`,
    /// its lifetime and the PKCE `code_verifier`. A refusal: its OAuth error code (answered with
    /// 400) and description.
    fn redeem_code<'a>(
        &self,
        zone: &Zone,
        client_id: &str,
        field: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<AuthCode, (&'static str, String)> {
        let Some(code) = field("code") else {
            return Err(("invalid_request", "code is missing".to_owned()));
        };
        let invalid = |description: &str| Err(("invalid_grant", description.to_owned()));
        let (grant, lifetime) = {
            let mut state = self.lock();
            (state.codes.remove(code), state.code_lifetime)
        };
        let Some(grant) = grant else {
            return invalid(&format!("Invalid authorization code: {code}"));
        };
        if grant.issued.elapsed() >= lifetime {
            return invalid(&format!("Invalid authorization code: {code} has expired"));
        }
        if grant.client_id != client_id {
            return invalid("the authorization code was issued to another client");
        }
        if grant.zone != *zone {
            return invalid(&format!("Invalid authorization code: {code}"));
        }
        if field("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return invalid("Redirect URI mismatch.");
        }
        match (&grant.code_challenge, field("code_verifier")) {
            (None, None) => {}
            (None, Some(_)) => {
                return invalid("Code verifier not required for this authorization code.");
            }
            (Some(_), None) => return invalid("Code verifier is missing."),
            (Some(_), Some(verifier)) if !is_pkce_string(verifier) => {
                return invalid("Code verifier must be 43 to 128 unreserved characters.");
            }
            (Some(challenge), Some(verifier)) => {
                if s256(verifier) != *challenge {
                    return invalid("Invalid code verifier.");
                }
            }
        }
        Ok(grant)
    }

    /// `GET /oauth/authorize` and `/oauth2/authorize`: the configured user logs in at once.
    /// Errors before a trustworthy `redirect_uri` is known answer 400; later ones redirect with
    /// `error` (RFC 6749 4.1.2.1).
    fn authorize(&self, zone: &Zone, query: Option<&str>) -> Response {
        let params = query_params(query);
        let mut state = self.lock();
        state.authorize_requests.push(params.clone());
        let Some(client_id) = params.get("client_id") else {
            return oauth_error(400, "invalid_request", "client_id is missing");
        };
        if !state.clients.contains_key(client_id) {
            return oauth_error(
                400,
                "invalid_client",
                &format!("No client with requested id: {client_id}"),
            );
        }
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return oauth_error(400, "invalid_request", "redirect_uri is missing");
        };
        let target = match url::Url::parse(redirect_uri) {
            Ok(target) if target.fragment().is_none() && !target.cannot_be_a_base() => target,
            _ => {
                return oauth_error(
                    400,
                    "invalid_request",
                    "redirect_uri must be an absolute URI without a fragment",
                );
            }
        };
        let app_state = params.get("state").map(String::as_str);
        let redirect = |pairs: &[(&str, &str)]| {
            let mut target = target.clone();
            {
                let mut query = target.query_pairs_mut();
                for (name, value) in pairs {
                    query.append_pair(name, value);
                }
                if let Some(app_state) = app_state {
                    query.append_pair("state", app_state);
                }
            }
            found(target.as_str())
        };
        if params.get("response_type").map(String::as_str) != Some("code") {
            return redirect(&[("error", "unsupported_response_type")]);
        }
        let code_challenge = match (
            params.get("code_challenge"),
            params.get("code_challenge_method").map(String::as_str),
        ) {
            (None, None) => None,
            (None, Some(_)) => {
                return redirect(&[
                    ("error", "invalid_request"),
                    ("error_description", "code_challenge is missing"),
                ]);
            }
            // Without a method, the challenge would be "plain" (RFC 7636 4.3): unsupported.
            (Some(_), method) if method != Some("S256") => {
                return redirect(&[
                    ("error", "invalid_request"),
                    (
                        "error_description",
                        "Unsupported code challenge method. Supported: S256",
                    ),
                ]);
            }
            (Some(challenge), _) if !is_pkce_string(challenge) => {
                return redirect(&[
                    ("error", "invalid_request"),
                    (
                        "error_description",
                        "Code challenge must be 43 to 128 unreserved characters.",
                    ),
                ]);
            }
            (Some(challenge), _) => Some(challenge.clone()),
        };
        if state.login_denied {
            return redirect(&[("error", "access_denied")]);
        }
        let code = random_hex(16);
        let grant = AuthCode {
            zone: zone.clone(),
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge,
            nonce: params.get("nonce").cloned(),
            user: state.login_user.clone(),
            scopes: state.login_scopes.clone(),
            issued: Instant::now(),
        };
        state.codes.insert(code.clone(), grant);
        redirect(&[("code", &code)])
    }

    /// `GET /logout.do` (XSUAA: `redirect`) and `/oauth2/logout` (IAS: `post_logout_redirect_uri`,
    /// handing `state` back).
    fn logout(&self, path: &str, query: Option<&str>) -> Response {
        let params = query_params(query);
        self.lock().logout_requests.push(params.clone());
        let target = if path == "/logout.do" {
            params.get("redirect").cloned()
        } else {
            match params.get("post_logout_redirect_uri") {
                None => None,
                Some(uri) => match url::Url::parse(uri) {
                    Ok(mut target) => {
                        if let Some(app_state) = params.get("state") {
                            target.query_pairs_mut().append_pair("state", app_state);
                        }
                        Some(target.to_string())
                    }
                    Err(_) => {
                        return oauth_error(
                            400,
                            "invalid_request",
                            "post_logout_redirect_uri is not an absolute URI",
                        );
                    }
                },
            }
        };
        match target {
            Some(target) => found(&target),
            None => {
                let mut response = Response::new(Body::from("logged out"));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain;charset=UTF-8"),
                );
                response
            }
        }
    }

    /// The authenticated client id, or why the client is not authenticated.
    fn authenticate<'a>(
        &self,
        field: impl Fn(&str) -> Option<&'a str>,
        basic: Option<(String, String)>,
        connection: &Connection,
    ) -> Result<String, String> {
        let state = self.lock();
        let form_id = field("client_id");
        let secret_matches = |id: &str, secret: &str| {
            state
                .clients
                .get(id)
                .is_some_and(|client| client.secret.as_deref() == Some(secret))
        };
        if let Some((id, secret)) = basic {
            // As sent, or form-url-decoded.
            let (decoded_id, decoded_secret) = (form_unescape(&id), form_unescape(&secret));
            let client_id = if secret_matches(&id, &secret) {
                id
            } else if secret_matches(&decoded_id, &decoded_secret) {
                decoded_id
            } else {
                return Err("Bad credentials".to_owned());
            };
            return match form_id {
                Some(form_id) if form_id != client_id => {
                    Err("client_id differs from the Basic credentials".to_owned())
                }
                _ => Ok(client_id),
            };
        }
        let Some(client_id) = form_id else {
            return Err("no client authentication".to_owned());
        };
        if let Some(secret) = field("client_secret") {
            return if secret_matches(client_id, secret) {
                Ok(client_id.to_owned())
            } else {
                Err("Bad credentials".to_owned())
            };
        }
        if !connection.via_mtls {
            return Err("client_secret is missing".to_owned());
        }
        let Some(client) = state.clients.get(client_id) else {
            return Err("Bad credentials".to_owned());
        };
        match (&client.cert_cn, &connection.cert_cn) {
            (Some(expected), Some(presented)) if expected == presented => Ok(client_id.to_owned()),
            (Some(_), _) => Err("the client certificate does not belong to this client".to_owned()),
            (None, _) => Err("this client does not authenticate with a certificate".to_owned()),
        }
    }

    /// An RS256 JWT shaped like XSUAA's, and its `jti`.
    #[allow(clippy::too_many_arguments)]
    fn sign_token(
        &self,
        zone: &Zone,
        client_id: &str,
        grant_type: &str,
        scopes: &[String],
        extra_audiences: &[String],
        user: Option<&serde_json::Map<String, Value>>,
        expires_in: u64,
    ) -> (String, String) {
        let claims = self.token_claims(
            zone,
            client_id,
            grant_type,
            scopes,
            extra_audiences,
            user,
            expires_in,
        );
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        (self.sign(zone, &claims), jti)
    }

    /// The claims of a token shaped like XSUAA's.
    #[allow(clippy::too_many_arguments)]
    fn token_claims(
        &self,
        zone: &Zone,
        client_id: &str,
        grant_type: &str,
        scopes: &[String],
        extra_audiences: &[String],
        user: Option<&serde_json::Map<String, Value>>,
        expires_in: u64,
    ) -> Value {
        // XSUAA: the client, the xsappnames of the scopes, and what was asked for.
        let mut audiences = vec![client_id.to_owned()];
        let scope_audiences = scopes
            .iter()
            .filter(|s| s.as_str() != "openid")
            .filter_map(|s| s.split_once('.').map(|(prefix, _)| prefix.to_owned()));
        for audience in scope_audiences.chain(extra_audiences.iter().cloned()) {
            if !audiences.contains(&audience) {
                audiences.push(audience);
            }
        }
        let iat = now();
        let mut claims = json!({
            "jti": random_hex(16),
            "ext_attr": { "enhancer": "XSUAA", "zdn": zone.zdn() },
            "sub": client_id,
            "scope": scopes,
            "client_id": client_id,
            "cid": client_id,
            "azp": client_id,
            "grant_type": grant_type,
            "iat": iat,
            "exp": iat + expires_in,
            "iss": self.issuer(zone),
            "zid": zone.zid(),
            "aud": audiences,
        });
        match user {
            Some(user) => {
                for (name, value) in user {
                    claims[name] = value.clone();
                }
                // The user's zone is the one that issues the token.
                if let Some(ext_attr) = claims["ext_attr"].as_object_mut() {
                    ext_attr.insert("zdn".to_owned(), json!(zone.zdn()));
                }
            }
            None => claims["authorities"] = json!(scopes),
        }
        claims
    }

    /// An OpenID Connect ID token for `user`, logged in at `client_id`.
    fn id_token(
        &self,
        zone: &Zone,
        client_id: &str,
        user: &serde_json::Map<String, Value>,
        nonce: Option<&str>,
        expires_in: u64,
    ) -> String {
        let iat = now();
        let mut claims = json!({
            "jti": random_hex(16),
            "iss": self.issuer(zone),
            "aud": client_id,
            "azp": client_id,
            "cid": client_id,
            "iat": iat,
            "exp": iat + expires_in,
            "auth_time": iat,
            "amr": ["pwd"],
            "zid": zone.zid(),
        });
        for name in [
            "sub",
            "user_name",
            "user_id",
            "user_uuid",
            "origin",
            "email",
            "given_name",
            "family_name",
        ] {
            if let Some(value) = user.get(name) {
                claims[name] = value.clone();
            }
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(zone, &claims)
    }

    /// The zone's URL on the plain listener: `url` for the default zone.
    fn zone_base(&self, zone: &Zone) -> String {
        match &zone.subdomain {
            None => self.url.clone(),
            Some(sub) => format!("http://{sub}.localhost:{}", self.port),
        }
    }

    /// The `iss` of the zone's tokens: the XSUAA token endpoint on the plain listener.
    fn issuer(&self, zone: &Zone) -> String {
        format!("{}/oauth/token", self.zone_base(zone))
    }

    /// `claims` signed with the service key, naming the zone's key URL.
    fn sign(&self, zone: &Zone, claims: &Value) -> String {
        sign_jwt(
            signing_key(),
            Some(&format!("{}/token_keys", self.zone_base(zone))),
            claims,
        )
    }
}

/// `Authorization: Basic base64(id:secret)` → (id, secret) as sent.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(credentials.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// RFC 6749 2.3.1 form-url-encodes id and secret before Basic encoding; many clients do not.
fn form_unescape(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| s.to_owned())
}
