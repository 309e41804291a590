//! Static files from a route's `localDir`: GET and HEAD only, content types by extension,
//! validators (ETag, Last-Modified) and conditional requests, `index.html` for directories.
//!
//! Traversal-proof: the path is percent-decoded once (the request path was already checked for
//! dot segments in every encoding), every segment must be a plain name, and the resolved file
//! must still lie under the directory after symlinks are followed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use tokio_util::io::ReaderStream;

use crate::rejection::Rejection;

const INDEX_FILE: &str = "index.html";

/// What to serve and how.
pub struct StaticRequest<'a> {
    /// The canonical directory of the route.
    pub root: &'a Path,
    /// The URL (path and query) after target rewriting; its path names the file.
    pub url: &'a str,
    /// The path the client asked for, used for the directory redirect.
    pub request_path: &'a str,
    pub request_query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub cache_control: Option<&'a HeaderValue>,
    /// The route's `replace`: matching files are rendered with its values.
    pub replace: Option<&'a crate::replacements::Replacements>,
}

pub async fn serve(req: StaticRequest<'_>) -> Response {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Rejection::MethodNotAllowed {
            allow: "GET, HEAD".to_owned(),
        }
        .into_response();
    }
    let path = req.url.split_once('?').map_or(req.url, |(p, _)| p);
    let Some(relative) = relative_path(path) else {
        return Rejection::BadRequest("Bad Request").into_response();
    };
    let mut file = req.root.join(&relative);
    let Ok(mut meta) = tokio::fs::metadata(&file).await else {
        return not_found();
    };
    let mut served_index = false;
    if meta.is_dir() {
        if !req.request_path.ends_with('/') {
            return redirect_to_directory(req.request_path, req.request_query);
        }
        file.push(INDEX_FILE);
        served_index = true;
        meta = match tokio::fs::metadata(&file).await {
            Ok(meta) if meta.is_file() => meta,
            _ => return not_found(),
        };
    }
    // Symlinks may not lead out of the directory.
    match tokio::fs::canonicalize(&file).await {
        Ok(real) if real.starts_with(req.root) => {}
        _ => return not_found(),
    }
    if !meta.is_file() {
        return not_found();
    }
    if let Some(replace) = req.replace {
        // Suffixes are matched against the URL path, `index.html` included for directories.
        let named = if served_index {
            std::borrow::Cow::Owned(format!("{}/{INDEX_FILE}", path.trim_end_matches('/')))
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        if replace.applies_to(&named) {
            return crate::replacements::serve_rendered(
                &file,
                replace,
                req.method,
                content_type(&file),
                req.cache_control,
            )
            .await;
        }
    }
    let modified = meta.modified().ok();
    let etag = etag(meta.len(), modified);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type(&file));
    if let Some(cache_control) = req.cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(modified) = modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));

    if not_modified(req.headers, &etag, modified) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        headers.remove(header::CONTENT_TYPE);
        *response.headers_mut() = headers;
        return response;
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    let body = if req.method == Method::HEAD {
        Body::empty()
    } else {
        match tokio::fs::File::open(&file).await {
            Ok(f) => Body::from_stream(ReaderStream::new(f)),
            Err(err) => {
                tracing::warn!(file = %file.display(), error = %err, "static file could not be opened");
                return not_found();
            }
        }
    };
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

fn not_found() -> Response {
    Rejection::NotFound("Not Found").into_response()
}

/// The decoded, relative file path, or `None` if any segment is not a plain name.
fn relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." || segment.contains(['\\', '\0']) {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

fn redirect_to_directory(path: &str, query: Option<&str>) -> Response {
    // One leading slash only: `//host/dir` must not become a protocol-relative redirect.
    let mut location = format!("/{}/", path.trim_start_matches('/'));
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => Rejection::BadRequest("Bad Request").into_response(),
    }
}

pub(crate) fn content_type(file: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "svg+xml"
        );
    let value = if textual && mime.get_param(mime_guess::mime::CHARSET).is_none() {
        format!("{mime}; charset=UTF-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn etag(len: u64, modified: Option<SystemTime>) -> String {
    let millis = modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    format!("W/\"{len:x}-{millis:x}\"")
}

fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.split(',').map(str::trim).any(|tag| {
            tag == "*"
                || tag == etag
                || tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
        });
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        // HTTP dates have second precision.
        (Some(since), Some(modified)) => {
            httpdate::fmt_http_date(modified) == httpdate::fmt_http_date(since) || modified <= since
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_refuse_anything_but_names() {
        assert_eq!(
            relative_path("/a/b%20c.txt"),
            Some(PathBuf::from("a/b c.txt"))
        );
        assert_eq!(relative_path("//a///b"), Some(PathBuf::from("a/b")));
        for bad in ["/a/%2e%2e/b", "/..", "/a%5c..", "/a%00", "/%ff"] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_carry_charset_for_text() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=UTF-8"
        );
        assert_eq!(
            content_type(Path::new("a.json")),
            "application/json; charset=UTF-8"
        );
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(
            content_type(Path::new("a.unknownext")),
            "application/octet-stream"
        );
    }

    #[test]
    fn directory_redirect_is_never_protocol_relative() {
        let r = redirect_to_directory("//evil.example", Some("a=1"));
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "/evil.example/?a=1");
    }
}
