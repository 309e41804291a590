//! Hot reload of the HTTPS listener's files — server certificates and keys, client CA bundles,
//! pinned issuers and CRLs — without a restart. [`LiveTls`] holds the current [`TlsSites`]
//! behind a lock-free swap that every accepted connection reads once; [`watch`] re-checks the
//! files on the credentials poll interval and on SIGHUP. Only files whose size or modification
//! time changed trigger a rebuild (so TLS session resumption survives quiet polls); a new set
//! that does not build is logged (file and reason, never contents) and the old one stays.
//! Certificates forwarded by trusted proxies are re-verified against trust files reloaded the
//! same way, on the same schedule ([`super::reverify::watch`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::server_config::{SiteError, TlsSites};
use super::verify_result::VerificationCounters;
use crate::config::inbound_tls::{ClientAuth, InboundTls, TlsSite};
use crate::reload_schedule::ReloadSchedule;

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// No file changed.
    Unchanged,
    /// The files changed and the new sites are in use for new connections.
    Replaced,
    /// The files changed but do not build; the previous sites stay in use.
    Rejected,
}

/// Size and modification time of every file, in configuration order (`None`: unreadable).
pub(crate) type Fingerprint = Vec<Option<(u64, SystemTime)>>;

/// The listener's current TLS sites.
#[derive(Debug)]
pub struct LiveTls {
    current: ArcSwap<TlsSites>,
    settings: InboundTls,
    counters: Arc<VerificationCounters>,
    /// The fingerprint of the files last tried (built or rejected).
    seen: Mutex<Fingerprint>,
}

impl LiveTls {
    /// Builds the sites of `settings` now.
    pub fn new(
        settings: &InboundTls,
        counters: Arc<VerificationCounters>,
    ) -> Result<Self, Vec<SiteError>> {
        let seen = fingerprint(settings);
        let sites = TlsSites::build(settings, &counters)?;
        log_server_certificates(&sites);
        Ok(Self {
            current: ArcSwap::from_pointee(sites),
            settings: settings.clone(),
            counters,
            seen: Mutex::new(seen),
        })
    }

    /// The sites for a new connection.
    pub fn current(&self) -> Arc<TlsSites> {
        self.current.load_full()
    }

    /// Re-reads the files if any changed, and swaps in the new sites if they build.
    pub fn reload(&self) -> Reloaded {
        let now = fingerprint(&self.settings);
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Reloaded::Unchanged;
            };
            if *seen == now {
                return Reloaded::Unchanged;
            }
            *seen = now;
        }
        match TlsSites::build(&self.settings, &self.counters) {
            Ok(sites) => {
                log_server_certificates(&sites);
                self.current.store(Arc::new(sites));
                tracing::info!(
                    "inbound TLS files changed: new server certificates, CA bundles and CRLs in use for new connections"
                );
                Reloaded::Replaced
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!(site = ?error.site, file = %error.error.file.display(), reason = %error.error.reason, "inbound TLS files rejected; keeping the current ones");
                }
                Reloaded::Rejected
            }
        }
    }
}

/// Logs subject, issuer and expiry of each site's server certificate (never a key), warning
/// when less than a fifth of its lifetime is left.
fn log_server_certificates(sites: &TlsSites) {
    let now = crate::identity::rotation::now_unix();
    for site in sites.sites() {
        if site.permissive {
            tracing::warn!(site = %site.label, "permissive client certificates: connections with a certificate that fails verification are accepted; protect routes with `clientCertificate`");
        }
        let Some(cert) = &site.server_certificate else {
            continue;
        };
        let not_after = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + Duration::from_secs(cert.not_after.max(0) as u64),
        );
        tracing::info!(site = %site.label, subject = %cert.subject, issuer = %cert.issuer, not_after = %not_after, client_certificates = site.asks_for_certificates, "HTTPS server certificate loaded");
        if cert.seconds_left(now) <= 0 {
            tracing::warn!(site = %site.label, subject = %cert.subject, not_after = %not_after, "HTTPS server certificate has EXPIRED");
        } else if cert.nearly_expired(now) {
            tracing::warn!(site = %site.label, subject = %cert.subject, not_after = %not_after, "HTTPS server certificate has less than 20% of its lifetime left");
        }
    }
}

fn site_files(site: &TlsSite) -> impl Iterator<Item = &PathBuf> {
    [&site.cert_file, &site.key_file]
        .into_iter()
        .chain(client_auth_files(&site.client_auth))
}

/// The trust files of a client-certificate policy: CA bundles, pinned issuers, CRLs.
pub(crate) fn client_auth_files(auth: &ClientAuth) -> impl Iterator<Item = &PathBuf> {
    auth.ca_files
        .iter()
        .chain(&auth.allowed_issuer_files)
        .chain(&auth.crl_files)
}

/// Size and modification time of each of `files`, in order.
pub(crate) fn files_fingerprint<'a>(files: impl IntoIterator<Item = &'a PathBuf>) -> Fingerprint {
    files
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

fn fingerprint(settings: &InboundTls) -> Fingerprint {
    files_fingerprint(
        settings
            .server
            .iter()
            .chain(&settings.sni_sites)
            .flat_map(site_files),
    )
}

/// Reloads every `interval` and on SIGHUP, until the task is dropped or aborted.
pub async fn watch(live: Arc<LiveTls>, interval: Duration) {
    let mut schedule = ReloadSchedule::start(interval).await;
    loop {
        schedule.next("the inbound TLS files").await;
        let live = live.clone();
        // File reads and PEM parsing stay off the request-serving threads.
        let _ = tokio::task::spawn_blocking(move || live.reload()).await;
    }
}
