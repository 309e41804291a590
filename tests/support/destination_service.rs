//! A Destination-service test server on loopback, faithful to the "find destination" REST API:
//! `GET /destination-configuration/v1/destinations/{name}`, answered only for a bearer token the
//! test token service issued to the binding's client (RS256 checked against its key set, client
//! and expiry checked), with `owner`, `destinationConfiguration`, `authTokens` and
//! `certificates` as the real service sends them, and 404 with an `ErrorMessage` for unknown
//! names.
//!
//! As the real service does, it obtains `authTokens` itself from the destination's
//! `tokenServiceURL`: client_credentials for `OAuth2ClientCredentials`, and for
//! `OAuth2UserTokenExchange` / `OAuth2JWTBearer` the `X-user-token` exchanged (jwt-bearer); a
//! missing user token or a failed token request is an `error` in the token, with status 200.
//! Every lookup is recorded (name, `X-user-token`, status); failures and delays can be injected.
//! PKCS#12 keystores for `ClientCertificateAuthentication` are built here from rcgen leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::pki::{Leaf, Pki};
use super::token_service::{JWT_BEARER, TokenService};

/// The path prefix of the find-destination call.
pub const FIND_PATH: &str = "/destination-configuration/v1/destinations/";

/// One lookup, as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub name: String,
    /// The `X-user-token` header, if sent.
    pub user_token: Option<String>,
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Entry {
    configuration: Value,
    /// Files for `KeyStoreLocation` / `TrustStoreLocation`: name and bytes.
    files: Vec<(String, Vec<u8>)>,
    token_error: Option<String>,
}

struct Inner {
    client_id: String,
    /// The token service's RSA key (modulus, exponent).
    key: (Vec<u8>, Vec<u8>),
    destinations: Mutex<HashMap<String, Entry>>,
    lookups: Mutex<Vec<Lookup>>,
    fail: Mutex<(usize, u16)>,
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    http: reqwest::Client,
}

/// A running Destination service.
pub struct DestinationService {
    /// `http://127.0.0.1:P`: the binding's `uri`.
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DestinationService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl DestinationService {
    /// Starts the service; lookups need a token `token_service` issued to `client_id`.
    pub async fn start(token_service: &TokenService, client_id: &str) -> Self {
        let jwks = token_service.jwks();
        let decode = |field: &str| {
            URL_SAFE_NO_PAD
                .decode(jwks["keys"][0][field].as_str().expect("jwks field"))
                .expect("base64url")
        };
        let inner = Arc::new(Inner {
            client_id: client_id.to_owned(),
            key: (decode("n"), decode("e")),
            destinations: Mutex::new(HashMap::new()),
            lookups: Mutex::new(Vec::new()),
            fail: Mutex::new((0, 500)),
            delay: Mutex::new(Duration::ZERO),
            in_flight: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route(&format!("{FIND_PATH}{{name}}"), axum::routing::get(find))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{}", addr.port()),
            inner,
            task,
        }
    }

    /// A `VCAP_SERVICES` instance of this service with a client secret at `token_service`.
    pub fn binding(&self, token_service: &TokenService, secret: &str) -> Value {
        json!({"name": "destination-service", "label": "destination", "plan": "lite",
               "tags": ["destination", "conn", "connsvc"],
               "credentials": {"uri": self.url, "clientid": self.inner.client_id,
                               "clientsecret": secret, "url": token_service.url,
                               "identityzone": "test", "tenantid": "t1"}})
    }

    /// Adds (or replaces) a destination: its `destinationConfiguration` (with `Name`).
    pub fn put(&self, configuration: Value) {
        self.put_with_files(configuration, Vec::new());
    }

    /// Adds a destination with certificate files named by `KeyStoreLocation` /
    /// `TrustStoreLocation`.
    pub fn put_with_files(&self, configuration: Value, files: Vec<(String, Vec<u8>)>) {
        let name = configuration["Name"].as_str().expect("Name").to_owned();
        self.inner.destinations.lock().expect("lock").insert(
            name,
            Entry {
                configuration,
                files,
                token_error: None,
            },
        );
    }

    /// From now on the destination's token carries this `error` (None: tokens again).
    pub fn set_token_error(&self, name: &str, error: Option<&str>) {
        if let Some(entry) = self.inner.destinations.lock().expect("lock").get_mut(name) {
            entry.token_error = error.map(str::to_owned);
        }
    }

    /// The next `n` lookups answer `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        *self.inner.fail.lock().expect("lock") = (n, status);
    }

    /// Delay before each answer.
    pub fn set_delay(&self, delay: Duration) {
        *self.inner.delay.lock().expect("lock") = delay;
    }

    /// Every lookup so far, failed ones included.
    pub fn lookups(&self) -> Vec<Lookup> {
        self.inner.lookups.lock().expect("lock").clone()
    }

    pub fn lookup_count(&self) -> usize {
        self.inner.lookups.lock().expect("lock").len()
    }
}

impl Inner {
    /// Whether `authorization` is a live bearer token of the binding's client.
    fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(jwt) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let [_, payload, signature] = parts.as_slice() else {
            return false;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let signed = &jwt[..jwt.len() - parts[2].len() - 1];
        let verified = ring::signature::RsaPublicKeyComponents {
            n: &self.key.0,
            e: &self.key.1,
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        );
        let claims: Option<Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        verified.is_ok()
            && claims.is_some_and(|claims| {
                claims["cid"] == self.client_id.as_str()
                    && claims["exp"].as_u64().is_some_and(|exp| exp > now())
            })
    }

    /// A token from the destination's `tokenServiceURL` for `form`, as an `authTokens` entry.
    async fn token(&self, configuration: &Value, mut form: Vec<(&str, String)>) -> Value {
        let field = |key: &str| configuration[key].as_str().unwrap_or_default().to_owned();
        form.push(("client_id", field("clientId")));
        form.push(("client_secret", field("clientSecret")));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let answer = self
            .http
            .post(field("tokenServiceURL"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await;
        let failed = |reason: String| {
            json!({"type": "", "value": "",
                   "error": format!("Retrieval of OAuth token failed due to: {reason}")})
        };
        let response = match answer {
            Ok(response) => response,
            Err(err) => return failed(err.to_string()),
        };
        let status = response.status();
        let body: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => json!({
                "type": "bearer", "value": token,
                "http_header": {"key": "Authorization", "value": format!("Bearer {token}")},
                "expires_in": body["expires_in"].to_string(),
            }),
            _ => failed(format!("status {status}")),
        }
    }

    async fn auth_tokens(&self, entry: &Entry, user_token: Option<&str>) -> Option<Value> {
        if let Some(error) = &entry.token_error {
            return Some(json!([{"type": "", "value": "", "error": error}]));
        }
        let configuration = &entry.configuration;
        let token = match configuration["Authentication"].as_str() {
            Some("BasicAuthentication") => {
                let value = STANDARD.encode(format!(
                    "{}:{}",
                    configuration["User"].as_str().unwrap_or_default(),
                    configuration["Password"].as_str().unwrap_or_default()
                ));
                json!({"type": "Basic", "value": value,
                       "http_header": {"key": "Authorization", "value": format!("Basic {value}")}})
            }
            Some("OAuth2ClientCredentials") => {
                self.token(
                    configuration,
                    vec![("grant_type", "client_credentials".to_owned())],
                )
                .await
            }
            Some("OAuth2UserTokenExchange" | "OAuth2JWTBearer") => match user_token {
                Some(user) => {
                    self.token(
                        configuration,
                        vec![
                            ("grant_type", JWT_BEARER.to_owned()),
                            ("assertion", user.to_owned()),
                        ],
                    )
                    .await
                }
                None => json!({"type": "", "value": "",
                               "error": "No user token provided: the X-user-token header is required for this authentication type"}),
            },
            _ => return None,
        };
        Some(json!([token]))
    }
}

async fn find(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: http::HeaderMap,
) -> Response {
    let text = |key: &str| {
        headers
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let user_token = text("x-user-token");
    let authorization = text("authorization");
    drop(headers);
    inner.in_flight.fetch_add(1, Ordering::SeqCst);
    let delay = *inner.delay.lock().expect("lock");
    tokio::time::sleep(delay).await;
    let injected = {
        let mut fail = inner.fail.lock().expect("lock");
        if fail.0 > 0 {
            fail.0 -= 1;
            Some(fail.1)
        } else {
            None
        }
    };
    let entry = inner.destinations.lock().expect("lock").get(&name).cloned();
    let (status, body) = if let Some(status) = injected {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"ErrorMessage": "injected failure"}),
        )
    } else if !inner.authorized(authorization.as_deref()) {
        (
            StatusCode::UNAUTHORIZED,
            json!({"ErrorMessage": "Full authentication is required to access this resource"}),
        )
    } else if let Some(entry) = entry {
        let mut body = json!({
            "owner": {"SubaccountId": "6f2d5c3e-test-subaccount", "InstanceId": null},
            "destinationConfiguration": entry.configuration,
        });
        if let Some(tokens) = inner.auth_tokens(&entry, user_token.as_deref()).await {
            body["authTokens"] = tokens;
        }
        let referenced: Vec<&str> = ["KeyStoreLocation", "TrustStoreLocation"]
            .iter()
            .filter_map(|key| entry.configuration[*key].as_str())
            .collect();
        let certificates: Vec<Value> = entry
            .files
            .iter()
            .filter(|(name, _)| referenced.contains(&name.as_str()))
            .map(|(name, bytes)| json!({"Name": name, "Type": "CERTIFICATE", "Content": STANDARD.encode(bytes)}))
            .collect();
        if !certificates.is_empty() {
            body["certificates"] = json!(certificates);
        }
        (StatusCode::OK, body)
    } else {
        (
            StatusCode::NOT_FOUND,
            json!({"ErrorMessage": "Configuration with the specified name was not found"}),
        )
    };
    inner.lookups.lock().expect("lock").push(Lookup {
        name,
        user_token,
        status: status.as_u16(),
    });
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    json_response(status, &body)
}

/// A PKCS#12 keystore of `leaf` (key and chain leaf → intermediate → root of `pki`), encrypted
/// with `algorithm` under `password`, MAC'd with HMAC-SHA256 (SHA-1 for the legacy schemes, as
/// OpenSSL's legacy output).
pub fn pkcs12(
    leaf: &Leaf,
    pki: &Pki,
    password: &str,
    algorithm: p12_keystore::EncryptionAlgorithm,
) -> Vec<u8> {
    use p12_keystore::{
        Certificate, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
    };
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = match PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("leaf key") {
        PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        _ => panic!("PKCS#12 test keys must be PKCS#8"),
    };
    let der_of = |pem: &str| {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("certificate")
            .to_vec()
    };
    let chain = [
        der_of(&leaf.cert_pem),
        der_of(&pki.intermediate_pem()),
        der_of(&pki.root_pem()),
    ]
    .iter()
    .map(|der| Certificate::from_der(der).expect("p12 certificate"))
    .collect::<Vec<_>>();
    let mut store = KeyStore::new();
    store.add_entry(
        &leaf.cn,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
            b"local-key-1".to_vec(),
            PrivateKey::from_der(&key).expect("p12 key"),
            chain,
        )),
    );
    let mac = if algorithm == p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256 {
        MacAlgorithm::HmacSha256
    } else {
        MacAlgorithm::HmacSha1
    };
    store
        .writer(password)
        .encryption_algorithm(algorithm)
        .mac_algorithm(mac)
        .encryption_iterations(2048)
        .mac_iterations(2048)
        .write()
        .expect("write PKCS#12")
}
