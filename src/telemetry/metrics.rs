//! Metrics in the Prometheus text format: requests by route, destination and status, upstream
//! latency per destination, token cache and token-service counters, and the seconds until each
//! bound client certificate expires, inbound client-certificate verification results. Recording is a read lock plus an atomic add on the hot path.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::inbound::verify_result::VerificationCounters;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type RequestKey = (Option<usize>, Option<Arc<str>>, u16);

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// All counters of one router.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: RwLock<HashMap<RequestKey, AtomicU64>>,
    upstream: RwLock<HashMap<Arc<str>, Arc<Histogram>>>,
    /// Inbound client-certificate verification results, counted by the HTTPS listener.
    pub client_certificates: Arc<VerificationCounters>,
}

/// Values read at scrape time from elsewhere.
#[derive(Debug, Default)]
pub struct Gauges {
    pub token_requests: u64,
    pub token_fetches: u64,
    pub token_failures: u64,
    /// (service, seconds until the bound client certificate expires).
    pub certificate_expiry: Vec<(&'static str, i64)>,
    /// Sessions in the store, when the store can count them cheaply (memory: yes; Redis: no).
    pub active_sessions: Option<u64>,
}

impl Metrics {
    pub fn record_request(&self, route: Option<usize>, destination: Option<Arc<str>>, status: u16) {
        let key = (route, destination, status);
        if let Ok(map) = self.requests.read()
            && let Some(counter) = map.get(&key)
        {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut map) = self.requests.write() {
            map.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_upstream(&self, destination: &Arc<str>, elapsed: Duration) {
        let existing = self
            .upstream
            .read()
            .ok()
            .and_then(|map| map.get(destination).cloned());
        let histogram = match existing {
            Some(h) => h,
            None => match self.upstream.write() {
                Ok(mut map) => map.entry(destination.clone()).or_default().clone(),
                Err(_) => return,
            },
        };
        histogram.observe(elapsed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP xsrouter_requests_total Requests answered, by route, destination and status.\n",
        );
        out.push_str("# TYPE xsrouter_requests_total counter\n");
        if let Ok(map) = self.requests.read() {
            let mut rows: Vec<_> = map.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for ((route, destination, status), count) in rows {
                let route = route.map_or_else(|| "none".to_owned(), |r| r.to_string());
                let _ = writeln!(
                    out,
                    "xsrouter_requests_total{{route=\"{route}\",destination=\"{}\",status=\"{status}\"}} {}",
                    escape(destination.as_deref().unwrap_or("")),
                    count.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP xsrouter_upstream_duration_seconds Time until the upstream's response headers.\n");
        out.push_str("# TYPE xsrouter_upstream_duration_seconds histogram\n");
        if let Ok(map) = self.upstream.read() {
            let mut rows: Vec<_> = map.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for (destination, h) in rows {
                let d = escape(destination);
                for (bucket, bound) in h.buckets.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "xsrouter_upstream_duration_seconds_bucket{{destination=\"{d}\",le=\"{bound}\"}} {}",
                        bucket.load(Ordering::Relaxed)
                    );
                }
                let count = h.count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "xsrouter_upstream_duration_seconds_bucket{{destination=\"{d}\",le=\"+Inf\"}} {count}"
                );
                let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "xsrouter_upstream_duration_seconds_sum{{destination=\"{d}\"}} {sum}"
                );
                let _ = writeln!(
                    out,
                    "xsrouter_upstream_duration_seconds_count{{destination=\"{d}\"}} {count}"
                );
            }
        }
        let hits = gauges.token_requests.saturating_sub(gauges.token_fetches);
        for (name, kind, help, value) in [
            (
                "xsrouter_token_cache_hits_total",
                "counter",
                "Token requests answered from the cache.",
                hits,
            ),
            (
                "xsrouter_token_cache_misses_total",
                "counter",
                "Token requests that needed the token service.",
                gauges.token_fetches,
            ),
            (
                "xsrouter_token_service_errors_total",
                "counter",
                "Token requests that failed.",
                gauges.token_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out.push_str("# HELP xsrouter_client_certificate_expiry_seconds Seconds until the bound client certificate expires.\n");
        out.push_str("# TYPE xsrouter_client_certificate_expiry_seconds gauge\n");
        for (service, seconds) in &gauges.certificate_expiry {
            let _ = writeln!(
                out,
                "xsrouter_client_certificate_expiry_seconds{{service=\"{service}\"}} {seconds}"
            );
        }
        out.push_str("# HELP xsrouter_inbound_client_certificates_total Client certificates verified by the HTTPS listener, by result (success, failed, none) and failure reason.\n");
        out.push_str("# TYPE xsrouter_inbound_client_certificates_total counter\n");
        for (result, reason, count) in self.client_certificates.snapshot() {
            let _ = writeln!(
                out,
                "xsrouter_inbound_client_certificates_total{{result=\"{result}\",reason=\"{reason}\"}} {count}"
            );
        }
        if let Some(sessions) = gauges.active_sessions {
            let _ = writeln!(
                out,
                "# HELP xsrouter_active_sessions Login sessions held by this instance's session store.\n# TYPE xsrouter_active_sessions gauge\nxsrouter_active_sessions {sessions}"
            );
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_inbound_client_certificate_counters() {
        use crate::inbound::verify_result::VerifyFailure;
        let m = Metrics::default();
        m.client_certificates.success();
        m.client_certificates.none();
        m.client_certificates.failed(VerifyFailure::Revoked);
        m.client_certificates.failed(VerifyFailure::Revoked);
        let text = m.render(&Gauges::default());
        for line in [
            "# TYPE xsrouter_inbound_client_certificates_total counter\n",
            "xsrouter_inbound_client_certificates_total{result=\"success\",reason=\"\"} 1\n",
            "xsrouter_inbound_client_certificates_total{result=\"none\",reason=\"\"} 1\n",
            "xsrouter_inbound_client_certificates_total{result=\"failed\",reason=\"revoked\"} 2\n",
            "xsrouter_inbound_client_certificates_total{result=\"failed\",reason=\"crl_expired\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        let backend: Arc<str> = Arc::from("backend");
        m.record_request(Some(0), Some(backend.clone()), 200);
        m.record_request(Some(0), Some(backend.clone()), 200);
        m.record_request(None, None, 404);
        m.record_upstream(&backend, Duration::from_millis(30));
        let text = m.render(&Gauges {
            token_requests: 10,
            token_fetches: 1,
            token_failures: 0,
            certificate_expiry: vec![("xsuaa", 3600)],
            active_sessions: Some(3),
        });
        assert!(
            text.contains(
                "xsrouter_requests_total{route=\"0\",destination=\"backend\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "xsrouter_requests_total{route=\"none\",destination=\"\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "xsrouter_upstream_duration_seconds_bucket{destination=\"backend\",le=\"0.025\"} 0\n"
        ));
        assert!(text.contains(
            "xsrouter_upstream_duration_seconds_bucket{destination=\"backend\",le=\"0.05\"} 1\n"
        ));
        assert!(
            text.contains("xsrouter_upstream_duration_seconds_count{destination=\"backend\"} 1\n")
        );
        assert!(text.contains("xsrouter_token_cache_hits_total 9\n"));
        assert!(
            text.contains("xsrouter_client_certificate_expiry_seconds{service=\"xsuaa\"} 3600\n")
        );
        assert!(text.contains("xsrouter_active_sessions 3\n"), "{text}");
        assert!(
            !m.render(&Gauges::default())
                .contains("xsrouter_active_sessions"),
            "no gauge when the store cannot count"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
