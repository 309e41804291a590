//! When files that may change under a running router (bound credentials, the TLS listener's
//! certificates, CA bundles and CRLs) are read again: on a fixed interval and on SIGHUP.

use std::time::Duration;

/// Waits for the next reload: the interval elapsing or a SIGHUP, whichever comes first.
pub struct ReloadSchedule {
    ticker: tokio::time::Interval,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl ReloadSchedule {
    /// Starts the schedule; the first reload comes one `interval` from now (or on SIGHUP).
    pub async fn start(interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        Self {
            ticker,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Returns when the next reload is due; a SIGHUP is logged with `what` is re-read.
    pub async fn next(&mut self, what: &str) {
        #[cfg(unix)]
        let hup = async {
            match self.hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        tokio::select! {
            _ = self.ticker.tick() => {}
            _ = hup => tracing::info!("SIGHUP: re-reading {what}"),
        }
    }
}
