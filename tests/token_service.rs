//! The test token service itself: client authentication (secret, Basic, certificate), grants,
//! token shape and signature, injected failures.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use support::client;
use support::pki::{KeyForm, Pki};
use support::token_service::{JWT_BEARER, RESOURCE_PREFIX, TokenService};

const CLIENT: &str = "sb-app!t1";
const SECRET: &str = "s3cr3t$with=signs";

struct Setup {
    service: TokenService,
    server_pki: Pki,
    client_pki: Pki,
}

async fn setup() -> Setup {
    let server_pki = Pki::new("token server");
    let client_pki = Pki::new("token clients");
    let service = TokenService::start(&server_pki, &client_pki).await;
    service.register_client(CLIENT, Some(SECRET), None);
    Setup {
        service,
        server_pki,
        client_pki,
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        form.append_pair(name, value);
    }
    form.finish()
}

/// POSTs the form; (status, JSON body).
async fn post(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    try_post(client, url, fields, basic)
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"))
}

async fn try_post(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut builder = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form(fields));
    if let Some((id, secret)) = basic {
        builder = builder.basic_auth(id, Some(secret));
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "{url} answered {status} without JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Ok((status, body))
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status(), 200, "GET {url}");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

/// A client for the mTLS listener trusting `server_pki`, presenting a certificate with CN `cn`
/// issued under `client_pki` (none: no client certificate).
fn mtls_client(server_pki: &Pki, client_pki: Option<(&Pki, &str)>) -> reqwest::Client {
    let leaf = client_pki.map(|(pki, cn)| (pki, pki.client(cn, KeyForm::EcPkcs8)));
    let config =
        support::pki::tls_client_config(server_pki, leaf.as_ref().map(|(pki, leaf)| (*pki, leaf)));
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("mTLS client")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

#[tokio::test]
async fn client_credentials_with_secret_in_the_form_and_with_basic() {
    let Setup { service, .. } = setup().await;
    let http = client();

    let url = service.token_url();
    let (status, body) = post(
        &http,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "uaa.resource");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().expect("access_token");
    let claims = service.claims(token);
    assert_eq!(claims["jti"], body["jti"]);
    for claim in ["sub", "cid", "azp", "client_id"] {
        assert_eq!(claims[claim], CLIENT, "{claim}");
    }
    assert_eq!(claims["grant_type"], "client_credentials");
    assert_eq!(claims["iss"], format!("{}/oauth/token", service.url));
    assert_eq!(strings(&claims["scope"]), ["uaa.resource"]);
    assert!(strings(&claims["aud"]).contains(&CLIENT), "{claims}");
    assert_eq!(claims["ext_attr"]["enhancer"], "XSUAA");
    assert!(claims["zid"].is_string());
    let (iat, exp) = (
        claims["iat"].as_u64().expect("iat"),
        claims["exp"].as_u64().expect("exp"),
    );
    assert_eq!(exp - iat, 3600);

    // HTTP Basic at the IAS-style endpoint, with a scope and an IAS resource.
    let resource = format!("{RESOURCE_PREFIX}backend-dep");
    let (status, body) = post(
        &http,
        &format!("{}/oauth2/token", service.url),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("scope", "app!t1.Read app!t1.Write"),
            ("resource", &resource),
        ],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "app!t1.Read app!t1.Write");
    let claims = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(strings(&claims["scope"]), ["app!t1.Read", "app!t1.Write"]);
    let aud = strings(&claims["aud"]);
    assert!(
        aud.contains(&CLIENT) && aud.contains(&"backend-dep"),
        "{aud:?}"
    );
    assert_ne!(claims["jti"], service.claims(token)["jti"], "jti unique");

    // Wrong and missing credentials.
    let (status, body) = post(
        &http,
        &url,
        &[("grant_type", "client_credentials")],
        Some((CLIENT, "wrong")),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );
    let (status, body) = post(
        &http,
        &url,
        &[("grant_type", "client_credentials"), ("client_id", CLIENT)],
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );
    let (status, body) = post(
        &http,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "unknown"),
            ("client_secret", SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );
    // Authenticated, but a grant the service does not know.
    let (status, body) = post(
        &http,
        &url,
        &[("grant_type", "password"), ("username", "u")],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("unsupported_grant_type"))
    );

    let requests = service.requests();
    assert_eq!(service.token_requests(), 6);
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 401, 401, 401, 400]
    );
    assert_eq!(requests[0].path, "/oauth/token");
    assert_eq!(requests[0].basic_client_id, None);
    assert_eq!(requests[0].form["client_secret"], SECRET);
    assert_eq!(requests[1].path, "/oauth2/token");
    assert_eq!(requests[1].basic_client_id.as_deref(), Some(CLIENT));
    assert_eq!(requests[1].form["resource"], resource);
    assert!(
        requests
            .iter()
            .all(|r| !r.via_mtls && r.client_cert_cn.is_none())
    );
}

#[tokio::test]
async fn mtls_listener_authenticates_by_certificate_cn() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    service.register_client("sb-cert!t1", None, Some("cert-client"));
    let url = service.cert_token_url();
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_id", "sb-cert!t1"),
    ];

    let right = mtls_client(&server_pki, Some((&client_pki, "cert-client")));
    let (status, body) = post(&right, &url, &grant, None).await;
    assert_eq!(status, 200, "{body}");
    let claims = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["cid"], "sb-cert!t1");
    // A secret client may use the certurl with its secret too.
    let (status, body) = post(
        &right,
        &format!("{}/oauth2/token", service.cert_url),
        &[("grant_type", "client_credentials")],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let wrong = mtls_client(&server_pki, Some((&client_pki, "someone-else")));
    let (status, body) = post(&wrong, &url, &grant, None).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );

    // No certificate, or one from another CA: the handshake fails.
    let rejected_before = service.rejected_handshakes();
    let none = mtls_client(&server_pki, None);
    assert!(try_post(&none, &url, &grant, None).await.is_err());
    let stranger_pki = Pki::new("strangers");
    let stranger = mtls_client(&server_pki, Some((&stranger_pki, "cert-client")));
    assert!(try_post(&stranger, &url, &grant, None).await.is_err());
    assert_eq!(service.rejected_handshakes(), rejected_before + 2);

    // Without a secret on the plain listener, the certificate client is not authenticated.
    let (status, body) = post(&client(), &service.token_url(), &grant, None).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );

    let requests = service.requests();
    assert_eq!(
        requests
            .iter()
            .map(|r| (r.via_mtls, r.client_cert_cn.as_deref(), r.status))
            .collect::<Vec<_>>(),
        [
            (true, Some("cert-client"), 200),
            (true, Some("cert-client"), 200),
            (true, Some("someone-else"), 401),
            (false, None, 401),
        ]
    );
    assert_eq!(service.token_requests(), 4);
}

#[tokio::test]
async fn jwt_bearer_exchanges_only_tokens_it_signed_and_refresh_rotates() {
    let Setup { service, .. } = setup().await;
    service.register_client("sb-other!t2", Some("other"), None);
    let http = client();
    let url = service.token_url();
    let login = service.issue_user_token("jane@example.com", "sb-login!t1", &["app!t1.Read"], 600);
    let login_claims = service.claims(&login);
    assert_eq!(login_claims["grant_type"], "authorization_code");

    let resource = format!("{RESOURCE_PREFIX}dep-a");
    let (status, body) = post(
        &http,
        &url,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &login),
            ("resource", &resource),
        ],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "app!t1.Read");
    let claims = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["grant_type"], JWT_BEARER);
    assert_eq!(claims["cid"], CLIENT);
    for claim in ["user_name", "user_id", "sub", "origin", "ext_attr", "email"] {
        assert_eq!(claims[claim], login_claims[claim], "{claim}");
    }
    assert_eq!(claims["user_name"], "jane@example.com");
    assert_eq!(strings(&claims["scope"]), ["app!t1.Read"]);
    assert!(strings(&claims["aud"]).contains(&"dep-a"), "{claims}");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();

    // Forged: the payload changed under the signature.
    let mut parts: Vec<String> = login.split('.').map(str::to_owned).collect();
    let mut payload = login_claims.clone();
    payload["user_name"] = "mallory".into();
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let forged = parts.join(".");
    let (status, body) = post(
        &http,
        &url,
        &[("grant_type", JWT_BEARER), ("assertion", &forged)],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_grant"))
    );
    // Unsigned, and expired.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        parts[1]
    );
    let expired = service.issue_user_token("jane@example.com", "sb-login!t1", &[], 0);
    for assertion in [unsigned.as_str(), expired.as_str()] {
        let (status, body) = post(
            &http,
            &url,
            &[("grant_type", JWT_BEARER), ("assertion", assertion)],
            Some((CLIENT, SECRET)),
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (401, &Value::from("invalid_grant"))
        );
    }

    // Refresh: a new token for the same user, a new refresh token; the old one is spent.
    let (status, body) = post(
        &http,
        &url,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(refreshed["user_name"], "jane@example.com");
    assert_eq!(refreshed["cid"], CLIENT);
    assert_eq!(refreshed["grant_type"], "refresh_token");
    let next = body["refresh_token"].as_str().expect("new refresh token");
    assert_ne!(next, refresh);
    for (token, who) in [
        (refresh.as_str(), (CLIENT, SECRET)),
        ("unknown-r", (CLIENT, SECRET)),
        (next, ("sb-other!t2", "other")),
    ] {
        let (status, body) = post(
            &http,
            &url,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
            Some(who),
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (401, &Value::from("invalid_grant"))
        );
    }
    // The rightful client can still use the newest one.
    let (status, _) = post(
        &http,
        &url,
        &[("grant_type", "refresh_token"), ("refresh_token", next)],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn injected_failures_delay_and_lifetime() {
    let Setup { service, .. } = setup().await;
    let http = client();
    let url = service.token_url();
    let grant = [("grant_type", "client_credentials")];

    service.fail_next(2, 503);
    for _ in 0..2 {
        let (status, body) = post(&http, &url, &grant, Some((CLIENT, SECRET))).await;
        assert_eq!(status, 503);
        assert!(body["error"].is_string(), "{body}");
    }
    service.fail_next(1, 429);
    let (status, _) = post(&http, &url, &grant, Some((CLIENT, SECRET))).await;
    assert_eq!(status, 429);

    service.set_expires_in(120);
    service.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = post(&http, &url, &grant, Some((CLIENT, SECRET))).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120);
    let claims = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        120
    );
    assert_eq!(service.token_requests(), 4);
    assert_eq!(
        service
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [503, 503, 429, 200]
    );
}

#[tokio::test]
async fn down_service_closes_connections_without_answering() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    service.register_client("sb-cert!t1", None, Some("cert-client"));
    let http = client();
    let mtls = mtls_client(&server_pki, Some((&client_pki, "cert-client")));
    let url = service.token_url();
    let grant = [("grant_type", "client_credentials")];
    let cert_grant = [
        ("grant_type", "client_credentials"),
        ("client_id", "sb-cert!t1"),
    ];

    // Pooled connections exist on both listeners.
    let (status, _) = post(&http, &url, &grant, Some((CLIENT, SECRET))).await;
    assert_eq!(status, 200);
    let (status, _) = post(&mtls, &service.cert_token_url(), &cert_grant, None).await;
    assert_eq!(status, 200);

    service.set_down(true);
    for _ in 0..2 {
        assert!(
            try_post(&http, &url, &grant, Some((CLIENT, SECRET)))
                .await
                .is_err()
        );
        assert!(
            try_post(&client(), &url, &grant, Some((CLIENT, SECRET)))
                .await
                .is_err()
        );
        assert!(
            try_post(&mtls, &service.cert_token_url(), &cert_grant, None)
                .await
                .is_err()
        );
    }
    assert!(
        client()
            .get(format!("{}/token_keys", service.url))
            .send()
            .await
            .is_err()
    );
    assert_eq!(service.token_requests(), 2);

    service.set_down(false);
    let (status, _) = post(&http, &url, &grant, Some((CLIENT, SECRET))).await;
    assert_eq!(status, 200);
    let (status, _) = post(&mtls, &service.cert_token_url(), &cert_grant, None).await;
    assert_eq!(status, 200);
    assert_eq!(service.token_requests(), 4);
}

#[tokio::test]
async fn jwks_verifies_tokens_and_discovery_names_each_listener() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    let http = client();
    let (status, body) = post(
        &http,
        &service.token_url(),
        &[("grant_type", "client_credentials")],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().expect("token");
    let mut parts = token.split('.');
    let (header_b64, payload, signature) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    assert!(parts.next().is_none());
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("b64")).expect("JSON");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["jku"], format!("{}/token_keys", service.url));

    let jwks = get_json(&http, &format!("{}/token_keys", service.url)).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kid"], header["kid"]);
    assert_eq!(
        (&key["kty"], &key["alg"], &key["use"]),
        (&"RSA".into(), &"RS256".into(), &"sig".into())
    );
    let n = URL_SAFE_NO_PAD
        .decode(key["n"].as_str().expect("n"))
        .expect("n b64url");
    let e = URL_SAFE_NO_PAD
        .decode(key["e"].as_str().expect("e"))
        .expect("e b64url");
    assert_eq!(n.len(), 256, "RSA-2048");
    let public = ring::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("signature b64url");
    let signed = format!("{header_b64}.{payload}");
    public
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        )
        .expect("signature verifies with the JWKS key");
    let mut tampered = signed.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                &tampered,
                &signature
            )
            .is_err()
    );
    assert_eq!(service.jwks(), jwks);

    // Discovery on each listener points at that listener.
    let plain = get_json(
        &http,
        &format!("{}/.well-known/openid-configuration", service.url),
    )
    .await;
    assert_eq!(
        plain["token_endpoint"],
        format!("{}/oauth2/token", service.url)
    );
    assert_eq!(plain["jwks_uri"], format!("{}/token_keys", service.url));
    assert!(strings(&plain["grant_types_supported"]).contains(&JWT_BEARER));
    let mtls = mtls_client(&server_pki, Some((&client_pki, "anyone")));
    let cert = get_json(
        &mtls,
        &format!("{}/.well-known/openid-configuration", service.cert_url),
    )
    .await;
    assert_eq!(
        cert["token_endpoint"],
        format!("{}/oauth2/token", service.cert_url)
    );
    assert!(cert["issuer"].is_string());

    // Basic credentials arrive as sent.
    let basic = STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    let response = http
        .post(service.token_url())
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    // A body that is not a form is refused.
    let response = http
        .post(service.token_url())
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 400);
}

// --- The browser login: authorization code with PKCE, logout, discovery ---

const CALLBACK: &str = "https://app.example/login/callback?tenant=t1";

/// A PKCE code verifier (43 unreserved characters and more).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk.test~verifier";

/// BASE64URL(SHA-256(verifier)), computed independently of the service.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// GETs `url` with the query; (status, Location, body). The client must not follow redirects.
async fn get_query(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let url = format!("{url}?{}", form(query));
    let response = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().expect("Location is ASCII").to_owned());
    let body = response.text().await.expect("body");
    (status, location, body)
}

/// The redirect's target without its query, and its query parameters in order.
fn split_redirect(location: &str) -> (String, Vec<(String, String)>) {
    let url = url::Url::parse(location).unwrap_or_else(|err| panic!("{location}: {err}"));
    let pairs = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut base = url.clone();
    base.set_query(None);
    (base.to_string(), pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let value = values.next().map(String::as_str);
    assert!(values.next().is_none(), "{name} repeated in {pairs:?}");
    value
}

/// Authorizes at `authorize_url` for `client_id` with PKCE (`S256` of `verifier`) and returns
/// the code from the redirect to `CALLBACK`.
async fn login_code(
    client: &reqwest::Client,
    authorize_url: &str,
    client_id: &str,
    verifier: Option<&str>,
) -> String {
    let challenge = verifier.map(challenge);
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
    ];
    if let Some(challenge) = &challenge {
        query.push(("code_challenge", challenge));
        query.push(("code_challenge_method", "S256"));
    }
    let (status, location, body) = get_query(client, authorize_url, &query).await;
    assert_eq!(status, 302, "{body}");
    let (base, pairs) = split_redirect(&location.expect("Location"));
    assert_eq!(base, "https://app.example/login/callback");
    assert_eq!(param(&pairs, "state"), None, "no state was sent");
    param(&pairs, "code").expect("code").to_owned()
}

fn code_grant<'a>(code: &'a str, verifier: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut grant = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
    ];
    if let Some(verifier) = verifier {
        grant.push(("code_verifier", verifier));
    }
    grant
}

fn assert_invalid_grant(status: u16, body: &Value) {
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_grant")),
        "{body}"
    );
}

#[tokio::test]
async fn authorization_code_with_pkce_round_trip() {
    let Setup { service, .. } = setup().await;
    service.set_login_user("bob@example.com", &["openid", "app!t1.Read"]);
    let http = client();
    let app_state = "st&ate=1/ü";
    let code_challenge = challenge(VERIFIER);
    assert_eq!(code_challenge.len(), 43);
    let query = [
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", CALLBACK),
        ("state", app_state),
        ("code_challenge", code_challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", "openid"),
        ("login_hint", r#"{"origin":"corp-idp"}"#),
        ("nonce", "n-0S6_WzA2Mj"),
    ];
    let (status, location, body) = get_query(&http, &service.authorize_url(), &query).await;
    assert_eq!(status, 302, "{body}");
    let location = location.expect("Location");
    let (base, pairs) = split_redirect(&location);
    assert_eq!(base, "https://app.example/login/callback");
    assert_eq!(
        pairs[0],
        ("tenant".to_owned(), "t1".to_owned()),
        "{location}"
    );
    assert_eq!(param(&pairs, "state"), Some(app_state));
    assert_eq!(param(&pairs, "error"), None);
    let code = param(&pairs, "code").expect("code").to_owned();
    assert!(code.len() >= 16, "{code}");

    let recorded = service.authorize_requests();
    assert_eq!(recorded.len(), 1);
    let expected: std::collections::BTreeMap<String, String> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(recorded[0], expected);

    let (status, body) = post(
        &http,
        &service.token_url(),
        &code_grant(&code, Some(VERIFIER)),
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid app!t1.Read");
    let access = service.claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!(access["user_name"], "bob@example.com");
    assert_eq!(access["email"], "bob@example.com");
    assert!(access["user_id"].is_string(), "{access}");
    assert_eq!(access["sub"], access["user_id"]);
    assert_eq!(access["grant_type"], "authorization_code");
    assert_eq!(
        (&access["cid"], &access["azp"]),
        (&CLIENT.into(), &CLIENT.into())
    );
    assert_eq!(strings(&access["scope"]), ["openid", "app!t1.Read"]);
    let aud = strings(&access["aud"]);
    assert!(aud.contains(&CLIENT) && aud.contains(&"app!t1"), "{aud:?}");
    assert_eq!(access["iss"], service.token_url());

    let id = service.claims(body["id_token"].as_str().expect("id_token"));
    assert_eq!(id["sub"], access["user_id"]);
    assert_eq!(id["aud"], CLIENT);
    assert_eq!(id["iss"], service.token_url());
    assert_eq!(id["user_name"], "bob@example.com");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    let (iat, exp) = (
        id["iat"].as_u64().expect("iat"),
        id["exp"].as_u64().expect("exp"),
    );
    assert_eq!(exp - iat, 3600);
    assert!(id.get("scope").is_none(), "{id}");

    // The refresh token stands for the same login.
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = post(
        &http,
        &service.token_url(),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(refreshed["user_name"], "bob@example.com");
    assert_eq!(strings(&refreshed["scope"]), ["openid", "app!t1.Read"]);

    let requests = service.requests();
    assert_eq!(requests[0].grant_type(), Some("authorization_code"));
    assert_eq!(requests[0].form["code_verifier"], VERIFIER);
    assert_eq!(requests[0].status, 200);
}

#[tokio::test]
async fn authorization_code_on_the_ias_endpoints_of_the_mtls_listener() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    service.register_client("sb-cert!t1", None, Some("cert-client"));
    let mtls = mtls_client(&server_pki, Some((&client_pki, "cert-client")));
    // Default login user.
    let code = login_code(
        &mtls,
        &format!("{}/oauth2/authorize", service.cert_url),
        "sb-cert!t1",
        Some(VERIFIER),
    )
    .await;
    let mut grant = code_grant(&code, Some(VERIFIER));
    grant.push(("client_id", "sb-cert!t1"));
    let (status, body) = post(
        &mtls,
        &format!("{}/oauth2/token", service.cert_url),
        &grant,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
    let access = service.claims(body["access_token"].as_str().expect("token"));
    assert_eq!(access["user_name"], "alice");
    assert_eq!(access["cid"], "sb-cert!t1");
    let id = service.claims(body["id_token"].as_str().expect("id_token"));
    assert_eq!(id["aud"], "sb-cert!t1");
    assert_eq!(id["user_name"], "alice");
    assert!(id.get("nonce").is_none(), "{id}");
    let requests = service.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].via_mtls);
    assert_eq!(requests[0].path, "/oauth2/token");

    // The plain listener's IAS authorize endpoint, too.
    let code = login_code(
        &client(),
        &format!("{}/oauth2/authorize", service.url),
        CLIENT,
        None,
    )
    .await;
    let (status, body) = post(
        &client(),
        &format!("{}/oauth2/token", service.url),
        &code_grant(&code, None),
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(service.authorize_requests().len(), 2);
}

#[tokio::test]
async fn authorization_code_refuses_wrong_verifier_reuse_and_redirect_mismatch() {
    let Setup { service, .. } = setup().await;
    service.register_client("sb-other!t2", Some("other"), None);
    let http = client();
    let token_url = service.token_url();
    let authorize_url = service.authorize_url();
    let me = Some((CLIENT, SECRET));

    // A wrong verifier is refused, and spends the code.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let wrong = format!("{VERIFIER}x");
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(&wrong)), me).await;
    assert_invalid_grant(status, &body);
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_invalid_grant(status, &body);

    // Missing verifier; verifier too short to be one.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, None), me).await;
    assert_invalid_grant(status, &body);
    let short = "abc";
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(short)), me).await;
    assert_invalid_grant(status, &body);

    // A code is good once.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_invalid_grant(status, &body);

    // The redirect_uri must be the identical string, and present.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let mismatch = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/login/callback"),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = post(&http, &token_url, &mismatch, me).await;
    assert_invalid_grant(status, &body);
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let missing = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = post(&http, &token_url, &missing, me).await;
    assert_invalid_grant(status, &body);

    // Bound to the client it was issued to.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(
        &http,
        &token_url,
        &code_grant(&code, Some(VERIFIER)),
        Some(("sb-other!t2", "other")),
    )
    .await;
    assert_invalid_grant(status, &body);

    // Client authentication as for every grant: a wrong secret does not spend the code.
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let grant = code_grant(&code, Some(VERIFIER));
    let (status, body) = post(&http, &token_url, &grant, Some((CLIENT, "wrong"))).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );
    let (status, body) = post(&http, &token_url, &grant, me).await;
    assert_eq!(status, 200, "{body}");

    // Without PKCE no verifier is expected, and one is refused.
    let code = login_code(&http, &authorize_url, CLIENT, None).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_invalid_grant(status, &body);
    let code = login_code(&http, &authorize_url, CLIENT, None).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, None), me).await;
    assert_eq!(status, 200, "{body}");

    // Unknown, missing and expired codes.
    let (status, body) = post(&http, &token_url, &code_grant("nope", Some(VERIFIER)), me).await;
    assert_invalid_grant(status, &body);
    let (status, body) = post(
        &http,
        &token_url,
        &[
            ("grant_type", "authorization_code"),
            ("redirect_uri", CALLBACK),
        ],
        me,
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_request"))
    );
    service.set_code_lifetime(Duration::ZERO);
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_invalid_grant(status, &body);
    service.set_code_lifetime(Duration::from_secs(60));
    let code = login_code(&http, &authorize_url, CLIENT, Some(VERIFIER)).await;
    let (status, body) = post(&http, &token_url, &code_grant(&code, Some(VERIFIER)), me).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(
        service
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [
            400, 400, 400, 400, 200, 400, 400, 400, 400, 401, 200, 400, 200, 400, 400, 400, 200
        ]
    );
}

#[tokio::test]
async fn authorize_refuses_unknown_clients_and_redirects_errors() {
    let Setup { service, .. } = setup().await;
    let http = client();
    let url = service.authorize_url();
    let code_challenge = challenge(VERIFIER);

    // Nowhere trustworthy to redirect to: 400.
    for query in [
        vec![
            ("response_type", "code"),
            ("client_id", "unknown"),
            ("redirect_uri", CALLBACK),
        ],
        vec![("response_type", "code"), ("redirect_uri", CALLBACK)],
        vec![("response_type", "code"), ("client_id", CLIENT)],
        vec![
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", "https://app.example/cb#fragment"),
        ],
    ] {
        let (status, location, body) = get_query(&http, &url, &query).await;
        assert_eq!((status, location), (400, None), "{query:?}: {body}");
    }

    // Errors after that go back to the client, with its state.
    for (query, error) in [
        (
            vec![
                ("response_type", "token"),
                ("client_id", CLIENT),
                ("redirect_uri", CALLBACK),
            ],
            "unsupported_response_type",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", CLIENT),
                ("redirect_uri", CALLBACK),
                ("code_challenge", code_challenge.as_str()),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", CLIENT),
                ("redirect_uri", CALLBACK),
                ("code_challenge", code_challenge.as_str()),
            ],
            "invalid_request",
        ),
    ] {
        let mut query = query;
        query.push(("state", "s1"));
        let (status, location, body) = get_query(&http, &url, &query).await;
        assert_eq!(status, 302, "{query:?}: {body}");
        let (base, pairs) = split_redirect(&location.expect("Location"));
        assert_eq!(base, "https://app.example/login/callback");
        assert_eq!(param(&pairs, "error"), Some(error), "{query:?}");
        assert_eq!(param(&pairs, "state"), Some("s1"));
        assert_eq!(param(&pairs, "code"), None);
    }

    // A denied login.
    service.set_login_denied(true);
    let (status, location, _) = get_query(
        &http,
        &format!("{}/oauth2/authorize", service.url),
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", "https://app.example/cb"),
            ("state", "xyz"),
            ("code_challenge", &code_challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example/cb?error=access_denied&state=xyz")
    );
    service.set_login_denied(false);
    let code = login_code(&http, &url, CLIENT, Some(VERIFIER)).await;
    assert!(!code.is_empty());

    // Only GET.
    let response = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("response_type", "code"), ("client_id", CLIENT)]))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 405);

    let recorded = service.authorize_requests();
    assert_eq!(recorded.len(), 9);
    assert_eq!(recorded[0]["client_id"], "unknown");
    assert_eq!(recorded[7]["state"], "xyz");
    assert_eq!(service.token_requests(), 0);
}

#[tokio::test]
async fn logout_endpoints_record_and_redirect() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    let http = client();

    let (status, location, _) = get_query(
        &http,
        &service.logout_url(),
        &[
            ("redirect", "https://app.example/logged-out.html?x=1"),
            ("client_id", CLIENT),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example/logged-out.html?x=1")
    );

    let mtls = mtls_client(&server_pki, Some((&client_pki, "anyone")));
    let (status, location, _) = get_query(
        &mtls,
        &format!("{}/oauth2/logout", service.cert_url),
        &[
            ("post_logout_redirect_uri", "https://app.example/bye"),
            ("id_token_hint", "eyJ.id.token"),
            ("state", "s-9"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example/bye?state=s-9")
    );

    for url in [
        service.logout_url(),
        format!("{}/oauth2/logout", service.url),
    ] {
        let (status, location, body) = get_query(&http, &url, &[("client_id", CLIENT)]).await;
        assert_eq!((status, location, body.as_str()), (200, None, "logged out"));
    }

    let recorded = service.logout_requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(
        recorded[0]["redirect"],
        "https://app.example/logged-out.html?x=1"
    );
    assert_eq!(recorded[0]["client_id"], CLIENT);
    assert_eq!(
        recorded[1]["post_logout_redirect_uri"],
        "https://app.example/bye"
    );
    assert_eq!(recorded[1]["id_token_hint"], "eyJ.id.token");
    assert_eq!(recorded[3].len(), 1);
    assert!(service.authorize_requests().is_empty());
}

#[tokio::test]
async fn discovery_names_the_login_endpoints_of_each_listener() {
    let Setup {
        service,
        server_pki,
        client_pki,
    } = setup().await;
    let mtls = mtls_client(&server_pki, Some((&client_pki, "anyone")));
    for (http, base) in [(client(), &service.url), (mtls, &service.cert_url)] {
        let discovery = get_json(&http, &format!("{base}/.well-known/openid-configuration")).await;
        let authorize = discovery["authorization_endpoint"]
            .as_str()
            .expect("authorization_endpoint");
        assert_eq!(authorize, format!("{base}/oauth2/authorize"));
        let end_session = discovery["end_session_endpoint"]
            .as_str()
            .expect("end_session_endpoint");
        assert_eq!(end_session, format!("{base}/oauth2/logout"));
        assert_eq!(
            strings(&discovery["code_challenge_methods_supported"]),
            ["S256"]
        );
        assert!(strings(&discovery["response_types_supported"]).contains(&"code"));
        let grants = strings(&discovery["grant_types_supported"]);
        for grant in [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            JWT_BEARER,
        ] {
            assert!(grants.contains(&grant), "{grants:?}");
        }
        // The advertised endpoints answer.
        let code = login_code(&http, authorize, CLIENT, Some(VERIFIER)).await;
        assert!(!code.is_empty());
        let (status, _, _) = get_query(&http, end_session, &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(service.authorize_requests().len(), 2);
    assert_eq!(service.logout_requests().len(), 2);
}

#[tokio::test]
async fn tokens_with_wrong_audience_issuer_or_signature() {
    let Setup { service, .. } = setup().await;
    let http = client();

    let token = service.issue_user_token_with(
        "dave",
        "sb-login!t1",
        &["app!t1.Read"],
        600,
        &["another-app", "x"],
        Some("https://evil.example/oauth/token"),
    );
    let claims = service.claims(&token);
    assert_eq!(strings(&claims["aud"]), ["another-app", "x"]);
    assert_eq!(claims["iss"], "https://evil.example/oauth/token");
    assert_eq!(claims["user_name"], "dave");
    assert_eq!(claims["cid"], "sb-login!t1");
    assert_eq!(claims["grant_type"], "authorization_code");
    let (iat, exp) = (
        claims["iat"].as_u64().expect("iat"),
        claims["exp"].as_u64().expect("exp"),
    );
    assert_eq!(exp - iat, 600);

    // Without overrides, as issue_user_token.
    let plain = service.claims(&service.issue_user_token_with(
        "dave",
        "sb-login!t1",
        &["app!t1.Read"],
        600,
        &[],
        None,
    ));
    let reference =
        service.claims(&service.issue_user_token("dave", "sb-login!t1", &["app!t1.Read"], 600));
    for claim in ["aud", "iss", "user_id", "scope", "cid", "grant_type"] {
        assert_eq!(plain[claim], reference[claim], "{claim}");
    }
    assert!(strings(&plain["aud"]).contains(&"sb-login!t1"));
    assert_eq!(plain["iss"], service.token_url());

    // Signed by another key under the service key's kid.
    let foreign = TokenService::sign_with_foreign_key(&reference);
    let parts: Vec<&str> = foreign.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("JSON");
    let genuine_header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("JSON");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], genuine_header["kid"]);
    assert_eq!(header["jku"], format!("{}/token_keys", service.url));
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("JSON");
    assert_eq!(payload, reference);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature b64url");
    assert_eq!(signature.len(), 256, "RSA-2048");

    let checked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.claims(&foreign)));
    assert!(checked.is_err(), "a foreign signature must not verify");
    // Nor with the published key, nor as a jwt-bearer assertion.
    let key = &service.jwks()["keys"][0];
    let n = URL_SAFE_NO_PAD
        .decode(key["n"].as_str().expect("n"))
        .expect("n");
    let e = URL_SAFE_NO_PAD
        .decode(key["e"].as_str().expect("e"))
        .expect("e");
    let signed = format!("{}.{}", parts[0], parts[1]);
    assert!(
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &signature
            )
            .is_err()
    );
    let (status, body) = post(
        &http,
        &service.token_url(),
        &[("grant_type", JWT_BEARER), ("assertion", &foreign)],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_grant"))
    );
    // The same claims signed by the service do verify: only the key differs.
    let (status, body) = post(
        &http,
        &service.token_url(),
        &[
            ("grant_type", JWT_BEARER),
            (
                "assertion",
                &service.issue_user_token_with(
                    "dave",
                    "sb-login!t1",
                    &["app!t1.Read"],
                    600,
                    &[],
                    None,
                ),
            ),
        ],
        Some((CLIENT, SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Without a recognisable issuer the foreign token has no jku.
    let bare = TokenService::sign_with_foreign_key(&serde_json::json!({ "sub": "x" }));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(bare.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("JSON");
    assert!(header.get("jku").is_none(), "{header}");
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.claims(&bare))).is_err()
    );
}
