//! Multi-tenancy: `TENANT_HOST_PATTERN` picks the tenant (the subscriber's subdomain) from the
//! host the request names, and a shared-tenant-mode XSUAA binding (`tenantmode: "shared"`) is
//! then reached at that tenant's subdomain (`https://<tenant>.<uaadomain>`), as approuter does.
//!
//! The host is `x-forwarded-host`, else `Host`; with `EXTERNAL_REVERSE_PROXY=true` it is
//! `x-custom-host`, else `Host` (approuter's rules), without its port.
//!
//! Users: destination tokens (`tokens::destination`, fetched and cached per tenant) and login
//! (`auth::provider`: authorize, token, keys and logout per tenant; `auth`: sessions and service
//! tokens bound to the host's tenant).

use fancy_regex::Regex;
use http::HeaderMap;

use crate::config::bindings::ServiceBinding;
use crate::config::environment::Environment;
use crate::config::problem::Problems;

pub const TENANT_HOST_PATTERN: &str = "TENANT_HOST_PATTERN";
pub const EXTERNAL_REVERSE_PROXY: &str = "EXTERNAL_REVERSE_PROXY";

/// How the tenant is found in a request, read once at start-up.
#[derive(Debug, Clone)]
pub struct TenantHosts {
    pattern: Regex,
    /// `EXTERNAL_REVERSE_PROXY`: the host comes from `x-custom-host`.
    external_reverse_proxy: bool,
}

impl TenantHosts {
    /// Reads `TENANT_HOST_PATTERN` (a regular expression with at least one capture group) and
    /// `EXTERNAL_REVERSE_PROXY`; `None` when no pattern is set (single tenant).
    pub fn from_env(env: &Environment, problems: &mut Problems) -> Option<Self> {
        let text = env.non_empty(TENANT_HOST_PATTERN)?;
        let origin = env.origin(TENANT_HOST_PATTERN);
        let pattern = match Regex::new(text) {
            Ok(pattern) => pattern,
            Err(err) => {
                problems.push(&origin, "$", format!("invalid regular expression: {err}"));
                return None;
            }
        };
        if pattern.captures_len() < 2 {
            problems.push(
                &origin,
                "$",
                "needs a capture group: its first group is the tenant",
            );
            return None;
        }
        let external_reverse_proxy = env
            .non_empty(EXTERNAL_REVERSE_PROXY)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Some(Self {
            pattern,
            external_reverse_proxy,
        })
    }

    /// The tenant the request's host names, if the host matches the pattern.
    pub fn tenant_of<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let host = if self.external_reverse_proxy {
            text("x-custom-host").or_else(|| text("host"))
        } else {
            text("x-forwarded-host").or_else(|| text("host"))
        }?;
        let host = host.split(':').next().unwrap_or(host);
        let captures = self.pattern.captures(host).ok()??;
        let tenant = captures.get(1)?.as_str();
        // A tenant becomes a DNS label of the token service's host: nothing else may pass.
        let label = !tenant.is_empty()
            && tenant.len() <= 63
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !tenant.starts_with('-')
            && !tenant.ends_with('-');
        label.then_some(tenant)
    }
}

/// A shared-tenant-mode XSUAA binding: its URLs are derived per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTenantMode {
    /// `uaadomain`: the tenant URL host is `<tenant>.<uaadomain>`.
    pub uaa_domain: String,
    /// The domain of `certurl` (its host after the first label), when bound.
    pub cert_domain: Option<String>,
}

impl SharedTenantMode {
    /// The binding's shared tenant mode, if it has `tenantmode: "shared"`.
    pub fn of(binding: &ServiceBinding) -> Option<Self> {
        let shared = binding
            .credentials
            .get("tenantmode")
            .and_then(|v| v.as_str())
            == Some("shared");
        if !shared {
            return None;
        }
        let uaa_domain = binding.url_credential("uaadomain").or_else(|| {
            // Without `uaadomain`, the domain of `url` (after the subdomain).
            let url = url::Url::parse(&binding.url_credential("url")?).ok()?;
            url.host_str()?.split_once('.').map(|(_, d)| d.to_owned())
        })?;
        let cert_domain = binding
            .url_credential("certurl")
            .and_then(|c| url::Url::parse(&c).ok())
            .and_then(|u| u.host_str()?.split_once('.').map(|(_, d)| d.to_owned()));
        Some(Self {
            uaa_domain,
            cert_domain,
        })
    }

    /// `url` with its host replaced by `<tenant>.<domain>` (scheme, port and path kept), where
    /// the domain is the certificate domain for `certurl` URLs and `uaadomain` otherwise.
    pub fn tenant_url(&self, url: &str, tenant: &str, cert: bool) -> Option<String> {
        let domain = if cert {
            self.cert_domain.as_deref()?
        } else {
            &self.uaa_domain
        };
        let mut parsed = url::Url::parse(url).ok()?;
        parsed.set_host(Some(&format!("{tenant}.{domain}"))).ok()?;
        Some(parsed.to_string().trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hosts(pattern: &str, external: bool) -> TenantHosts {
        let mut pairs = vec![(TENANT_HOST_PATTERN, pattern.to_owned())];
        if external {
            pairs.push((EXTERNAL_REVERSE_PROXY, "true".to_owned()));
        }
        let mut problems = Problems::default();
        let found = TenantHosts::from_env(&Environment::from_pairs(pairs), &mut problems);
        assert!(problems.is_empty());
        found.expect("configured")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_tenant_comes_from_the_forwarded_or_custom_host() {
        let plain = hosts("^(.*)-router\\.example\\.com$", false);
        let request = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "acme-router.example.com:443"),
            ("x-custom-host", "other-router.example.com"),
        ]);
        assert_eq!(plain.tenant_of(&request), Some("acme"));
        assert_eq!(
            hosts("^(.*)-router\\.example\\.com$", true).tenant_of(&request),
            Some("other")
        );
        assert_eq!(
            plain.tenant_of(&headers(&[("host", "beta-router.example.com")])),
            Some("beta")
        );
        assert_eq!(
            plain.tenant_of(&headers(&[("host", "unrelated.example")])),
            None
        );
        // Whatever the pattern captures must be a DNS label.
        let loose = hosts("^(.*)\\.example$", false);
        assert_eq!(loose.tenant_of(&headers(&[("host", "a.b.example")])), None);
        assert_eq!(loose.tenant_of(&headers(&[("host", ".example")])), None);
    }

    #[test]
    fn patterns_need_a_capture_group() {
        for (pattern, reason) in [
            ("^no-group$", "needs a capture group"),
            ("^(unclosed$", "invalid regular expression"),
        ] {
            let mut problems = Problems::default();
            let env = Environment::from_pairs([(TENANT_HOST_PATTERN, pattern)]);
            assert!(TenantHosts::from_env(&env, &mut problems).is_none());
            let text = problems.into_error().to_string();
            assert!(
                text.contains("env TENANT_HOST_PATTERN: $: ") && text.contains(reason),
                "{text}"
            );
        }
    }

    #[test]
    fn tenant_urls_keep_scheme_port_and_path() {
        let mode = SharedTenantMode {
            uaa_domain: "authentication.eu10.example".into(),
            cert_domain: Some("authentication.cert.eu10.example".into()),
        };
        assert_eq!(
            mode.tenant_url(
                "https://provider.authentication.eu10.example/oauth/token",
                "acme",
                false
            )
            .as_deref(),
            Some("https://acme.authentication.eu10.example/oauth/token")
        );
        assert_eq!(
            mode.tenant_url(
                "https://provider.authentication.cert.eu10.example:8443",
                "acme",
                true
            )
            .as_deref(),
            Some("https://acme.authentication.cert.eu10.example:8443")
        );
    }
}
