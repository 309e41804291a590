//! Sessions: what the router remembers about a logged-in browser, the store that keeps it
//! (in memory here; the trait lets a shared store replace it), and the session cookie.
//!
//! Session ids are 256 random bits. Sessions expire after the session timeout of inactivity:
//! every request that uses a session touches it. With `TENANT_HOST_PATTERN`, a session belongs
//! to the tenant it was logged in for ([`UserSession::tenant`]).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use moka::future::Cache;
use serde_json::Value;

use crate::secret::Secret;

/// A random, URL-safe identifier of `bytes` random bytes (session ids, CSRF tokens, state).
pub fn random_token(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    // The system RNG does not fail on supported platforms; an all-zero id would be refused
    // by nothing, so fall back to a time-derived value only if it ever did.
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        buf.iter_mut()
            .zip(nanos.to_le_bytes().iter().cycle())
            .for_each(|(b, n)| *b ^= n);
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// The logged-in user of a session.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserSession {
    /// The access token from login (or its refreshed successor).
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    /// Validated claims of the access token.
    pub claims: Arc<Value>,
    /// Unix time the access token expires.
    pub expires_at: i64,
    /// Unix time from which the token is renewed with the refresh token.
    #[serde(default)]
    pub refresh_at: i64,
    /// The service that issued it.
    pub provider: crate::config::bindings::AuthServiceKind,
    /// The tenant whose host the user logged in on (`TENANT_HOST_PATTERN`); the session serves
    /// only that tenant's host.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// One session.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub id: String,
    pub user: Option<UserSession>,
    /// The CSRF token handed out with `x-csrf-token: fetch`.
    pub csrf_token: Option<Secret>,
    /// Backend session cookies (no `Expires`/`Max-Age`), per destination: name → value. They are
    /// replayed to that destination and never reach the browser.
    #[serde(default)]
    pub backend_cookies:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, Secret>>,
    /// Only in the records of logins in progress kept in a shared store (never together with
    /// a user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_login: Option<super::login::PendingLogin>,
}

impl Session {
    pub fn new() -> Self {
        Self {
            id: random_token(32),
            user: None,
            csrf_token: None,
            backend_cookies: Default::default(),
            pending_login: None,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the session store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(pub String);

/// Where sessions live. Implementations must expire sessions after the idle timeout.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>>;
    fn save(&self, session: Session) -> BoxFuture<'_, Result<(), StoreError>>;
    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>>;
    /// How many sessions the store holds, when that is cheap to know (for the metrics).
    fn active_sessions(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async { None })
    }
    /// Loads and removes a record that is used once (a login in progress), without marking it
    /// ended; atomically where the store can.
    fn take(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let record = self.load(&id).await?;
            if record.is_some() {
                self.delete(&id).await?;
            }
            Ok(record)
        })
    }
    /// Whether other router instances see what this one stores (then logins in progress are
    /// kept here too, so a login may finish on another instance than the one it started on).
    fn shared(&self) -> bool {
        false
    }
}

/// Sessions in this process's memory, expiring after `idle` without use.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: Cache<String, Arc<Session>>,
}

/// Sessions that ended by timing out (not by logout), for the backend logout calls.
pub type ExpiredSessions = tokio::sync::mpsc::UnboundedReceiver<Arc<Session>>;

impl MemoryStore {
    pub fn new(idle: Duration, capacity: u64) -> Self {
        Self {
            sessions: Cache::builder()
                .time_to_idle(idle)
                .max_capacity(capacity)
                .build(),
        }
    }

    /// A store that reports timed-out sessions on the returned channel. A housekeeping task
    /// looks for them at least every `idle / 4` (1 s at least), so a session that nobody uses
    /// any more is still noticed; it ends with the store.
    pub fn reporting_expiry(idle: Duration, capacity: u64) -> (Arc<Self>, ExpiredSessions) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sessions = Cache::builder()
            .time_to_idle(idle)
            .max_capacity(capacity)
            .eviction_listener(move |_id, session: Arc<Session>, cause| {
                if cause == moka::notification::RemovalCause::Expired {
                    let _ = tx.send(session);
                }
            })
            .build();
        let store = Arc::new(Self { sessions });
        let weak = Arc::downgrade(&store);
        let tick = (idle / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(store) = weak.upgrade() else { break };
                store.sessions.run_pending_tasks().await;
            }
        });
        (store, rx)
    }
}

impl SessionStore for MemoryStore {
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move { Ok(self.sessions.get(&id).await.map(|s| (*s).clone())) })
    }

    fn save(&self, session: Session) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.sessions
                .insert(session.id.clone(), Arc::new(session))
                .await;
            Ok(())
        })
    }

    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.sessions.invalidate(&id).await;
            Ok(())
        })
    }

    fn active_sessions(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            // Settle pending inserts, removals and expiries so the count is exact.
            self.sessions.run_pending_tasks().await;
            Some(self.sessions.entry_count())
        })
    }
}

/// The idle timeout of sessions: `SESSION_TIMEOUT`, else xs-app.json `sessionTimeout`, else 15 min.
pub fn idle_timeout(runtime: &crate::config::Runtime) -> Duration {
    let minutes = runtime
        .settings
        .session_timeout_minutes
        .or(runtime.xs_app.session_timeout)
        .unwrap_or(15);
    Duration::from_secs(minutes * 60)
}

/// The session store the configuration asks for: Redis, shared by every instance, when
/// `EXT_SESSION_MGT` or `REDIS_URL` configures it (failing when it cannot be reached), else in
/// memory (one instance).
/// Also returns, for the in-memory store, the channel of sessions that timed out (Redis expires
/// sessions itself).
pub async fn store_for(
    runtime: &crate::config::Runtime,
) -> Result<(Arc<dyn SessionStore>, Option<ExpiredSessions>), StoreError> {
    let idle = idle_timeout(runtime);
    match &runtime.session_store {
        Some(settings) => {
            let roots = &runtime.extra_roots;
            let store = super::redis_store::RedisStore::connect(settings, idle, roots).await?;
            Ok((Arc::new(store), None))
        }
        None => {
            let (store, expired) = MemoryStore::reporting_expiry(idle, 1_000_000);
            Ok((store, Some(expired)))
        }
    }
}

/// How the session cookie is written (`SESSION_COOKIE_NAME`, `SECURE_SESSION_COOKIE`, `COOKIES`).
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    pub name: String,
    /// `Some(true/false)` forces `Secure`; `None` sets it when the request came over HTTPS.
    pub secure: Option<bool>,
    pub same_site: Option<String>,
    pub partitioned: bool,
}

impl CookiePolicy {
    /// The `Set-Cookie` value for a session id (`None` clears the cookie).
    pub fn set_cookie(&self, id: Option<&str>, https: bool) -> String {
        let mut cookie = match id {
            Some(id) => format!("{}={id}; Path=/; HttpOnly", self.name),
            None => format!("{}=; Path=/; HttpOnly; Max-Age=0", self.name),
        };
        if self.secure.unwrap_or(https) {
            cookie.push_str("; Secure");
        }
        if let Some(same_site) = &self.same_site {
            cookie.push_str("; SameSite=");
            cookie.push_str(same_site);
        }
        if self.partitioned {
            cookie.push_str("; Partitioned");
        }
        cookie
    }

    /// The session id in a request's `Cookie` headers.
    pub fn session_id<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        cookie_value(headers, &self.name)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }

    #[test]
    fn cookie_attributes() {
        let policy = CookiePolicy {
            name: "JSESSIONID".into(),
            secure: None,
            same_site: Some("None".into()),
            partitioned: true,
        };
        assert_eq!(
            policy.set_cookie(Some("abc"), true),
            "JSESSIONID=abc; Path=/; HttpOnly; Secure; SameSite=None; Partitioned"
        );
        assert_eq!(
            policy.set_cookie(None, false),
            "JSESSIONID=; Path=/; HttpOnly; Max-Age=0; SameSite=None; Partitioned"
        );
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; JSESSIONID=xyz"),
        );
        assert_eq!(policy.session_id(&headers), Some("xyz"));
    }

    #[tokio::test]
    async fn memory_store_round_trip_and_delete() {
        let store = MemoryStore::new(Duration::from_secs(60), 100);
        let session = Session::new();
        let id = session.id.clone();
        store.save(session).await.expect("save");
        store.save(Session::new()).await.expect("save");
        assert_eq!(store.active_sessions().await, Some(2));
        assert!(store.load(&id).await.expect("load").is_some());
        store.delete(&id).await.expect("delete");
        assert!(store.load(&id).await.expect("load").is_none());
        assert_eq!(store.active_sessions().await, Some(1));
    }

    #[tokio::test]
    async fn timed_out_sessions_are_reported_without_any_traffic() {
        let (store, mut expired) = MemoryStore::reporting_expiry(Duration::from_millis(300), 100);
        let idle = Session::new();
        let id = idle.id.clone();
        store.save(idle).await.expect("save");
        let ended = tokio::time::timeout(Duration::from_secs(5), expired.recv())
            .await
            .expect("reported within the housekeeping tick")
            .expect("a session");
        assert_eq!(ended.id, id);
        // A logout (explicit removal) is not a timeout.
        let other = Session::new();
        let other_id = other.id.clone();
        store.save(other).await.expect("save");
        store.delete(&other_id).await.expect("delete");
        store.sessions.run_pending_tasks().await;
        assert!(expired.try_recv().is_err());
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_used_ones_live_on() {
        let store = MemoryStore::new(Duration::from_millis(400), 100);
        let idle = Session::new();
        let used = Session::new();
        let (idle_id, used_id) = (idle.id.clone(), used.id.clone());
        store.save(idle).await.expect("save");
        store.save(used).await.expect("save");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                store.load(&used_id).await.expect("load").is_some(),
                "a session in use stays"
            );
        }
        assert!(
            store.load(&idle_id).await.expect("load").is_none(),
            "an idle session expired"
        );
    }
}
