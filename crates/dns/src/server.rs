//! The DNS server: hickory-server's UDP and TCP listeners with a handler
//! that answers cluster names from the current [`Records`] (authoritative)
//! and forwards every other name, as it came, to the upstream servers.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::records::{Lookup, Records};
use crate::Error;

/// How long one upstream server has to answer a forwarded query before
/// the next one is asked (CoreDNS's `forward` gives up on a server after a
/// few seconds too; a client's own timeout is 5 s by default).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many CNAMEs are followed (a loop ends there).
const MAX_CNAME_HOPS: usize = 8;
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers queued for one TCP connection (hickory handles a connection's
/// queries one at a time, so a few suffice).
const TCP_RESPONSE_QUEUE: usize = 32;
/// The UDP payload size drover's answers advertise with EDNS (the DNS
/// flag day's size: no IP fragmentation).
const EDNS_PAYLOAD_BYTES: u16 = 1232;

/// The current records, swapped whole by the caller on every change
/// (readers clone the inner `Arc` and never hold the lock across I/O).
pub type SharedRecords = Arc<RwLock<Arc<Records>>>;

/// A running DNS server; dropping it stops serving.
pub struct DnsServer {
    local_addr: SocketAddr,
    // Holds the listener tasks: hickory's server aborts them when dropped.
    _server: Server<Handler>,
}

impl DnsServer {
    /// Serves UDP and TCP on `addr` (port 0 picks one, the same for both:
    /// see [`DnsServer::local_addr`]). Names outside the cluster domain go
    /// to `upstream`, in order. Returns once both sockets are bound.
    pub async fn start(
        addr: SocketAddr,
        records: SharedRecords,
        upstream: Vec<SocketAddr>,
    ) -> Result<DnsServer, Error> {
        let (udp, tcp, local_addr) = bind(addr).await?;
        let mut server = Server::new(Handler { records, upstream });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_QUEUE);
        Ok(DnsServer {
            local_addr,
            _server: server,
        })
    }

    /// The address the server answers on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the
/// TCP listener picks the port and UDP takes the same one; a port whose
/// UDP side is taken is given up for another (a few times).
async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr), Error> {
    let error = |addr, source| Error::Bind { addr, source };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| error(addr, e))?;
        let local_addr = tcp.local_addr().map_err(|e| error(addr, e))?;
        match tokio::net::UdpSocket::bind(local_addr).await {
            Ok(udp) => return Ok((udp, tcp, local_addr)),
            Err(e)
                if addr.port() == 0
                    && attempts < 20
                    && e.kind() == std::io::ErrorKind::AddrInUse =>
            {
                continue
            }
            Err(e) => return Err(error(local_addr, e)),
        }
    }
}

struct Handler {
    records: SharedRecords,
    upstream: Vec<SocketAddr>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD_BYTES);
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let query = match request.request_info() {
            Ok(info) => info.query.original().clone(),
            Err(_) => {
                let message = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return send(&mut response, message, request).await;
            }
        };
        let records = self
            .records
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()));
        let lookup = records.lookup(&query.name().to_ascii(), query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let soa = [records.soa().clone()];
        let none: [Record; 0] = [];
        match lookup {
            Lookup::Answer {
                mut answers,
                additionals,
            } => {
                if query.query_type() != RecordType::CNAME {
                    self.chase_cname(&records, &mut answers, query.query_type())
                        .await;
                }
                let message = builder.build(metadata, &answers, &none, &none, &additionals);
                send(&mut response, message, request).await
            }
            Lookup::NoData => {
                let message = builder.build(metadata, &none, &none, &soa, &none);
                send(&mut response, message, request).await
            }
            Lookup::NxDomain => {
                metadata.response_code = ResponseCode::NXDomain;
                let message = builder.build(metadata, &none, &none, &soa, &none);
                send(&mut response, message, request).await
            }
            Lookup::NotAuthoritative => match forward(&self.upstream, request.as_slice()).await {
                Some(upstream) => {
                    let mut metadata = upstream.metadata;
                    metadata.id = request.metadata.id;
                    // What the client gets is what came; a truncated UDP
                    // answer was already retried over TCP.
                    metadata.truncation = false;
                    let message = builder.build(
                        metadata,
                        &upstream.answers,
                        &upstream.authorities,
                        &none,
                        &upstream.additionals,
                    );
                    send(&mut response, message, request).await
                }
                None => {
                    let message = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                    send(&mut response, message, request).await
                }
            },
        }
    }
}

impl Handler {
    /// Follows a CNAME answer (an ExternalName Service) to the target's
    /// records, as CoreDNS does: stub resolvers (glibc, musl) expect the
    /// whole chain from their server and do not chase it themselves.
    async fn chase_cname(&self, records: &Records, answers: &mut Vec<Record>, qtype: RecordType) {
        for _ in 0..MAX_CNAME_HOPS {
            let Some(RData::CNAME(CNAME(target))) = answers.last().map(|r| &r.data) else {
                return;
            };
            let target = target.clone();
            match records.lookup(&target.to_ascii(), qtype) {
                Lookup::Answer { answers: more, .. } => answers.extend(more),
                Lookup::NotAuthoritative => {
                    let mut message = Message::new(
                        rand_id(),
                        hickory_proto::op::MessageType::Query,
                        hickory_proto::op::OpCode::Query,
                    );
                    message.metadata.recursion_desired = true;
                    message.add_query(Query::query(target, qtype));
                    let Ok(bytes) = message.to_vec() else {
                        return;
                    };
                    if let Some(upstream) = forward(&self.upstream, &bytes).await {
                        answers.extend(upstream.answers);
                    }
                    return;
                }
                _ => return,
            }
        }
    }
}

/// A query ID for a query of our own (chasing a CNAME): unpredictable
/// enough that an off-path answer is unlikely to match.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u16
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("dns: answering {}: {e}", request.src());
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            })
        }
    }
}

/// Sends `query` (the client's bytes) to each upstream in turn until one
/// answers: over UDP, again over TCP when the answer is truncated.
async fn forward(upstream: &[SocketAddr], query: &[u8]) -> Option<Message> {
    for server in upstream {
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            let bytes = forward_udp(*server, query).await?;
            let message = Message::from_vec(&bytes).ok()?;
            if !message.metadata.truncation {
                return Some(message);
            }
            let bytes = forward_tcp(*server, query).await?;
            Message::from_vec(&bytes).ok()
        })
        .await;
        match answer {
            Ok(Some(message)) => return Some(message),
            _ => tracing::debug!("dns: upstream {server} did not answer"),
        }
    }
    None
}

async fn forward_udp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Only the answer to this query (same ID) counts.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            return Some(buf[..n].to_vec());
        }
    }
}

async fn forward_tcp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(server).await.ok()?;
    let len = u16::try_from(query.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf)
}
