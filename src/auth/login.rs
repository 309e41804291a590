//! The browser login: authorization code flow with `state` and PKCE (S256).
//!
//! Starting a login stores, server-side, a pending entry keyed by a random browser nonce that
//! goes into a short-lived cookie; the entry holds the expected `state`, the PKCE verifier, the
//! redirect URI and the local URL to return to. The callback accepts a code only from the
//! browser that started the flow (cookie), with the matching `state`, and redeems it with the
//! verifier. The return URL is always a local path: no open redirect.
//!
//! With `TENANT_HOST_PATTERN`, a login belongs to the tenant whose host started it: the callback
//! completes it only on that tenant's host.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::future::Cache;

use super::session::random_token;
use crate::secret::Secret;

/// The cookie that ties a login callback to the browser that started it.
pub const LOGIN_COOKIE: &str = "XSROUTER_LOGIN";
/// How long a started login may take (approuter: 180 s).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);

/// A login in progress.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub state: Option<String>,
    pub verifier: Option<Secret>,
    pub redirect_uri: String,
    pub return_to: String,
    pub provider: crate::config::bindings::AuthServiceKind,
    /// The tenant whose host started the login (`TENANT_HOST_PATTERN`).
    pub tenant: Option<String>,
}

/// Logins in progress, by browser nonce.
#[derive(Debug)]
pub struct PendingLogins {
    pending: Cache<String, PendingLogin>,
}

impl Default for PendingLogins {
    fn default() -> Self {
        Self {
            pending: Cache::builder()
                .time_to_live(LOGIN_TIMEOUT)
                .max_capacity(100_000)
                .build(),
        }
    }
}

/// What starting a login produced.
pub struct LoginStart {
    /// Where to send the browser.
    pub location: String,
    /// The `Set-Cookie` value that binds the callback to this browser.
    pub cookie: String,
}

/// Options of one login.
pub struct LoginRequest<'a> {
    pub authorize_url: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: String,
    pub return_to: String,
    pub use_state: bool,
    pub use_pkce: bool,
    pub identity_provider: Option<&'a str>,
    pub provider: crate::config::bindings::AuthServiceKind,
    pub tenant: Option<&'a str>,
    pub secure_cookie: bool,
}

impl PendingLogins {
    pub async fn start(&self, req: LoginRequest<'_>) -> LoginStart {
        let nonce = random_token(32);
        let state = req.use_state.then(|| random_token(24));
        let verifier = req.use_pkce.then(|| random_token(32));
        // The query is built before any await: its serializer is not Send.
        let location = {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("response_type", "code");
            query.append_pair("client_id", req.client_id);
            query.append_pair("redirect_uri", &req.redirect_uri);
            if let Some(state) = &state {
                query.append_pair("state", state);
            }
            if let Some(verifier) = &verifier {
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                query.append_pair("code_challenge", &URL_SAFE_NO_PAD.encode(digest.as_ref()));
                query.append_pair("code_challenge_method", "S256");
            }
            if let Some(idp) = req.identity_provider {
                query.append_pair("idp", idp);
            }
            if req.provider == crate::config::bindings::AuthServiceKind::Ias {
                query.append_pair("scope", "openid");
            }
            let separator = if req.authorize_url.contains('?') {
                '&'
            } else {
                '?'
            };
            let location = format!("{}{separator}{}", req.authorize_url, query.finish());
            location
        };
        self.pending
            .insert(
                nonce.clone(),
                PendingLogin {
                    state,
                    verifier: verifier.map(Secret::new),
                    redirect_uri: req.redirect_uri,
                    return_to: req.return_to,
                    provider: req.provider,
                    tenant: req.tenant.map(str::to_owned),
                },
            )
            .await;
        let secure = if req.secure_cookie { "; Secure" } else { "" };
        LoginStart {
            location,
            cookie: format!(
                "{LOGIN_COOKIE}={nonce}; Path=/; HttpOnly; Max-Age={}; SameSite=Lax{secure}",
                LOGIN_TIMEOUT.as_secs()
            ),
        }
    }

    /// Takes the pending login of this browser (each can be completed once).
    pub async fn take(&self, nonce: &str) -> Option<PendingLogin> {
        self.pending.remove(nonce).await
    }
}

/// The cookie that clears the login cookie.
pub fn clear_login_cookie() -> String {
    format!("{LOGIN_COOKIE}=; Path=/; HttpOnly; Max-Age=0")
}

/// The local URL to return to after login: path and query of the request, never another host.
pub fn local_return_url(path_and_query: &str) -> String {
    let trimmed = path_and_query.trim_start_matches(['/', '\\']);
    format!("/{trimmed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_stay_local() {
        assert_eq!(
            local_return_url("/app/index.html?x=1"),
            "/app/index.html?x=1"
        );
        assert_eq!(local_return_url("//evil.example/x"), "/evil.example/x");
        assert_eq!(local_return_url("/\\evil.example"), "/evil.example");
    }

    #[tokio::test]
    async fn start_builds_the_authorize_url_and_take_is_single_use() {
        let logins = PendingLogins::default();
        let start = logins
            .start(LoginRequest {
                authorize_url: "https://uaa.example/oauth/authorize",
                client_id: "sb-app",
                redirect_uri: "https://app.example/login/callback".into(),
                return_to: "/x".into(),
                use_state: true,
                use_pkce: true,
                identity_provider: Some("corp"),
                provider: crate::config::bindings::AuthServiceKind::Xsuaa,
                tenant: Some("acme"),
                secure_cookie: true,
            })
            .await;
        let url = url::Url::parse(&start.location).expect("url");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["redirect_uri"], "https://app.example/login/callback");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["idp"], "corp");
        let nonce = start
            .cookie
            .split(['=', ';'])
            .nth(1)
            .expect("nonce")
            .to_owned();
        let pending = logins.take(&nonce).await.expect("pending");
        assert_eq!(pending.state.as_deref(), Some(query["state"].as_str()));
        assert_eq!(pending.tenant.as_deref(), Some("acme"));
        let verifier = pending.verifier.expect("verifier");
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.expose().as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest.as_ref()),
            query["code_challenge"]
        );
        assert!(
            logins.take(&nonce).await.is_none(),
            "a login completes once"
        );
    }
}
