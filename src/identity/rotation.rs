//! Live rotation of the bound identities. Each [`RotatingIdentity`] is a rustls client-certificate
//! resolver over a lock-free swap: every new TLS handshake presents the current certificate,
//! while connections already open keep theirs. [`watch`] re-reads the credential sources on
//! an interval and on SIGHUP, validates what it finds, and swaps in a new identity only if it
//! is valid; a bad one is logged and the old one stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;

use super::{BoundIdentities, BoundIdentity, ClientIdentity, identity_of, kind_name};
use crate::config::Environment;
use crate::config::bindings::{AuthServiceKind, Bindings};
use crate::config::problem::Problems;

/// The current identity of one bound service.
#[derive(Debug)]
pub struct RotatingIdentity {
    current: ArcSwap<ClientIdentity>,
}

impl RotatingIdentity {
    pub fn new(bound: &BoundIdentity) -> Self {
        Self {
            current: ArcSwap::from_pointee(bound.identity.clone()),
        }
    }

    pub fn current(&self) -> Arc<ClientIdentity> {
        self.current.load_full()
    }

    /// Installs `next`; returns false when it presents the same chain as the current one.
    pub fn replace(&self, next: ClientIdentity) -> bool {
        if self.current.load().same_chain(&next) {
            return false;
        }
        self.current.store(Arc::new(next));
        true
    }
}

impl ResolvesClientCert for RotatingIdentity {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The rotating identities of the bound authentication services.
#[derive(Debug, Default)]
pub struct IdentityStore {
    xsuaa: Option<Arc<RotatingIdentity>>,
    ias: Option<Arc<RotatingIdentity>>,
}

impl IdentityStore {
    pub fn new(bound: &BoundIdentities) -> Self {
        Self {
            xsuaa: bound
                .xsuaa
                .as_ref()
                .map(|b| Arc::new(RotatingIdentity::new(b))),
            ias: bound
                .ias
                .as_ref()
                .map(|b| Arc::new(RotatingIdentity::new(b))),
        }
    }

    pub fn get(&self, kind: AuthServiceKind) -> Option<&Arc<RotatingIdentity>> {
        match kind {
            AuthServiceKind::Xsuaa => self.xsuaa.as_ref(),
            AuthServiceKind::Ias => self.ias.as_ref(),
        }
    }

    /// Re-reads every credential source and swaps in changed, valid identities.
    /// Returns how many identities were replaced.
    pub fn reload(&self, env: &Environment, workdir: &std::path::Path) -> usize {
        let mut problems = Problems::default();
        let bindings = Bindings::load(env, workdir, &mut problems);
        if !problems.is_empty() {
            for problem in problems.into_error().problems {
                tracing::error!(%problem, "credential sources unreadable; keeping the current certificates");
            }
            return 0;
        }
        let mut replaced = 0;
        for kind in [AuthServiceKind::Xsuaa, AuthServiceKind::Ias] {
            let Some(rotating) = self.get(kind) else {
                continue;
            };
            let what = kind_name(kind);
            let mut scratch = Problems::default();
            let Some(binding) = bindings.auth_service(kind, env, &mut scratch) else {
                tracing::error!(
                    service = what,
                    "the binding is gone; keeping the current certificate"
                );
                continue;
            };
            match identity_of(kind, binding, env) {
                Ok(Some(next)) => {
                    let summary = next.identity.leaf.clone();
                    if rotating.replace(next.identity) {
                        replaced += 1;
                        tracing::info!(service = what, binding = %next.binding, "rotated client certificate");
                        log_certificate(what, &next.binding, &summary);
                    }
                }
                Ok(None) => {
                    tracing::error!(service = what, binding = %binding.name, "the binding has no certificate any more; keeping the current one");
                }
                Err(problem) => {
                    tracing::error!(service = what, origin = %problem.origin, path = %problem.path, reason = %problem.reason, "new certificate rejected; keeping the current one");
                }
            }
        }
        replaced
    }
}

/// Logs what identifies a certificate (never the key), warning when it nears expiry.
pub fn log_certificate(service: &str, binding: &str, leaf: &super::CertificateSummary) {
    let now = now_unix();
    let not_after = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + Duration::from_secs(leaf.not_after.max(0) as u64),
    );
    tracing::info!(
        service,
        binding,
        subject = %leaf.subject,
        issuer = %leaf.issuer,
        serial = %leaf.serial,
        not_after = %not_after,
        "client certificate loaded"
    );
    if leaf.seconds_left(now) <= 0 {
        tracing::warn!(service, binding, subject = %leaf.subject, not_after = %not_after, "client certificate has EXPIRED");
    } else if leaf.nearly_expired(now) {
        tracing::warn!(service, binding, subject = %leaf.subject, not_after = %not_after, seconds_left = leaf.seconds_left(now), "client certificate has less than 20% of its lifetime left");
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reloads the identities every `interval` and on SIGHUP, until the task is dropped.
pub async fn watch(
    store: Arc<IdentityStore>,
    env: Environment,
    workdir: PathBuf,
    interval: Duration,
) {
    let mut schedule = crate::reload_schedule::ReloadSchedule::start(interval).await;
    loop {
        schedule.next("the bound credentials").await;
        let store = store.clone();
        let env = env.clone();
        let workdir = workdir.clone();
        // File reads and PEM parsing stay off the request-serving threads.
        let _ = tokio::task::spawn_blocking(move || store.reload(&env, &workdir)).await;
    }
}
