//! Error answers the router generates itself, dressed as approuter does: xs-app.json `errorPage`
//! replaces their body with a custom page (`file`, read once at start-up from the working
//! directory) or redirects to one (`path`), and `RETURN_ERROR_SOURCE=true` marks them with
//! `x-error-source: gateway`.
//!
//! Backend answers are never touched (approuter: "no effect on errors generated outside of the
//! application router"): the proxy marks them with [`UpstreamAnswer`].

use std::path::Path;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::config::problem::{Problems, child, index};
use crate::config::xs_app::ErrorPageDef;

/// Response extension: this answer came from a backend, not from the router.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAnswer;

/// What an error status is answered with.
#[derive(Debug, Clone)]
enum ErrorPage {
    File {
        body: Bytes,
        content_type: HeaderValue,
    },
    /// A redirect to this local path (unless the failing request was for it).
    Redirect { path: String, location: HeaderValue },
}

/// The `errorPage` table and `RETURN_ERROR_SOURCE`.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    pages: Vec<(StatusCode, ErrorPage)>,
    mark_source: bool,
}

impl ErrorPages {
    /// Reads each page's file (relative to `workdir`, never outside it) and checks the statuses.
    pub fn from_config(
        defs: &[ErrorPageDef],
        workdir: &Path,
        origin: &str,
        mark_source: bool,
        problems: &mut Problems,
    ) -> Self {
        let mut pages: Vec<(StatusCode, ErrorPage)> = Vec::new();
        for def in defs {
            let at = index("$.errorPage", def.position);
            let statuses = statuses(&def.status, origin, &child(&at, "status"), problems);
            let page = match (&def.file, &def.path) {
                (Some(file), None) => {
                    read_page(file, workdir, origin, &child(&at, "file"), problems)
                }
                (None, Some(path)) => redirect_page(path, origin, &child(&at, "path"), problems),
                _ => {
                    problems.push(origin, &at, "needs exactly one of `file` and `path`");
                    None
                }
            };
            let Some(page) = page else { continue };
            for status in statuses {
                if pages.iter().any(|(s, _)| *s == status) {
                    problems.push(
                        origin,
                        child(&at, "status"),
                        format!("status {} already has an error page", status.as_u16()),
                    );
                } else {
                    pages.push((status, page.clone()));
                }
            }
        }
        Self { pages, mark_source }
    }

    /// Applies the error page (or source marker) to a router-generated error answer.
    pub fn apply(&self, request_path: &str, mut response: Response) -> Response {
        let status = response.status();
        if (!status.is_client_error() && !status.is_server_error())
            || response.extensions().get::<UpstreamAnswer>().is_some()
        {
            return response;
        }
        if self.mark_source {
            response
                .headers_mut()
                .insert("x-error-source", HeaderValue::from_static("gateway"));
        }
        let Some((_, page)) = self.pages.iter().find(|(s, _)| *s == status) else {
            return response;
        };
        match page {
            ErrorPage::File { body, content_type } => {
                let (mut parts, _) = response.into_parts();
                parts
                    .headers
                    .insert(header::CONTENT_TYPE, content_type.clone());
                parts.headers.remove(header::CONTENT_LENGTH);
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, no-store, must-revalidate"),
                );
                Response::from_parts(parts, Body::from(body.clone()))
            }
            // The page itself failing must not redirect to itself forever.
            ErrorPage::Redirect { path, .. } if path == request_path => response,
            ErrorPage::Redirect { location, .. } => {
                let mut redirect = Response::new(Body::empty());
                *redirect.status_mut() = StatusCode::FOUND;
                redirect
                    .headers_mut()
                    .insert(header::LOCATION, location.clone());
                if self.mark_source {
                    redirect
                        .headers_mut()
                        .insert("x-error-source", HeaderValue::from_static("gateway"));
                }
                redirect
            }
        }
    }
}

fn statuses(value: &Value, origin: &str, path: &str, problems: &mut Problems) -> Vec<StatusCode> {
    let one = |v: &Value, at: &str, problems: &mut Problems| {
        let status = v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (400..=599).contains(n))
            .and_then(|n| StatusCode::from_u16(n).ok());
        if status.is_none() {
            problems.push(origin, at, "must be an HTTP error status code (400-599)");
        }
        status
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            problems.push(origin, path, "must list at least one status code");
            Vec::new()
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| one(v, &index(path, i), problems))
            .collect(),
        other => one(other, path, problems).into_iter().collect(),
    }
}

fn read_page(
    file: &str,
    workdir: &Path,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<ErrorPage> {
    let full = workdir.join(file);
    let canonical = match full.canonicalize() {
        Ok(canonical) if canonical.is_file() => canonical,
        _ => {
            problems.push(
                origin,
                path,
                format!("`{file}` is not a file under {}", workdir.display()),
            );
            return None;
        }
    };
    if !canonical.starts_with(workdir) {
        problems.push(
            origin,
            path,
            format!("`{file}` lies outside the working directory"),
        );
        return None;
    }
    match std::fs::read(&canonical) {
        Ok(bytes) => Some(ErrorPage::File {
            body: Bytes::from(bytes),
            content_type: crate::static_files::content_type(&canonical),
        }),
        Err(err) => {
            problems.push(origin, path, format!("cannot read `{file}`: {err}"));
            None
        }
    }
}

fn redirect_page(
    page: &str,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<ErrorPage> {
    let local = format!("/{}", page.trim_start_matches('/'));
    // A local path only: a configured error page may not send users to another host.
    if page.contains("://") || page.contains('\\') || page.is_empty() {
        problems.push(
            origin,
            path,
            "must be a path on this application, like `/error.html`",
        );
        return None;
    }
    match HeaderValue::from_str(&local) {
        Ok(location) => Some(ErrorPage::Redirect {
            path: local,
            location,
        }),
        Err(_) => {
            problems.push(origin, path, "not a valid URL path");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(status: Value, file: Option<&str>, path: Option<&str>) -> ErrorPageDef {
        ErrorPageDef {
            position: 0,
            status,
            file: file.map(str::to_owned),
            path: path.map(str::to_owned),
        }
    }

    fn problems_of(defs: &[ErrorPageDef], workdir: &Path) -> Vec<String> {
        let mut problems = Problems::default();
        let defs: Vec<ErrorPageDef> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| ErrorPageDef {
                position: i,
                ..d.clone()
            })
            .collect();
        ErrorPages::from_config(&defs, workdir, "xs-app.json", false, &mut problems);
        problems
            .into_error()
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect()
    }

    #[test]
    fn invalid_entries_are_reported_with_their_path() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("e.html"), "x").expect("write");
        let workdir = dir.path().canonicalize().expect("canonical");
        let found = problems_of(
            &[
                def(Value::from(404), Some("e.html"), None),
                def(serde_json::json!([404, 200, "x"]), Some("e.html"), None),
                def(Value::from(500), Some("missing.html"), None),
                def(Value::from(501), Some("../outside.html"), None),
                def(Value::from(502), Some("e.html"), Some("/e.html")),
                def(Value::from(503), None, Some("https://evil.example/")),
            ],
            &workdir,
        );
        let expected = [
            "$.errorPage[1].status[1]: must be an HTTP error status",
            "$.errorPage[1].status[2]: must be an HTTP error status",
            "$.errorPage[1].status: status 404 already has an error page",
            "$.errorPage[2].file: `missing.html` is not a file",
            "$.errorPage[3].file:",
            "$.errorPage[4]: needs exactly one of",
            "$.errorPage[5].path: must be a path",
        ];
        for want in expected {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "missing {want} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }
}
