//! HTTP/1.1 forwarding by hand: heads parsed with `httparse`, bodies moved as raw bytes.
//!
//! One task per client connection, on the worker thread that accepted it. For each request it:
//! reads the head into the connection's buffer; picks an endpoint (503 without endpoints; the
//! sessionAffinity ClientIP pin; else power of two choices over requests in flight,
//! `runtime::pick_least_open` on `EndpointState::open`); takes an idle upstream connection from
//! this worker's pool (a thread-local map: no lock, no channel, no task per upstream connection)
//! or connects (`UPSTREAM_CONNECT_TIMEOUT`); writes the head (the client's bytes unchanged when
//! there is no hop-by-hop header to strip) with whatever of the body has arrived in the same
//! write; moves the rest of the body by its framing (Content-Length, or chunked: the chunk sizes
//! are parsed only to find the end); reads the response head, writes it and its body back the
//! same way (no body after HEAD, 1xx, 204, 304; to the close when the response has no length, and
//! then the client connection closes too); then returns the upstream connection to the pool if
//! both sides may be reused. Pipelined requests are answered one at a time, in order.
//!
//! Retries: a request that was never sent (the connect failed or timed out) goes to another
//! endpoint, an untried one first, `MAX_ATTEMPTS` tries in all, then a 502. A pooled connection
//! that turns out closed before any byte of the response (the endpoint closed it while idle) is
//! replaced by a fresh connection to the same endpoint and the request is written again, but only
//! when all of it (head and body) is still in the buffer; a request whose body was streamed is
//! never sent twice. An upstream failure after part of the response went to the client closes the
//! client connection, so no client ever reads half a response as a whole one.
//!
//! `Expect: 100-continue` is forwarded and the endpoint's interim 100 relayed (if the client sends
//! its body without waiting, it is streamed at once). `Connection: upgrade` requests (WebSocket,
//! SPDY) keep their `Upgrade` header; after a 101 both connections are spliced as raw bytes until
//! either closes, counted as an open connection of the endpoint. A client that opens with the
//! HTTP/2 preface (h2 with prior knowledge) is handed, with the bytes read so far, to the hyper
//! path of `http.rs`, which also serves every h2c port.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::http::{Balancer, MAX_ATTEMPTS, UPSTREAM_CONNECT_TIMEOUT};
use crate::runtime::{accept_each, pick_least_open, EndpointState, PortConfig, PortState};

/// A request or response head may not be larger (hyper's default limit is ~400 KiB; haproxy's
/// buffer is 16 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Each connection's two read buffers are this large while it has a request at hand (and grow to
/// `MAX_HEAD` only for a large head); between requests it holds none.
const BUFFER: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// An idle pooled upstream connection older than this is closed instead of reused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per endpoint and worker.
const POOL_MAX_IDLE: usize = 256;
/// How long a closing client connection is drained, so that unread input does not turn the close
/// into a reset that destroys the last response.
const LINGER: Duration = Duration::from_secs(1);
/// The start of the HTTP/2 client preface, as far as an HTTP/1.1 parser reads before it fails.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2";

pub async fn serve(listener: std::net::TcpListener, port: Arc<PortState>, balancer: Balancer) {
    accept_each(listener, &port, |stream, peer| {
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            client: stream,
            peer,
            port: port.clone(),
            input: Buffer::new(),
            output: Buffer::new(),
            head: Vec::new(),
            scratch: Vec::new(),
            held: 0,
        };
        tokio::spawn(connection.run(balancer.clone()));
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Buffers

/// A read buffer: bytes `start..end` of `data` are held, the rest is room for the next read.
struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// Spare buffers never hold more than this many per worker.
const SPARE_BUFFERS: usize = 256;

thread_local! {
    /// Buffers of `BUFFER` bytes that no connection of this worker holds right now: a connection
    /// takes memory when bytes arrive and gives it back between requests, so an idle keep-alive
    /// connection holds none.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Buffer {
    /// A buffer without memory yet (taken on the first read).
    fn new() -> Self {
        Buffer {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Gives the memory back while no byte is held (a buffer grown for a large head is freed).
    fn release(&mut self) {
        if self.is_empty() && !self.data.is_empty() {
            let data = std::mem::take(&mut self.data);
            if data.len() == BUFFER {
                SPARE.with_borrow_mut(|spare| {
                    if spare.len() < SPARE_BUFFERS {
                        spare.push(data);
                    }
                });
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads once more after the bytes held; `Ok(0)` at EOF. Makes room first by moving the held
    /// bytes to the front, or by growing up to `MAX_HEAD`; fails when the buffer is full.
    async fn fill<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> io::Result<usize> {
        if self.data.is_empty() {
            self.data = SPARE
                .with_borrow_mut(Vec::pop)
                .unwrap_or_else(|| vec![0; BUFFER]);
        }
        // Little room left after the held bytes: move them to the front first.
        if self.start > 0 && self.data.len() - self.end < 2048 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            if self.data.len() < MAX_HEAD {
                self.data.resize(MAX_HEAD, 0);
            } else {
                return Err(io::Error::other("head larger than the buffer"));
            }
        }
        let n = from.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Heads

/// How a message's body ends (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// A response without length: it ends when the endpoint closes.
    UntilClose,
}

/// What the forwarding needs of a request head; the head's bytes stay in the input buffer.
#[derive(Debug)]
struct RequestHead {
    /// Bytes of the head, through the blank line.
    len: usize,
    http10: bool,
    /// A HEAD request: its response has no body whatever its headers say.
    head_method: bool,
    framing: Framing,
    /// The client connection may stay open after the response.
    keep_alive: bool,
    upgrade: bool,
    expect_continue: bool,
    /// The head to send upstream was rewritten (into `Connection::head`); else it is sent as read.
    rewritten: bool,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadRequest {
    Malformed,
    TooLarge,
    /// CONNECT: the proxy is not a forward proxy.
    Method,
}

impl BadRequest {
    fn status(self) -> (u16, &'static str, &'static str) {
        match self {
            BadRequest::Malformed => (400, "Bad Request", "malformed request"),
            BadRequest::TooLarge => (
                431,
                "Request Header Fields Too Large",
                "request head too large",
            ),
            BadRequest::Method => (405, "Method Not Allowed", "CONNECT is not supported"),
        }
    }
}

/// What the forwarding needs of a response head.
#[derive(Debug)]
struct ResponseHead {
    len: usize,
    status: u16,
    framing: Framing,
    /// The upstream connection may carry another request after this response.
    reusable: bool,
    /// The client connection closes after this response.
    client_close: bool,
    /// The head to send to the client was rewritten (into `Connection::scratch`).
    rewritten: bool,
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The comma-separated tokens of a header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether the final transfer coding of a Transfer-Encoding value is chunked.
fn ends_chunked(value: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

/// Whether a header is per hop (RFC 9110 section 7.6.1) and is not passed on. Framing headers
/// stay even if `Connection` lists them: the body is forwarded with its own framing. `keep` is a
/// header that must stay (`upgrade` for an upgrade request).
fn hop_by_hop(name: &str, value: &[u8], headers: &[httparse::Header<'_>], keep: &str) -> bool {
    if name.eq_ignore_ascii_case(keep) {
        return false;
    }
    if ["connection", "keep-alive", "proxy-connection", "upgrade"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return true;
    }
    // gRPC needs `te: trailers`; any other TE value is hop-by-hop.
    if name.eq_ignore_ascii_case("te") {
        return !trim(value).eq_ignore_ascii_case(b"trailers");
    }
    if ["content-length", "transfer-encoding", "host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The origin-form of a request target (`http://host/path?q` -> `/path?q`).
fn origin_form(target: &str) -> Option<&str> {
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = target.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })?;
    Some(rest.find('/').map_or("/", |at| &rest[at..]))
}

/// Parses a request head at the start of `buf`: `Ok(None)` while it is incomplete. When the head
/// must change on its way upstream (hop-by-hop headers, an absolute-form target), the new head is
/// written to `out`.
fn parse_request(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<RequestHead>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooLarge),
        Err(_) => return Err(BadRequest::Malformed),
    };
    let method = request.method.unwrap_or_default();
    let target = request.path.unwrap_or_default();
    let http10 = request.version == Some(0);
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(BadRequest::Method);
    }
    let mut content_length = None;
    let mut transfer_encoding = None;
    let (mut close, mut keep_alive, mut upgrade_token) = (false, false, false);
    let (mut upgrade_header, mut expect_continue, mut hop) = (false, false, false);
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(value).ok_or(BadRequest::Malformed)?;
            if content_length.is_some_and(|l| l != length) {
                return Err(BadRequest::Malformed);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last header's last coding decides.
            transfer_encoding = Some(ends_chunked(value));
        } else if name.eq_ignore_ascii_case("connection") {
            hop = true;
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
            hop = true;
        } else if name.eq_ignore_ascii_case("keep-alive")
            || name.eq_ignore_ascii_case("proxy-connection")
        {
            hop = true;
        } else if name.eq_ignore_ascii_case("te") {
            hop |= !trim(value).eq_ignore_ascii_case(b"trailers");
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (transfer_encoding, content_length) {
        // Both framings at once is how requests are smuggled; a final coding other than chunked
        // leaves the length unknown (RFC 9112 section 6.3).
        (Some(_), Some(_)) | (Some(false), None) => return Err(BadRequest::Malformed),
        (Some(true), None) => Framing::Chunked,
        (None, Some(0) | None) => Framing::Empty,
        (None, Some(length)) => Framing::Length(length),
    };
    let upgrade = !http10 && upgrade_token && upgrade_header;
    let origin = origin_form(target);
    let rewritten = hop || origin.is_some();
    if rewritten {
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(origin.unwrap_or(target).as_bytes());
        out.extend_from_slice(if http10 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let keep = if upgrade { "upgrade" } else { "" };
        for header in request.headers.iter() {
            if !hop_by_hop(header.name, header.value, request.headers, keep) {
                push_header(out, header.name, header.value);
            }
        }
        if upgrade {
            // The upgrade is end to end: the endpoint must see what the client asked for.
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(RequestHead {
        len,
        http10,
        head_method: method.eq_ignore_ascii_case("HEAD"),
        framing,
        keep_alive: if http10 { keep_alive && !close } else { !close },
        upgrade,
        expect_continue,
        rewritten,
    }))
}

/// Parses a response head at the start of `buf` for `request`: `Ok(None)` while incomplete,
/// `Err` when it is not HTTP/1.x or its framing is contradictory. A final response whose head
/// must change for the client (hop-by-hop headers, `connection: close` to add because the client
/// connection closes after it, or `force_close`) is rewritten into `out`.
fn parse_response(
    buf: &[u8],
    request: &RequestHead,
    force_close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let status = response.code.unwrap_or_default();
    let http10 = response.version == Some(0);
    if (100..200).contains(&status) {
        // Interim responses (and 101) are passed on as they are.
        return Ok(Some(ResponseHead {
            len,
            status,
            framing: Framing::Empty,
            reusable: false,
            client_close: status == 101,
            rewritten: false,
        }));
    }
    let mut content_length = None;
    let mut transfer_encoding = None;
    let (mut close, mut keep_alive, mut hop) = (false, false, false);
    for header in response.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(value).ok_or(())?;
            if content_length.is_some_and(|l| l != length) {
                return Err(());
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = Some(ends_chunked(value));
        } else if name.eq_ignore_ascii_case("connection") {
            hop = true;
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if ["keep-alive", "proxy-connection", "upgrade"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            hop = true;
        }
    }
    let framing = if request.head_method || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (transfer_encoding, content_length) {
            (Some(_), Some(_)) => return Err(()),
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) | (None, None) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(length)) => Framing::Length(length),
        }
    };
    let upstream_keeps = if http10 { keep_alive && !close } else { !close };
    let client_close = force_close || !request.keep_alive || framing == Framing::UntilClose;
    let rewritten = hop || http10 || client_close || request.http10;
    if rewritten {
        out.clear();
        out.extend_from_slice(format!("HTTP/1.1 {status} ").as_bytes());
        out.extend_from_slice(response.reason.unwrap_or_default().as_bytes());
        out.extend_from_slice(b"\r\n");
        for header in response.headers.iter() {
            if !hop_by_hop(header.name, header.value, response.headers, "") {
                push_header(out, header.name, header.value);
            }
        }
        if client_close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if request.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        reusable: upstream_keeps && framing != Framing::UntilClose,
        client_close,
        rewritten,
    }))
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// Where a chunked body's parser is (RFC 9112 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunk {
    /// Reading the hex size; `digits` so far.
    #[default]
    Size,
    /// After the size: chunk extensions up to CR.
    Extension,
    SizeLf,
    /// This many data bytes of the chunk are left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line or the final CRLF.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Finds the end of a chunked body without changing it; counts its data bytes.
#[derive(Debug, Default, Clone)]
struct ChunkedDecoder {
    state: Chunk,
    size: u64,
    digits: u8,
}

#[derive(Debug, PartialEq, Eq)]
struct MalformedBody;

impl ChunkedDecoder {
    fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Reads `input` up to the end of the body: the number of bytes that belong to it and how
    /// many of them are chunk data.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, u64), MalformedBody> {
        let mut at = 0;
        let mut data = 0;
        while at < input.len() && self.state != Chunk::Done {
            if let Chunk::Data(left) = self.state {
                let take = left.min((input.len() - at) as u64);
                at += take as usize;
                data += take;
                self.state = if take == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - take)
                };
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = match (self.state, byte) {
                (Chunk::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    if self.digits == 15 {
                        return Err(MalformedBody);
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + (byte as char).to_digit(16).unwrap_or(0) as u64;
                    Chunk::Size
                }
                (Chunk::Size, b';' | b' ' | b'\t') if self.digits > 0 => Chunk::Extension,
                (Chunk::Size, b'\r') if self.digits > 0 => Chunk::SizeLf,
                (Chunk::Extension, b'\r') => Chunk::SizeLf,
                (Chunk::Extension, b'\n') => return Err(MalformedBody),
                (Chunk::Extension, _) => Chunk::Extension,
                (Chunk::SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data(size)
                    }
                }
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                (Chunk::TrailerStart | Chunk::Trailer, b'\n') => return Err(MalformedBody),
                (Chunk::TrailerStart | Chunk::Trailer, _) if byte != b'\r' => Chunk::Trailer,
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                (Chunk::EndLf, b'\n') => Chunk::Done,
                _ => return Err(MalformedBody),
            };
        }
        Ok((at, data))
    }
}

/// How much of a body is left to forward.
#[derive(Debug, Clone)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose { closed: bool },
}

impl BodyState {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyState::Length(0),
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => BodyState::UntilClose { closed: false },
        }
    }

    fn is_done(&self) -> bool {
        match self {
            BodyState::Length(left) => *left == 0,
            BodyState::Chunked(decoder) => decoder.is_done(),
            BodyState::UntilClose { closed } => *closed,
        }
    }

    /// How many bytes at the start of `input` belong to the body, and how many of those are data.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, u64), MalformedBody> {
        match self {
            BodyState::Length(left) => {
                let take = (*left).min(input.len() as u64);
                *left -= take;
                Ok((take as usize, take))
            }
            BodyState::Chunked(decoder) => decoder.advance(input),
            BodyState::UntilClose { .. } => Ok((input.len(), input.len() as u64)),
        }
    }
}

/// Adds to a byte counter (an atomic shared with the other workers: skipped for nothing).
fn count(counter: &Counter, bytes: u64) {
    if bytes > 0 {
        counter.inc_by(bytes);
    }
}

enum PumpError {
    Read,
    Write,
    Malformed,
}

/// Moves the rest of a body from `from` (through `buf`, which holds what was read of it) to `to`,
/// counting its data bytes; leaves any bytes after the body in `buf`.
async fn pump(
    body: &mut BodyState,
    buf: &mut Buffer,
    from: &mut TcpStream,
    to: &mut TcpStream,
    counter: &Counter,
) -> Result<(), PumpError> {
    while !body.is_done() {
        if buf.is_empty() {
            match buf.fill(from).await {
                Ok(0) => {
                    if let BodyState::UntilClose { closed } = body {
                        *closed = true;
                        break;
                    }
                    return Err(PumpError::Read);
                }
                Ok(_) => {}
                Err(_) => return Err(PumpError::Read),
            }
        }
        let (used, data) = body
            .advance(buf.bytes())
            .map_err(|_| PumpError::Malformed)?;
        to.write_all(&buf.bytes()[..used])
            .await
            .map_err(|_| PumpError::Write)?;
        count(counter, data);
        buf.consume(used);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The per-worker upstream pool

struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: HashMap<SocketAddr, Vec<Idle>>,
    swept: Option<Instant>,
}

thread_local! {
    /// Idle upstream connections of this worker thread, by endpoint. A connection task never
    /// leaves its worker's current-thread runtime, so it always finds its own worker's pool.
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// The most recently idled connection to `addr` that is still open and fresh.
fn pool_take(addr: SocketAddr) -> Option<TcpStream> {
    POOL.with_borrow_mut(|pool| {
        let idle = pool.idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(Idle { stream, since }) = idle.pop() {
            if now.duration_since(since) > POOL_IDLE_TIMEOUT {
                // The rest are older still.
                idle.clear();
                return None;
            }
            // The endpoint may have closed it while idle (or sent bytes nobody asked for): a
            // non-blocking read must find nothing to read. Tokio answers from its readiness
            // state without a syscall when no event arrived since the last read.
            let mut probe = [0u8; 1];
            if matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            {
                return Some(stream);
            }
        }
        None
    })
}

fn pool_put(addr: SocketAddr, stream: TcpStream) {
    POOL.with_borrow_mut(|pool| {
        let now = Instant::now();
        let idle = pool.idle.entry(addr).or_default();
        if idle.len() >= POOL_MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle { stream, since: now });
        // Now and then, close what idled too long (e.g. connections to endpoints that are gone).
        if pool
            .swept
            .is_none_or(|swept| now.duration_since(swept) > POOL_IDLE_TIMEOUT / 4)
        {
            pool.swept = Some(now);
            pool.idle.retain(|_, idle| {
                idle.retain(|i| now.duration_since(i.since) <= POOL_IDLE_TIMEOUT);
                !idle.is_empty()
            });
        }
    });
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A request in flight to an endpoint: the load `pick_least_open` compares.
struct InFlight<'a>(&'a EndpointState);

impl<'a> InFlight<'a> {
    fn start(endpoint: &'a EndpointState) -> Self {
        endpoint.open.fetch_add(1, Ordering::Relaxed);
        InFlight(endpoint)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// The connection

/// What happens to the client connection after a request.
enum Next {
    KeepAlive,
    /// Close it (after the response): the client asked, or the response has no length.
    Close,
    /// It is gone or was handed on: just drop it.
    Gone,
}

/// How an exchange with the endpoint failed.
enum Failure {
    /// Nothing of a response arrived (the connection closed or failed).
    NoResponse,
    /// The endpoint sent something that is not a response the proxy can forward.
    BadResponse,
    /// The response failed after part of it went to the client.
    Midway,
    /// The client went away or sent a malformed body.
    Client,
}

struct Connection {
    client: TcpStream,
    peer: SocketAddr,
    port: Arc<PortState>,
    /// Bytes from the client.
    input: Buffer,
    /// Bytes from the endpoint.
    output: Buffer,
    /// A rewritten request head.
    head: Vec<u8>,
    /// A rewritten response head, or an error response.
    scratch: Vec<u8>,
    /// Bytes at the start of `input` that were sent upstream but are kept until a response
    /// arrives, so the request can be written again on a fresh connection.
    held: usize,
}

impl Connection {
    async fn run(mut self, balancer: Balancer) {
        let mut first = true;
        loop {
            let request = match self.read_request().await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(_) if first && self.input.bytes().starts_with(H2_PREFACE) => {
                    // HTTP/2 with prior knowledge: the hyper path takes over.
                    let io = Prefixed {
                        prefix: self.input.bytes().to_vec(),
                        at: 0,
                        stream: self.client,
                    };
                    crate::http::serve_connection(io, self.port, self.peer, balancer).await;
                    return;
                }
                Err(bad) => {
                    let (status, reason, message) = bad.status();
                    let _ = self.reply(status, reason, message, true, false).await;
                    self.close().await;
                    return;
                }
            };
            first = false;
            let next = self.forward(request).await;
            self.input.release();
            self.output.release();
            match next {
                Next::KeepAlive => {}
                Next::Close => {
                    self.close().await;
                    return;
                }
                Next::Gone => return,
            }
        }
    }

    /// Reads the next request head; `Ok(None)` when the client closed (or failed) first.
    async fn read_request(&mut self) -> Result<Option<RequestHead>, BadRequest> {
        loop {
            if !self.input.is_empty() {
                if let Some(request) = parse_request(self.input.bytes(), &mut self.head)? {
                    return Ok(Some(request));
                }
                if self.input.len() >= MAX_HEAD {
                    return Err(BadRequest::TooLarge);
                }
            }
            if self.input.is_empty() && self.client.readable().await.is_err() {
                // Waiting for the next request holds no buffer memory.
                return Ok(None);
            }
            match self.input.fill(&mut self.client).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Half-closes the client connection and drains what it still sends for a moment, so the
    /// kernel does not answer unread bytes with a reset that could destroy the response.
    async fn close(mut self) {
        let _ = self.client.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(1..) = self.client.read(&mut sink).await {}
        })
        .await;
    }

    /// Writes a short plain-text response of the proxy's own.
    async fn reply(
        &mut self,
        status: u16,
        reason: &str,
        message: &str,
        close: bool,
        head_method: bool,
    ) -> io::Result<()> {
        let connection = if close { "connection: close\r\n" } else { "" };
        let body = if head_method { "" } else { message };
        let newline = if head_method { "" } else { "\n" };
        let text = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{connection}\r\n{body}{newline}",
            message.len() + 1
        );
        self.client.write_all(text.as_bytes()).await
    }

    /// Answers a request that no endpoint gets with the proxy's own error.
    async fn refuse(
        &mut self,
        request: &RequestHead,
        complete: bool,
        status: u16,
        reason: &str,
        message: &str,
    ) -> Next {
        // The connection can serve another request only if this one was read to its end.
        let close = !(request.keep_alive && complete);
        match self
            .reply(status, reason, message, close, request.head_method)
            .await
        {
            Err(_) => Next::Gone,
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
        }
    }

    /// Sends one request to an endpoint and its response back.
    async fn forward(&mut self, request: RequestHead) -> Next {
        let config = self.port.config();
        // What of the body is here already.
        let mut body = BodyState::new(request.framing);
        let (prefix, prefix_data) = match body.advance(&self.input.bytes()[request.len..]) {
            Ok(read) => read,
            Err(MalformedBody) => {
                let _ = self
                    .reply(400, "Bad Request", "malformed body", true, false)
                    .await;
                return Next::Close;
            }
        };
        let complete = body.is_done();
        if config.endpoints.is_empty() {
            if complete {
                self.input.consume(request.len + prefix);
            }
            return self
                .refuse(
                    &request,
                    complete,
                    503,
                    "Service Unavailable",
                    "no endpoints available for service",
                )
                .await;
        }
        let mut endpoint = match self.port.affinity_endpoint(&config, self.peer.ip()) {
            Some(endpoint) => endpoint,
            None => pick_least_open(&config, &[]).expect("a port with endpoints"),
        };
        let mut tried = Vec::new();
        // The pooled connection was found closed: connect anew to the same endpoint.
        let mut fresh = false;
        loop {
            let addr = endpoint.endpoint.addr;
            let metrics = endpoint.metrics();
            if !fresh {
                metrics.requests.inc();
            }
            let started = Instant::now();
            let in_flight = InFlight::start(&endpoint);
            let pooled = if fresh { None } else { pool_take(addr) };
            let reused = pooled.is_some();
            let mut upstream = match pooled {
                Some(stream) => stream,
                None => match connect(addr).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        drop(in_flight);
                        metrics.connection_errors.inc();
                        metrics
                            .request_duration
                            .observe(started.elapsed().as_secs_f64());
                        tried.push(addr);
                        fresh = false;
                        // The current endpoint set: an endpoint removed since the first try is
                        // not chosen.
                        let next = (tried.len() < MAX_ATTEMPTS)
                            .then(|| {
                                let config = self.port.config();
                                pick_least_open(&config, &tried)
                                    .or_else(|| pick_least_open(&config, &[]))
                            })
                            .flatten();
                        if let Some(next) = next {
                            tracing::debug!(%error, failed = %addr, next = %next.endpoint.addr, "request not sent; trying another endpoint");
                            endpoint = next;
                            continue;
                        }
                        tracing::debug!(%error, endpoint = %addr, "request not sent");
                        if complete {
                            // The request, still held for a resend after a stale pooled
                            // connection or never sent at all.
                            self.input.consume(request.len + prefix);
                            self.held = 0;
                        }
                        return self
                            .refuse(&request, complete, 502, "Bad Gateway", "endpoint failed")
                            .await;
                    }
                },
            };
            let sent = self
                .exchange(
                    &request,
                    &mut body,
                    prefix,
                    prefix_data,
                    &mut upstream,
                    &endpoint,
                    started,
                    &config,
                )
                .await;
            drop(in_flight);
            let failure = match sent {
                Ok((next, reusable)) => {
                    if reusable {
                        pool_put(addr, upstream);
                    }
                    return next;
                }
                Err(failure) => failure,
            };
            if matches!(failure, Failure::NoResponse) && reused && self.held > 0 {
                tracing::debug!(endpoint = %addr, "pooled connection was closed; sending again on a new one");
                fresh = true;
                continue;
            }
            self.input.consume(std::mem::take(&mut self.held));
            match failure {
                Failure::Client => return Next::Gone,
                Failure::Midway => {
                    metrics.connection_errors.inc();
                    return Next::Close;
                }
                Failure::NoResponse | Failure::BadResponse => {
                    metrics.connection_errors.inc();
                    metrics
                        .request_duration
                        .observe(started.elapsed().as_secs_f64());
                    tracing::debug!(endpoint = %addr, "request to endpoint failed");
                    return self
                        .refuse(
                            &request,
                            body.is_done(),
                            502,
                            "Bad Gateway",
                            "endpoint failed",
                        )
                        .await;
                }
            }
        }
    }

    /// One try on one upstream connection. On success: what becomes of the client connection, and
    /// whether the upstream connection can go back to the pool.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &mut self,
        request: &RequestHead,
        body: &mut BodyState,
        prefix: usize,
        prefix_data: u64,
        upstream: &mut TcpStream,
        endpoint: &EndpointState,
        started: Instant,
        config: &PortConfig,
    ) -> Result<(Next, bool), Failure> {
        let metrics = endpoint.metrics();
        self.output.clear();
        // The head and what is here of the body, in one write.
        let sent = {
            let input = self.input.bytes();
            if request.rewritten {
                let mut both =
                    Buf::chain(&self.head[..], &input[request.len..request.len + prefix]);
                upstream.write_all_buf(&mut both).await
            } else {
                upstream.write_all(&input[..request.len + prefix]).await
            }
        };
        if body.is_done() {
            // Kept until the response arrives, so that it can be sent again.
            self.held = request.len + prefix;
        } else {
            self.input.consume(request.len + prefix);
            count(&metrics.bytes_in, prefix_data);
        }
        if sent.is_err() {
            return Err(Failure::NoResponse);
        }

        // The client may wait for a 100 before it sends the body; the endpoint may answer at
        // once instead. Whichever side speaks first is followed.
        let mut early = None;
        if request.expect_continue && !body.is_done() && self.input.is_empty() {
            let upstream_first = tokio::select! {
                biased;
                _ = upstream.readable() => true,
                _ = self.client.readable() => false,
            };
            if upstream_first {
                loop {
                    let response = self.read_response(upstream, request, true).await?;
                    self.release_held(metrics, prefix_data);
                    if response.status == 100 {
                        self.relay_interim(&response, request).await?;
                        break;
                    }
                    if (102..200).contains(&response.status) {
                        self.relay_interim(&response, request).await?;
                        continue;
                    }
                    // A final answer without the body: the client may still send it, so both
                    // connections close after this response.
                    early = Some(response);
                    break;
                }
            }
        }
        if early.is_none() && !body.is_done() {
            pump(
                body,
                &mut self.input,
                &mut self.client,
                upstream,
                &metrics.bytes_in,
            )
            .await
            .map_err(|error| match error {
                PumpError::Write => Failure::NoResponse,
                PumpError::Read | PumpError::Malformed => Failure::Client,
            })?;
        }
        let response = match early {
            Some(response) => response,
            None => loop {
                let response = self.read_response(upstream, request, false).await?;
                self.release_held(metrics, prefix_data);
                if (100..200).contains(&response.status) && response.status != 101 {
                    self.relay_interim(&response, request).await?;
                    continue;
                }
                break response;
            },
        };
        metrics
            .request_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.responses(response.status).inc();
        self.port
            .pin(config, self.peer.ip(), endpoint.endpoint.addr);

        if response.status == 101 {
            if !request.upgrade {
                return Err(Failure::BadResponse);
            }
            self.splice(upstream, &response, endpoint).await;
            return Ok((Next::Gone, false));
        }

        // The head and what is here of the body, in one write.
        let mut response_body = BodyState::new(response.framing);
        let (used, data) = response_body
            .advance(&self.output.bytes()[response.len..])
            .map_err(|_| Failure::BadResponse)?;
        let written = {
            let output = self.output.bytes();
            if response.rewritten {
                let mut both = Buf::chain(
                    &self.scratch[..],
                    &output[response.len..response.len + used],
                );
                self.client.write_all_buf(&mut both).await
            } else {
                self.client.write_all(&output[..response.len + used]).await
            }
        };
        written.map_err(|_| Failure::Client)?;
        count(&metrics.bytes_out, data);
        self.output.consume(response.len + used);
        pump(
            &mut response_body,
            &mut self.output,
            upstream,
            &mut self.client,
            &metrics.bytes_out,
        )
        .await
        .map_err(|error| match error {
            PumpError::Write => Failure::Client,
            PumpError::Read | PumpError::Malformed => Failure::Midway,
        })?;
        let body_unsent = !body.is_done();
        let reusable = response.reusable && !body_unsent && self.output.is_empty();
        let next = if response.client_close || body_unsent {
            Next::Close
        } else {
            Next::KeepAlive
        };
        Ok((next, reusable))
    }

    /// A response has begun: the request will not be sent again, so its bytes can go.
    fn release_held(&mut self, metrics: &crate::runtime::EndpointMetrics, prefix_data: u64) {
        if self.held > 0 {
            self.input.consume(std::mem::take(&mut self.held));
            count(&metrics.bytes_in, prefix_data);
        }
    }

    /// Reads a response head from the endpoint into `output`.
    async fn read_response(
        &mut self,
        upstream: &mut TcpStream,
        request: &RequestHead,
        force_close: bool,
    ) -> Result<ResponseHead, Failure> {
        loop {
            if !self.output.is_empty() {
                match parse_response(self.output.bytes(), request, force_close, &mut self.scratch) {
                    Ok(Some(response)) => return Ok(response),
                    Ok(None) => {}
                    Err(()) => return Err(Failure::BadResponse),
                }
            }
            match self.output.fill(upstream).await {
                Ok(1..) => {}
                _ if self.output.is_empty() => return Err(Failure::NoResponse),
                _ => return Err(Failure::BadResponse),
            }
        }
    }

    /// Passes an interim (1xx) response on to an HTTP/1.1 client.
    async fn relay_interim(
        &mut self,
        response: &ResponseHead,
        request: &RequestHead,
    ) -> Result<(), Failure> {
        // An HTTP/1.0 client does not know 1xx responses.
        if !request.http10 {
            self.client
                .write_all(&self.output.bytes()[..response.len])
                .await
                .map_err(|_| Failure::Client)?;
        }
        self.output.consume(response.len);
        Ok(())
    }

    /// After a 101: both connections carry raw bytes until either closes.
    async fn splice(
        &mut self,
        upstream: &mut TcpStream,
        response: &ResponseHead,
        endpoint: &EndpointState,
    ) {
        let metrics = endpoint.metrics();
        metrics.connections.inc();
        metrics.open_connections.inc();
        // The 101 and whatever the endpoint sent after it; whatever the client sent after its
        // request.
        let early_out = (self.output.len() - response.len) as u64;
        let early_in = self.input.len() as u64;
        let mut started = self.client.write_all(self.output.bytes()).await.is_ok();
        if started && early_in > 0 {
            started = upstream.write_all(self.input.bytes()).await.is_ok();
        }
        self.output.clear();
        self.input.clear();
        // copy_bidirectional has buffers of its own.
        self.output.release();
        self.input.release();
        metrics.bytes_out.inc_by(early_out);
        metrics.bytes_in.inc_by(early_in);
        if started {
            match tokio::io::copy_bidirectional(&mut self.client, upstream).await {
                Ok((sent, received)) => {
                    metrics.bytes_in.inc_by(sent);
                    metrics.bytes_out.inc_by(received);
                }
                Err(error) => {
                    tracing::debug!(%error, endpoint = %endpoint.endpoint.addr, "upgraded connection ended")
                }
            }
        }
        metrics.open_connections.dec();
    }
}

/// A client connection whose first bytes were already read: they are read again first.
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> (Result<Option<RequestHead>, BadRequest>, String) {
        let mut out = Vec::new();
        let parsed = parse_request(text.as_bytes(), &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    fn head(text: &str) -> RequestHead {
        request(text).0.unwrap().unwrap()
    }

    fn response(text: &str, request_text: &str) -> (Result<Option<ResponseHead>, ()>, String) {
        let mut out = Vec::new();
        let parsed = parse_response(text.as_bytes(), &head(request_text), false, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    const GET: &str = "GET / HTTP/1.1\r\nhost: a\r\n\r\n";

    #[test]
    fn chunked_body_end_is_found_however_the_bytes_arrive() {
        let body = b"5\r\nhello\r\n6;name=value\r\n world\r\nA \r\n0123456789\r\n0\r\nx-trailer: 1\r\nx-other: 2\r\n\r\nNEXT";
        let end = body.len() - 4;
        // All at once: the end is found and the bytes after it are left alone.
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.advance(body), Ok((end, 21)));
        assert!(decoder.is_done());
        // One byte at a time, and in every two-piece split.
        let mut decoder = ChunkedDecoder::default();
        let (mut used, mut data) = (0, 0);
        for byte in body.chunks(1) {
            let (u, d) = decoder.advance(byte).unwrap();
            used += u;
            data += d;
        }
        assert_eq!((used, data), (end, 21));
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::default();
            let (u1, d1) = decoder.advance(&body[..split]).unwrap();
            assert_eq!(u1, split.min(end), "split at {split}");
            assert_eq!(decoder.is_done(), split >= end);
            let (u2, d2) = decoder.advance(&body[split..]).unwrap();
            assert_eq!((u1 + u2, d1 + d2), (end, 21), "split at {split}");
            assert!(decoder.is_done());
        }
        // An empty body: just the last chunk.
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.advance(b"0\r\n\r\n"), Ok((5, 0)));
        assert!(decoder.is_done());
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"10000000000000000\r\n",
            b"5;ext\n",
        ] {
            let mut decoder = ChunkedDecoder::default();
            assert_eq!(
                decoder.advance(bad),
                Err(MalformedBody),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn body_state_counts_length_and_stops_at_the_end() {
        let mut body = BodyState::new(Framing::Length(5));
        assert_eq!(body.advance(b"abc"), Ok((3, 3)));
        assert!(!body.is_done());
        assert_eq!(body.advance(b"defgh"), Ok((2, 2)));
        assert!(body.is_done());
        assert!(BodyState::new(Framing::Empty).is_done());
        let mut until_close = BodyState::new(Framing::UntilClose);
        assert_eq!(until_close.advance(b"anything"), Ok((8, 8)));
        assert!(!until_close.is_done());
    }

    #[test]
    fn request_framing_and_connection_semantics() {
        let get = head(GET);
        assert_eq!(get.len, GET.len());
        assert_eq!(get.framing, Framing::Empty);
        assert!(get.keep_alive && !get.rewritten && !get.upgrade && !get.head_method);
        assert_eq!(
            head("POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n").framing,
            Framing::Length(12)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        assert!(head("HEAD / HTTP/1.1\r\n\r\n").head_method);
        assert!(head("GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n").expect_continue);
        // Keep-alive: HTTP/1.1 unless close; HTTP/1.0 only when asked.
        assert!(!head("GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").keep_alive);
        // Incomplete heads wait for more bytes.
        assert!(matches!(
            request("GET / HTTP/1.1\r\nhost: a\r\n").0,
            Ok(None)
        ));
    }

    #[test]
    fn malformed_requests_are_refused() {
        for (text, why) in [
            ("this is not http\r\n\r\n", BadRequest::Malformed),
            (
                "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
                BadRequest::Malformed,
            ),
            (
                "POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
                BadRequest::Malformed,
            ),
            (
                "POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
                BadRequest::Malformed,
            ),
            (
                "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
                BadRequest::Malformed,
            ),
            ("CONNECT a:443 HTTP/1.1\r\n\r\n", BadRequest::Method),
        ] {
            assert_eq!(request(text).0.unwrap_err(), why, "{text:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        assert_eq!(
            request(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .0
                .unwrap_err(),
            BadRequest::TooLarge
        );
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_from_requests() {
        let (parsed, out) = request(
            "GET http://web.default/a?b=1 HTTP/1.1\r\nhost: web\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\nkeep-alive: 5\r\nte: trailers\r\nx-kept: yes\r\n\r\n",
        );
        let parsed = parsed.unwrap().unwrap();
        assert!(parsed.rewritten && parsed.keep_alive);
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nhost: web\r\nte: trailers\r\nx-kept: yes\r\n\r\n"
        );
        // Framing headers stay even when Connection names them.
        let (_, out) = request(
            "POST / HTTP/1.1\r\nconnection: content-length\r\ncontent-length: 2\r\nte: gzip\r\n\r\n",
        );
        assert_eq!(out, "POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n");
    }

    #[test]
    fn upgrade_requests_keep_their_upgrade_header() {
        let (parsed, out) = request(
            "GET /chat HTTP/1.1\r\nhost: ws\r\nconnection: keep-alive, Upgrade\r\nupgrade: websocket\r\n\r\n",
        );
        assert!(parsed.unwrap().unwrap().upgrade);
        assert_eq!(
            out,
            "GET /chat HTTP/1.1\r\nhost: ws\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        // An Upgrade header without `Connection: upgrade` is not an upgrade, and is stripped.
        let (parsed, out) = request("GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n");
        assert!(!parsed.unwrap().unwrap().upgrade);
        assert_eq!(out, "GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn response_framing() {
        let framing =
            |text: &str, request: &str| response(text, request).0.unwrap().unwrap().framing;
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", GET),
            Framing::Length(5)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                "HEAD / HTTP/1.1\r\n\r\n"
            ),
            Framing::Empty
        );
        for status in [
            "204 No Content",
            "304 Not Modified",
            "100 Continue",
            "101 Switching Protocols",
        ] {
            assert_eq!(
                framing(
                    &format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n"),
                    GET
                ),
                Framing::Empty,
                "{status}"
            );
        }
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", GET),
            Framing::Chunked
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", GET), Framing::UntilClose);
        assert!(response(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            GET
        )
        .0
        .is_err());
        assert!(response("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n", GET)
            .0
            .unwrap()
            .is_none());
    }

    #[test]
    fn response_heads_pass_unchanged_unless_the_connection_changes() {
        let (parsed, _) = response("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", GET);
        let parsed = parsed.unwrap().unwrap();
        assert!(parsed.reusable && !parsed.client_close && !parsed.rewritten);

        // The endpoint closes: not pooled, and the client connection stays open.
        let (parsed, out) = response(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\n",
            GET,
        );
        let parsed = parsed.unwrap().unwrap();
        assert!(!parsed.reusable && !parsed.client_close && parsed.rewritten);
        assert_eq!(out, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");

        // The client asked to close: the response says so.
        let (parsed, out) = response(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
        );
        let parsed = parsed.unwrap().unwrap();
        assert!(parsed.reusable && parsed.client_close);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );

        // No length: the body ends at the close, for both connections.
        let (parsed, out) = response("HTTP/1.1 200 OK\r\nx: y\r\n\r\n", GET);
        let parsed = parsed.unwrap().unwrap();
        assert!(!parsed.reusable && parsed.client_close);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nx: y\r\nconnection: close\r\n\r\n");

        // An HTTP/1.0 endpoint keeps the connection only when it says so.
        let (parsed, _) = response("HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n", GET);
        assert!(!parsed.unwrap().unwrap().reusable);
        let (parsed, _) = response(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\n",
            GET,
        );
        assert!(parsed.unwrap().unwrap().reusable);

        // An HTTP/1.0 client that asked for keep-alive is told it got it.
        let (_, out) = response(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            "GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn buffers_hold_memory_only_while_they_hold_bytes() {
        let mut buffer = Buffer::new();
        assert!(buffer.data.is_empty());
        let mut from: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(buffer.fill(&mut from).await.unwrap(), 18);
        assert_eq!(buffer.data.len(), BUFFER);
        let memory = buffer.data.as_ptr();
        // Bytes held: the memory stays.
        buffer.release();
        assert_eq!(buffer.bytes(), b"GET / HTTP/1.1\r\n\r\n");
        buffer.consume(18);
        buffer.release();
        assert!(buffer.data.is_empty());
        // The next buffer of this thread reuses it.
        let mut other = Buffer::new();
        let mut from: &[u8] = b"x";
        other.fill(&mut from).await.unwrap();
        assert_eq!(other.data.as_ptr(), memory);
        // A head that does not fit grows the buffer, up to MAX_HEAD.
        let big = vec![b'a'; MAX_HEAD + 1];
        let mut from: &[u8] = &big;
        while other.fill(&mut from).await.is_ok() {}
        assert_eq!(other.len(), MAX_HEAD);
    }

    #[test]
    fn origin_form_of_absolute_targets() {
        assert_eq!(origin_form("/a"), None);
        assert_eq!(origin_form("*"), None);
        assert_eq!(origin_form("http://host"), Some("/"));
        assert_eq!(origin_form("HTTP://host:80/x?y"), Some("/x?y"));
        assert_eq!(origin_form("https://h/"), Some("/"));
    }
}
