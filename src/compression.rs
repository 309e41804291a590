//! Response compression, as approuter's `compression` property and `COMPRESSION` variable
//! configure it: brotli, gzip or deflate chosen by the client's `Accept-Encoding` q-values, for
//! compressible content types at least `minSize` bytes long (1024), streamed frame by frame.
//!
//! Never compressed: HEAD requests, 1xx/204/206/304 answers, bodies the backend already encoded,
//! `Cache-Control: no-transform`, non-compressible types (`multipart/mixed` only with
//! `compressResponseMixedTypeContent`). Compressible answers get `Vary: Accept-Encoding`; a strong
//! `ETag` becomes weak, since the bytes on the wire differ from the identity representation.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::config::problem::{Problems, child, deserialize_at};
use crate::config::xs_app::CompressionDef;

/// Default `minSize`: smaller bodies are sent as they are.
pub const DEFAULT_MIN_SIZE: u64 = 1024;
/// Brotli quality (as approuter's compression module: fast, still smaller than gzip).
const BROTLI_QUALITY: u32 = 4;
const BROTLI_WINDOW: u32 = 22;
const BROTLI_BUFFER: usize = 4096;

/// The effective compression settings: xs-app.json `compression`, overridden field by field by
/// the `COMPRESSION` environment variable (as approuter merges them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionPolicy {
    pub enabled: bool,
    pub min_size: u64,
    /// `compressResponseMixedTypeContent`: also compress `multipart/mixed` answers.
    pub mixed_content: bool,
}

impl Default for CompressionPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            min_size: DEFAULT_MIN_SIZE,
            mixed_content: false,
        }
    }
}

/// A content coding the router can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
    Deflate,
}

impl Encoding {
    /// In order of preference when the client weighs several equally.
    const PREFERRED: [Encoding; 3] = [Encoding::Brotli, Encoding::Gzip, Encoding::Deflate];

    pub fn token(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }
}

impl CompressionPolicy {
    /// Builds the policy; `xs_app_origin` names the xs-app.json file, `env` is the `COMPRESSION`
    /// text and its origin.
    pub fn from_config(
        xs_app: Option<&CompressionDef>,
        xs_app_origin: &str,
        env: Option<(&str, String)>,
        problems: &mut Problems,
    ) -> Self {
        let mut policy = Self::default();
        if let Some(def) = xs_app {
            policy.merge(def, xs_app_origin, "$.compression", problems);
        }
        if let Some((text, origin)) = env {
            match serde_json::from_str::<serde_json::Value>(text) {
                Err(err) => {
                    problems.push(&origin, "$", crate::config::problem::syntax_reason(&err))
                }
                Ok(value) => match deserialize_at::<CompressionDef>(value, "$") {
                    Ok(def) => policy.merge(&def, &origin, "$", problems),
                    Err((path, reason)) => problems.push(&origin, path, reason),
                },
            }
        }
        policy
    }

    fn merge(&mut self, def: &CompressionDef, origin: &str, path: &str, problems: &mut Problems) {
        if let Some(enabled) = def.enabled {
            self.enabled = enabled;
        }
        match def.min_size {
            Some(0) => problems.push(origin, child(path, "minSize"), "must be at least 1 (bytes)"),
            Some(size) => self.min_size = size,
            None => {}
        }
        if let Some(mixed) = def.compress_response_mixed_type_content {
            self.mixed_content = mixed;
        }
    }

    /// The coding to use for a request, before its answer is known (`None`: send identity).
    pub fn negotiate(&self, method: &Method, request: &HeaderMap) -> Option<Encoding> {
        if !self.enabled || method == Method::HEAD {
            return None;
        }
        let mut best: Option<(Encoding, u16)> = None;
        for value in request.get_all(header::ACCEPT_ENCODING) {
            let Ok(text) = value.to_str() else { continue };
            for encoding in Encoding::PREFERRED {
                let q = quality(text, encoding.token());
                if q > 0 && best.is_none_or(|(_, b)| q > b) {
                    best = Some((encoding, q));
                }
            }
        }
        best.map(|(encoding, _)| encoding)
    }

    /// Compresses `response` with `encoding` when it qualifies; adds `Vary` when it could have.
    pub fn apply(&self, encoding: Option<Encoding>, mut response: Response) -> Response {
        if !self.enabled || !has_body(response.status()) {
            return response;
        }
        let headers = response.headers();
        if !self.compressible(headers) || no_transform(headers) {
            return response;
        }
        add_vary(response.headers_mut());
        let Some(encoding) = encoding else {
            return response;
        };
        let headers = response.headers();
        let identity = headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if !identity || headers.contains_key(header::CONTENT_RANGE) {
            return response;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| response.body().size_hint().exact());
        if length.is_some_and(|len| len < self.min_size) {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        );
        weaken_etag(&mut parts.headers);
        Response::from_parts(parts, Body::new(CompressedBody::new(body, encoding)))
    }

    fn compressible(&self, headers: &HeaderMap) -> bool {
        let Some(content_type) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence.starts_with("multipart/mixed") || essence == "multipart/x-mixed-replace" {
            return self.mixed_content;
        }
        is_compressible_type(&essence)
    }
}

/// Whether a media type (lower case, no parameters) is worth compressing: text, JSON, XML,
/// JavaScript and the other types the `compressible` database marks so.
pub fn is_compressible_type(essence: &str) -> bool {
    const TYPES: &[&str] = &[
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/xml",
        "application/xml-dtd",
        "application/graphql",
        "application/x-www-form-urlencoded",
        "application/wasm",
        "application/rtf",
        "application/postscript",
        "application/x-sh",
        "application/x-tar",
        "application/vnd.ms-fontobject",
        "application/x-font-ttf",
        "font/ttf",
        "font/otf",
        "image/bmp",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    ];
    if essence.starts_with("text/") || TYPES.contains(&essence) {
        return true;
    }
    ["+json", "+xml", "+text"]
        .iter()
        .any(|suffix| essence.ends_with(suffix))
}

/// The q-value (0–1000) a comma-separated `Accept-Encoding` gives `token`, directly or through
/// `*`; 0 when it is not acceptable.
fn quality(accept_encoding: &str, token: &str) -> u16 {
    let mut wildcard = None;
    for entry in accept_encoding.split(',') {
        let mut params = entry.split(';');
        let name = params.next().unwrap_or_default().trim();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .next()
            .map_or(Some(1000), parse_q);
        let Some(q) = q else { continue };
        if name.eq_ignore_ascii_case(token) {
            return q;
        }
        if name == "*" {
            wildcard = Some(q);
        }
    }
    wildcard.unwrap_or(0)
}

/// `1`, `0.5`, `0.001` → thousandths; anything else is malformed.
fn parse_q(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(etag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(etag.as_bytes());
    match HeaderValue::from_bytes(&weak) {
        Ok(value) => {
            headers.insert(header::ETAG, value);
        }
        Err(_) => {
            headers.remove(header::ETAG);
        }
    }
}

/// One streaming compressor writing into a buffer that is handed out frame by frame.
enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(encoding: Encoding) -> Self {
        let level = flate2::Compression::new(6);
        match encoding {
            Encoding::Gzip => Self::Gzip(GzEncoder::new(Vec::new(), level)),
            Encoding::Deflate => Self::Deflate(ZlibEncoder::new(Vec::new(), level)),
            Encoding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Gzip(e) => e.write_all(data),
            Self::Deflate(e) => e.write_all(data),
            Self::Brotli(e) => e.write_all(data),
        }
    }

    /// Sync-flushes, so that everything written so far can be decoded by the client.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Gzip(e) => e.flush(),
            Self::Deflate(e) => e.flush(),
            Self::Brotli(e) => e.flush(),
        }
    }

    /// The compressed bytes produced so far.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Self::Gzip(e) => std::mem::take(e.get_mut()),
            Self::Deflate(e) => std::mem::take(e.get_mut()),
            Self::Brotli(e) => std::mem::take(e.get_mut()),
        }
    }

    /// Ends the stream and returns the remaining bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Gzip(e) => e.finish(),
            Self::Deflate(e) => e.finish(),
            Self::Brotli(e) => Ok(e.into_inner()),
        }
    }
}

/// A body compressed as it streams. Whatever the inner body delivered is flushed to the client
/// as soon as the inner body has nothing more ready, so streamed answers (server-sent events,
/// long polls) are not held back until the compressor's buffer fills.
struct CompressedBody {
    inner: Body,
    encoder: Option<Encoder>,
    unflushed: bool,
    trailers: Option<HeaderMap>,
}

impl CompressedBody {
    fn new(inner: Body, encoding: Encoding) -> Self {
        Self {
            inner,
            encoder: Some(Encoder::new(encoding)),
            unflushed: false,
            trailers: None,
        }
    }
}

fn data_frame(bytes: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
}

impl HttpBody for CompressedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        encoder.write(&data).map_err(axum::Error::new)?;
                        this.unflushed = true;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return data_frame(out);
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => {
                    let Some(encoder) = this.encoder.take() else {
                        continue;
                    };
                    let out = encoder.finish().map_err(axum::Error::new)?;
                    if !out.is_empty() {
                        return data_frame(out);
                    }
                }
                Poll::Pending => {
                    if this.unflushed {
                        this.unflushed = false;
                        encoder.flush().map_err(axum::Error::new)?;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return data_frame(out);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("value"),
        );
        headers
    }

    #[test]
    fn negotiation_follows_q_values_then_preference() {
        let policy = CompressionPolicy::default();
        let get = Method::GET;
        let pick = |v: &str| policy.negotiate(&get, &accept(v));
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip;q=1, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("deflate"), Some(Encoding::Deflate));
        assert_eq!(pick("*"), Some(Encoding::Brotli));
        assert_eq!(pick("*;q=0.2, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=0, gzip;q=0"), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip;q=abc"), None);
        assert_eq!(policy.negotiate(&get, &HeaderMap::new()), None);
        assert_eq!(policy.negotiate(&Method::HEAD, &accept("gzip")), None);
        let off = CompressionPolicy {
            enabled: false,
            ..CompressionPolicy::default()
        };
        assert_eq!(off.negotiate(&get, &accept("gzip")), None);
    }

    #[test]
    fn env_overrides_xs_app_field_by_field_and_bad_values_are_reported() {
        let mut problems = Problems::default();
        let def = CompressionDef {
            enabled: Some(true),
            min_size: Some(2048),
            compress_response_mixed_type_content: Some(true),
        };
        let policy = CompressionPolicy::from_config(
            Some(&def),
            "xs-app.json",
            Some((r#"{"enabled": false}"#, "env COMPRESSION".into())),
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            policy,
            CompressionPolicy {
                enabled: false,
                min_size: 2048,
                mixed_content: true
            }
        );
        CompressionPolicy::from_config(
            None,
            "xs-app.json",
            Some((r#"{"minSize": 0, "level": 9}"#, "env COMPRESSION".into())),
            &mut problems,
        );
        let found: Vec<String> = problems
            .into_error()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("env COMPRESSION: $.level: unknown field `level`"),
            "{found:?}"
        );
    }

    #[test]
    fn strong_etags_become_weak() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        weaken_etag(&mut headers);
        assert_eq!(headers[header::ETAG], "W/\"abc\"");
        weaken_etag(&mut headers);
        assert_eq!(headers[header::ETAG], "W/\"abc\"");
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/html",
            "application/json",
            "application/vnd.api+json",
            "image/svg+xml",
        ] {
            assert!(is_compressible_type(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "video/mp4",
            "application/zip",
        ] {
            assert!(!is_compressible_type(t), "{t}");
        }
    }

    async fn roundtrip(encoding: Encoding, chunks: Vec<&'static [u8]>) -> Vec<u8> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let body = Body::new(CompressedBody::new(Body::from_stream(stream), encoding));
        let compressed = body.collect().await.expect("collect").to_bytes();
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut out)
                .expect("gunzip"),
            Encoding::Deflate => flate2::read::ZlibDecoder::new(&compressed[..])
                .read_to_end(&mut out)
                .expect("inflate"),
            Encoding::Brotli => brotli::Decompressor::new(&compressed[..], 4096)
                .read_to_end(&mut out)
                .expect("unbrotli"),
        };
        out
    }

    #[tokio::test]
    async fn every_coding_round_trips() {
        for encoding in Encoding::PREFERRED {
            let out = roundtrip(encoding, vec![b"hello ", b"world", b"", b"!"]).await;
            assert_eq!(out, b"hello world!", "{encoding:?}");
        }
    }
}
