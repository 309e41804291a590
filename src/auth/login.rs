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
//!
//! Pending logins live in this process's memory, or, when sessions are in a shared store
//! (Redis), in that store under an id of their own (`login:<nonce>`), so that the callback may
//! reach another instance than the one that started the login.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::future::Cache;

use super::session::{Session, SessionStore, StoreError, random_token};
use crate::identity::rotation::now_unix;
use crate::secret::Secret;

/// The cookie that ties a login callback to the browser that started it.
pub const LOGIN_COOKIE: &str = "XSROUTER_LOGIN";
/// How long a started login may take (approuter: 180 s).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);

/// A login in progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub state: Option<String>,
    pub verifier: Option<Secret>,
    pub redirect_uri: String,
    pub return_to: String,
    pub provider: crate::config::bindings::AuthServiceKind,
    /// The tenant whose host started the login (`TENANT_HOST_PATTERN`).
    pub tenant: Option<String>,
    /// Unix time the login started (a shared store keeps records for the session idle time).
    pub started_at: i64,
}

/// Logins in progress, by browser nonce.
#[derive(Debug)]
pub enum PendingLogins {
    /// In this process: the callback must reach this instance.
    Local(Cache<String, PendingLogin>),
    /// In the shared session store.
    Shared(Arc<dyn SessionStore>),
}

impl PendingLogins {
    /// In `store` when other instances see it, else in memory.
    pub fn new(store: &Arc<dyn SessionStore>) -> Self {
        if store.shared() {
            Self::Shared(store.clone())
        } else {
            Self::Local(
                Cache::builder()
                    .time_to_live(LOGIN_TIMEOUT)
                    .max_capacity(100_000)
                    .build(),
            )
        }
    }
}

/// The shared store's id of a pending login: never a session id (those have no `:`).
fn record_id(nonce: &str) -> String {
    format!("login:{nonce}")
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
    pub async fn start(&self, req: LoginRequest<'_>) -> Result<LoginStart, StoreError> {
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
        let pending = PendingLogin {
            state,
            verifier: verifier.map(Secret::new),
            redirect_uri: req.redirect_uri,
            return_to: req.return_to,
            provider: req.provider,
            tenant: req.tenant.map(str::to_owned),
            started_at: now_unix(),
        };
        match self {
            Self::Local(pending_logins) => pending_logins.insert(nonce.clone(), pending).await,
            Self::Shared(store) => {
                let mut record = Session::new();
                record.id = record_id(&nonce);
                record.pending_login = Some(pending);
                store.save(record).await?;
            }
        }
        let secure = if req.secure_cookie { "; Secure" } else { "" };
        Ok(LoginStart {
            location,
            cookie: format!(
                "{LOGIN_COOKIE}={nonce}; Path=/; HttpOnly; Max-Age={}; SameSite=Lax{secure}",
                LOGIN_TIMEOUT.as_secs()
            ),
        })
    }

    /// Takes the pending login of this browser (each can be completed once), if it started
    /// less than [`LOGIN_TIMEOUT`] ago.
    pub async fn take(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        let pending = match self {
            Self::Local(pending_logins) => pending_logins.remove(nonce).await,
            Self::Shared(store) => store
                .take(&record_id(nonce))
                .await?
                .and_then(|record| record.pending_login),
        };
        Ok(pending.filter(|p| now_unix() - p.started_at < LOGIN_TIMEOUT.as_secs() as i64))
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

    fn memory_store() -> Arc<dyn SessionStore> {
        Arc::new(crate::auth::session::MemoryStore::new(
            Duration::from_secs(900),
            100,
        ))
    }

    fn request() -> LoginRequest<'static> {
        LoginRequest {
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
        }
    }

    fn nonce_of(start: &LoginStart) -> String {
        start
            .cookie
            .split(['=', ';'])
            .nth(1)
            .expect("nonce")
            .to_owned()
    }

    #[tokio::test]
    async fn start_builds_the_authorize_url_and_take_is_single_use() {
        let store = memory_store();
        assert!(matches!(
            PendingLogins::new(&store),
            PendingLogins::Local(_)
        ));
        // In memory, and in a (here: in-memory) session store as with Redis.
        for logins in [
            PendingLogins::new(&store),
            PendingLogins::Shared(store.clone()),
        ] {
            let start = logins.start(request()).await.expect("started");
            let url = url::Url::parse(&start.location).expect("url");
            let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
            assert_eq!(query["response_type"], "code");
            assert_eq!(query["redirect_uri"], "https://app.example/login/callback");
            assert_eq!(query["code_challenge_method"], "S256");
            assert_eq!(query["idp"], "corp");
            let nonce = nonce_of(&start);
            let pending = logins.take(&nonce).await.expect("store").expect("pending");
            assert_eq!(pending.state.as_deref(), Some(query["state"].as_str()));
            assert_eq!(pending.tenant.as_deref(), Some("acme"));
            let verifier = pending.verifier.expect("verifier");
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.expose().as_bytes());
            assert_eq!(
                URL_SAFE_NO_PAD.encode(digest.as_ref()),
                query["code_challenge"]
            );
            assert!(
                logins.take(&nonce).await.expect("store").is_none(),
                "a login completes once"
            );
        }
    }

    #[tokio::test]
    async fn a_stored_login_older_than_the_login_timeout_is_refused_and_removed() {
        let store = memory_store();
        let logins = PendingLogins::Shared(store.clone());
        let nonce = nonce_of(&logins.start(request()).await.expect("started"));
        let id = record_id(&nonce);
        let mut record = store.load(&id).await.expect("load").expect("record");
        assert!(record.user.is_none(), "a login record carries no user");
        if let Some(pending) = &mut record.pending_login {
            pending.started_at -= LOGIN_TIMEOUT.as_secs() as i64;
        }
        store.save(record).await.expect("save");
        assert!(logins.take(&nonce).await.expect("store").is_none());
        assert!(store.load(&id).await.expect("load").is_none());
    }
}
