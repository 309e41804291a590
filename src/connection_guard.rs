//! What every client connection passes through before hyper reads it ([`ConnectionGuard`]):
//!
//! - **The first request head's deadline.** The head of a connection's first request must be
//!   complete within `XSROUTER_HEADER_READ_TIMEOUT` of the connection's start (after the TLS
//!   handshake), else reading fails with `TimedOut` and the connection is closed. hyper's own
//!   header read timeout only starts once hyper-util knows the protocol — after the first byte
//!   that is not part of the HTTP/2 preface — so without this a client that connects (or
//!   completes a TLS handshake) and then sends nothing, or half a preface, would stay forever.
//!   Later heads on a keep-alive connection are timed by hyper.
//! - **`Content-Length` together with `Transfer-Encoding`** (request smuggling, RFC 9112 §6.1):
//!   answered with 400 and never forwarded, as nginx ≥ 1.21.1 does. hyper's parser alone
//!   would frame such a request by the chunked encoding, silently drop the `Content-Length`
//!   and close the connection afterwards (`hyper/src/proto/h1/role.rs`): the request would
//!   still be forwarded, and nothing after the parse can tell it ever had both headers.
//!
//! The check follows the HTTP/1 message framing of everything the client sends, exactly as
//! hyper frames it: request heads end at the first empty line (CRLF or bare LF, as httparse
//! accepts them; empty lines before a request line are skipped), bodies are `Content-Length`
//! bytes or chunked (chunk sizes, extensions, trailers, as hyper's decoder reads them). When a
//! head with both headers ends, the line feed that ends it is replaced by a NUL before hyper
//! sees it: hyper's parser then refuses the head itself (400 Bad Request, the connection
//! closed after the answer), in order after any earlier pipelined request.
//!
//! Where the stream stops being HTTP/1 requests, the check stops for the rest of the
//! connection ("off"): an HTTP/2 preface (`PRI`), `CONNECT`, a request with `Upgrade` (the
//! connection may turn into a tunnel), and anything hyper itself refuses (hyper closes the
//! connection then). Once off, hyper's own handling applies again (see above: never forwarded
//! ambiguously, the connection closed).
//!
//! Cost: heads are scanned for line feeds eight bytes at a time and only lines that begin with
//! `c`, `t` or `u` are looked at; bodies of known length are skipped by counting; chunked
//! bodies cost a few steps per chunk. Measured in `docs/robustness.md`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) is 24 bytes.
const H2_PREFACE_LEN: u64 = 24;

/// A client connection with the first-head deadline and the smuggling check of the module
/// documentation. Writes pass through untouched.
pub struct ConnectionGuard<S> {
    inner: S,
    /// Armed until the first request head is complete.
    first_head: Option<Pin<Box<Sleep>>>,
    /// Bytes read while `first_head` is armed.
    read_before_first_head: u64,
    framing: Framing,
}

impl<S> ConnectionGuard<S> {
    /// Wraps `inner`: the first request head must be complete within `first_head_within`.
    pub fn new(inner: S, first_head_within: Duration) -> Self {
        Self {
            inner,
            first_head: Some(Box::pin(tokio::time::sleep(first_head_within))),
            read_before_first_head: 0,
            framing: Framing::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnectionGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &mut buf.filled_mut()[before..];
                this.framing.scan(read);
                if this.first_head.is_some() {
                    this.read_before_first_head += read.len() as u64;
                    // An HTTP/2 client is past the preface (hyper-util knows the protocol).
                    if this.framing.first_head_done
                        || (this.framing.is_off() && this.read_before_first_head >= H2_PREFACE_LEN)
                    {
                        this.first_head = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = &mut this.first_head
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.first_head = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request head within XSROUTER_HEADER_READ_TIMEOUT",
                    )));
                }
                Poll::Pending
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnectionGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where in the client's byte stream the next byte belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line; empty lines are skipped (as httparse does).
    BeforeRequest,
    /// A CR before a request line: a LF must follow.
    LeadingCr,
    /// Inside a request line.
    RequestLine,
    /// Inside a header line (or at the start of one).
    HeaderLine,
    /// A body of known length: this many bytes to come.
    Body(u64),
    /// Chunked body, as hyper's `ChunkedState`: the first digit of a chunk size.
    ChunkStart,
    ChunkSize(u64),
    ChunkSizeLws(u64),
    ChunkExtension(u64),
    ChunkSizeLf(u64),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk, or after a trailer line: CR (the end) or a trailer.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    /// Not following the framing any more (see the module documentation).
    Off,
}

/// The longest line start kept when a line spans reads: enough for any header name checked
/// and a `Content-Length` value; a longer `Content-Length` line turns the check off.
const LINE_KEEP: usize = 64;

/// The HTTP/1 request framing of one connection.
struct Framing {
    state: State,
    /// The start of a line whose end has not arrived yet.
    partial: [u8; LINE_KEEP],
    partial_len: usize,
    partial_truncated: bool,
    head: Head,
    /// A request head has been completed (hyper has or will have a request to parse).
    first_head_done: bool,
}

/// What the current request head has shown so far.
#[derive(Default)]
struct Head {
    content_length: Option<u64>,
    has_content_length: bool,
    bad_content_length: bool,
    transfer_encoding: bool,
    /// `Upgrade` or `CONNECT`: the connection may stop being HTTP/1 after this request.
    tunnel: bool,
}

/// A complete line, as far as the framing cares.
enum Line {
    Empty,
    ContentLength(Option<u64>),
    TransferEncoding,
    Upgrade,
    Other,
}

impl Framing {
    fn new() -> Self {
        Self {
            state: State::BeforeRequest,
            partial: [0; LINE_KEEP],
            partial_len: 0,
            partial_truncated: false,
            head: Head::default(),
            first_head_done: false,
        }
    }

    fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Follows the framing through `data`, the bytes just read, in order. A head with both
    /// `Content-Length` and `Transfer-Encoding` gets its last LF replaced by a NUL.
    fn scan(&mut self, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let byte = data[pos];
            self.state = match self.state {
                State::Off => return,
                State::BeforeRequest => match byte {
                    b'\n' => {
                        pos += 1;
                        State::BeforeRequest
                    }
                    b'\r' => {
                        pos += 1;
                        State::LeadingCr
                    }
                    _ => State::RequestLine,
                },
                State::LeadingCr => {
                    pos += 1;
                    if byte == b'\n' {
                        State::BeforeRequest
                    } else {
                        State::Off
                    }
                }
                state @ (State::RequestLine | State::HeaderLine) => {
                    let rest = &data[pos..];
                    let Some(length) = find_byte(rest, b'\n') else {
                        self.keep_partial(rest);
                        return;
                    };
                    let line_end = pos + length;
                    let next = if state == State::RequestLine {
                        self.request_line(&data[pos..line_end])
                    } else {
                        self.header_line(&data[pos..line_end])
                    };
                    if next == State::Off && self.rejected_head() {
                        // hyper's parser refuses the head here (the module documentation).
                        data[line_end] = 0;
                    }
                    pos = line_end + 1;
                    next
                }
                State::Body(remaining) => {
                    let available = (data.len() - pos) as u64;
                    if available < remaining {
                        self.state = State::Body(remaining - available);
                        return;
                    }
                    // `remaining` ≤ what is left of `data`: it fits in usize.
                    pos += remaining as usize;
                    State::BeforeRequest
                }
                State::ChunkData(remaining) => {
                    let available = (data.len() - pos) as u64;
                    if available < remaining {
                        self.state = State::ChunkData(remaining - available);
                        return;
                    }
                    pos += remaining as usize;
                    State::ChunkDataCr
                }
                State::Trailer => match find_byte(&data[pos..], b'\r') {
                    Some(at) => {
                        pos += at + 1;
                        State::TrailerLf
                    }
                    None => return,
                },
                state => {
                    pos += 1;
                    chunk_step(state, byte)
                }
            };
        }
    }

    /// Keeps the start of a line that continues in the next read.
    fn keep_partial(&mut self, bytes: &[u8]) {
        let room = LINE_KEEP - self.partial_len;
        let kept = bytes.len().min(room);
        self.partial[self.partial_len..self.partial_len + kept].copy_from_slice(&bytes[..kept]);
        self.partial_len += kept;
        self.partial_truncated |= kept < bytes.len();
    }

    /// The whole line: `rest` completes what [`Self::keep_partial`] kept. Returns whether it is
    /// cut short (only its first [`LINE_KEEP`] bytes are there).
    fn complete_line<'a>(&'a mut self, rest: &'a [u8]) -> (&'a [u8], bool) {
        if self.partial_len == 0 {
            return (rest, false);
        }
        self.keep_partial(rest);
        let truncated = self.partial_truncated;
        let length = self.partial_len;
        self.partial_len = 0;
        self.partial_truncated = false;
        (&self.partial[..length], truncated)
    }

    fn request_line(&mut self, rest: &[u8]) -> State {
        let (line, _) = self.complete_line(rest);
        let preface = line.starts_with(b"PRI ");
        let tunnel = line.starts_with(b"CONNECT ");
        self.head = Head {
            tunnel,
            ..Head::default()
        };
        if preface {
            // The HTTP/2 preface: the rest is not HTTP/1.
            return State::Off;
        }
        State::HeaderLine
    }

    fn header_line(&mut self, rest: &[u8]) -> State {
        let (line, truncated) = self.complete_line(rest);
        match classify(line, truncated) {
            Line::Other => State::HeaderLine,
            Line::ContentLength(length) => {
                let head = &mut self.head;
                head.has_content_length = true;
                match (length, head.content_length) {
                    (None, _) => head.bad_content_length = true,
                    (Some(length), None) => head.content_length = Some(length),
                    (Some(length), Some(earlier)) => head.bad_content_length |= length != earlier,
                }
                State::HeaderLine
            }
            Line::TransferEncoding => {
                self.head.transfer_encoding = true;
                State::HeaderLine
            }
            Line::Upgrade => {
                self.head.tunnel = true;
                State::HeaderLine
            }
            Line::Empty => self.end_of_head(),
        }
    }

    /// Whether the head just ended had both framing headers (checked when the state turns off).
    fn rejected_head(&self) -> bool {
        self.head.transfer_encoding && self.head.has_content_length
    }

    fn end_of_head(&mut self) -> State {
        self.first_head_done = true;
        let head = &self.head;
        if head.transfer_encoding && head.has_content_length {
            tracing::debug!("request with both Content-Length and Transfer-Encoding: 400");
            return State::Off;
        }
        if head.tunnel {
            return State::Off;
        }
        if head.transfer_encoding {
            // hyper refuses any other final coding; then the connection closes anyway.
            return State::ChunkStart;
        }
        if head.bad_content_length {
            return State::Off;
        }
        match head.content_length {
            None | Some(0) => State::BeforeRequest,
            Some(length) => State::Body(length),
        }
    }
}

/// One byte of a chunk-size line, a chunk's CR LF, or the end of the trailers: the next state,
/// exactly as hyper's chunked decoder moves (anything it refuses turns the check off).
fn chunk_step(state: State, byte: u8) -> State {
    match (state, byte) {
        (State::ChunkStart, _) => match hex(byte) {
            Some(digit) => State::ChunkSize(u64::from(digit)),
            None => State::Off,
        },
        (State::ChunkSize(size), b'\t' | b' ') => State::ChunkSizeLws(size),
        (State::ChunkSize(size) | State::ChunkSizeLws(size), b';') => State::ChunkExtension(size),
        (
            State::ChunkSize(size) | State::ChunkSizeLws(size) | State::ChunkExtension(size),
            b'\r',
        ) => State::ChunkSizeLf(size),
        (State::ChunkSize(size), _) => {
            match hex(byte).and_then(|digit| size.checked_mul(16)?.checked_add(u64::from(digit))) {
                Some(size) => State::ChunkSize(size),
                None => State::Off,
            }
        }
        (State::ChunkSizeLws(size), b'\t' | b' ') => State::ChunkSizeLws(size),
        (State::ChunkExtension(_), b'\n') => State::Off,
        (State::ChunkExtension(size), _) => State::ChunkExtension(size),
        (State::ChunkSizeLf(0), b'\n') => State::TrailerStart,
        (State::ChunkSizeLf(size), b'\n') => State::ChunkData(size),
        (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
        (State::ChunkDataLf, b'\n') => State::ChunkStart,
        (State::TrailerStart, b'\r') => State::EndLf,
        (State::TrailerStart, _) => State::Trailer,
        (State::TrailerLf, b'\n') => State::TrailerStart,
        (State::EndLf, b'\n') => State::BeforeRequest,
        _ => State::Off,
    }
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A complete header line (without its LF; a CR before it is still there).
fn classify(line: &[u8], truncated: bool) -> Line {
    // Most lines are decided by their first byte.
    match line.first() {
        None | Some(b'\r') if line.len() <= 1 => Line::Empty,
        Some(b'c' | b'C') => match line.get(..15) {
            Some(name) if name.eq_ignore_ascii_case(b"content-length:") => {
                Line::ContentLength(if truncated {
                    None
                } else {
                    content_length(&line[15..])
                })
            }
            _ => Line::Other,
        },
        Some(b't' | b'T') if starts_with_ignore_case(line, b"transfer-encoding:") => {
            Line::TransferEncoding
        }
        Some(b'u' | b'U') if starts_with_ignore_case(line, b"upgrade:") => Line::Upgrade,
        _ => Line::Other,
    }
}

/// A `Content-Length` value as hyper reads it: decimal digits only, around them blanks.
fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.strip_suffix(b"\r").unwrap_or(value);
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |length, &byte| {
        if byte.is_ascii_digit() {
            length.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// The position of the first `needle` in `haystack`, eight bytes at a time.
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut words = haystack.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ pattern;
        // The lowest byte of `x` that is zero (the classic has-zero-byte test; bits above the
        // first zero byte may be wrong, the lowest one is exact).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(offset + (zero.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&byte| byte == needle)
        .map(|at| offset + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through the framing in reads of `step` bytes; returns the bytes as hyper
    /// would see them and the final state.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, State) {
        let mut framing = Framing::new();
        let mut out = input.to_vec();
        for piece in out.chunks_mut(step) {
            framing.scan(piece);
        }
        (out, framing.state)
    }

    /// Whether `input` is rejected, the same whatever way it is split into reads.
    fn rejected(input: &[u8]) -> bool {
        let (whole, _) = run(input, input.len().max(1));
        let rejected = whole != input;
        for step in 1..input.len().min(40) {
            let (split, _) = run(input, step);
            assert_eq!(
                split,
                whole,
                "step {step}: {:?}",
                String::from_utf8_lossy(input)
            );
        }
        rejected
    }

    #[test]
    fn both_framing_headers_are_rejected_in_any_order_and_case() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: x\r\n\r\n",
            "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked\nContent-length:  7\n\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(rejected(head.as_bytes()), "{head:?}");
            let (out, state) = run(head.as_bytes(), head.len());
            assert_eq!(state, State::Off);
            // Exactly the last LF is replaced.
            assert_eq!(out.last(), Some(&0), "{head:?}");
            assert_eq!(out[..out.len() - 1], head.as_bytes()[..head.len() - 1]);
        }
    }

    #[test]
    fn bodies_are_skipped_by_their_framing() {
        // Text that looks like a conflicting head inside bodies is never checked.
        let decoy = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = format!(
            "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{decoy}\
             POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{decoy}\r\n0\r\nX-Trailer: {decoy}\r\n\r\n\
             \r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
            decoy.len(),
            decoy.len(),
        );
        assert!(!rejected(stream.as_bytes()));
        assert_eq!(run(stream.as_bytes(), 7).1, State::BeforeRequest);
        // The same followed by a conflicting request: that one (and only it) is rejected.
        let attack = format!(
            "{stream}POST /d HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(rejected(attack.as_bytes()));
        let (out, _) = run(attack.as_bytes(), attack.len());
        assert_eq!(out.iter().filter(|&&b| b == 0).count(), 1);
        assert_eq!(out.last(), Some(&0));
    }

    #[test]
    fn the_check_stops_where_http1_stops() {
        for head in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            // Something hyper refuses: a bad length, a bad chunk, a CR without LF.
            "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            "\rGET / HTTP/1.1\r\n\r\n",
        ] {
            let (out, state) = run(head.as_bytes(), 3);
            assert_eq!(state, State::Off, "{head:?}");
            assert_eq!(out, head.as_bytes());
        }
        // After that, nothing is looked at.
        let tunnel = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\
                      POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!rejected(tunnel.as_bytes()));
    }

    #[test]
    fn equal_lengths_frame_and_differing_ones_stop_the_check() {
        let twice = "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(run(twice.as_bytes(), 1).1, State::BeforeRequest);
        let differ = "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(run(differ.as_bytes(), 1).1, State::Off);
        // A Content-Length line too long to keep across reads: the check stops (no guess).
        let long = format!(
            "POST / HTTP/1.1\r\nContent-Length:{}2\r\n\r\nab",
            " ".repeat(80)
        );
        assert_eq!(run(long.as_bytes(), 10).1, State::Off);
        assert_eq!(
            run(long.as_bytes(), long.len()).1,
            State::BeforeRequest,
            "in one read the whole line is there"
        );
    }

    #[test]
    fn find_byte_finds_the_first_one() {
        let text = b"0123456789abcdef\n0123\n";
        for start in 0..text.len() {
            assert_eq!(
                find_byte(&text[start..], b'\n'),
                text[start..].iter().position(|&b| b == b'\n'),
                "{start}"
            );
        }
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(find_byte(&[0x8a; 20], b'\n'), None);
        assert_eq!(find_byte(b"\x0b\x0a", b'\n'), Some(1));
    }
}
