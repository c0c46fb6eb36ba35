//! The DNS server on loopback, asked over the wire: raw queries (to see
//! flags, sections and truncation) and hickory's resolver (a real client,
//! which retries a truncated answer over TCP).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dns::{build_records, DnsServer, Records};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANY_ENDPOINTS: usize = 100;

fn cluster(domain: &str) -> Records {
    let services: Vec<Service> = [
        json!({"metadata": {"name": "web", "namespace": "shop"},
               "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}}),
        json!({"metadata": {"name": "db", "namespace": "shop"},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"metadata": {"name": "many", "namespace": "shop"}, "spec": {"clusterIP": "None"}}),
        json!({"metadata": {"name": "ext", "namespace": "shop"},
               "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        json!({"metadata": {"name": "away", "namespace": "shop"},
               "spec": {"type": "ExternalName", "externalName": "web.shop.svc.upstream.test"}}),
        json!({"metadata": {"name": "alias", "namespace": "shop"},
               "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let many: Vec<serde_json::Value> = (0..MANY_ENDPOINTS)
        .map(|i| json!({"addresses": [format!("10.42.{}.{}", i / 200, i % 200 + 1)]}))
        .collect();
    let slices: Vec<EndpointSlice> = [
        json!({"metadata": {"name": "db-1", "namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "db"}},
               "addressType": "IPv4",
               "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.42.0.5"], "hostname": "db-0"},
                             {"addresses": ["10.42.0.6"], "hostname": "db-1"},
                             {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]}),
        json!({"metadata": {"name": "many-1", "namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "many"}},
               "addressType": "IPv4", "endpoints": many}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    build_records(&services, &slices, domain)
}

async fn start(domain: &str, upstream: Vec<SocketAddr>) -> DnsServer {
    let records = Arc::new(RwLock::new(Arc::new(cluster(domain))));
    DnsServer::start("127.0.0.1:0".parse().unwrap(), records, upstream)
        .await
        .expect("starting the DNS server")
}

fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.edns = Some(e);
    }
    message.to_vec().unwrap()
}

async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(&query_bytes(name, qtype, false)).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer from {server} for {name} {qtype}"))
        .unwrap();
    assert!(
        n <= 512,
        "a UDP answer without EDNS must fit 512 bytes: {n}"
    );
    Message::from_vec(&buf[..n]).unwrap()
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let query = query_bytes(name, qtype, true);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.unwrap();
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no TCP answer from {server} for {name} {qtype}"));
    Message::from_vec(&buf).unwrap()
}

/// The answers' data, sorted.
fn answers(message: &Message) -> Vec<String> {
    let mut data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    data
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let server = start("cluster.local", Vec::new()).await;
    let addr = server.local_addr();
    for message in [
        udp(addr, "web.shop.svc.cluster.local.", RecordType::A).await,
        tcp(addr, "Web.Shop.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(
            message.metadata.authoritative,
            "AA must be set: {message:?}"
        );
        assert_eq!(message.metadata.id, 0x4242);
        assert_eq!(answers(&message), ["10.43.0.20"]);
        assert_eq!(message.answers[0].ttl, 5);
    }

    let headless = udp(addr, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&headless), ["10.42.0.5", "10.42.0.6"]);

    let srv = udp(addr, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        answers(&srv),
        [
            "0 50 5432 db-0.db.shop.svc.cluster.local.",
            "0 50 5432 db-1.db.shop.svc.cluster.local."
        ]
    );
    assert_eq!(srv.additionals.len(), 2, "SRV targets' addresses: {srv:?}");

    let nx = udp(addr, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(
        matches!(nx.authorities.first().map(|r| &r.data), Some(RData::SOA(_))),
        "an SOA in authority: {nx:?}"
    );

    let nodata = udp(addr, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities.len(), 1);

    let pod = udp(addr, "10-42-3-4.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&pod), ["10.42.3.4"]);

    let cname = udp(addr, "ext.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(cname.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(answers(&cname), ["example.com."]);
}

#[tokio::test]
async fn records_swapped_by_the_caller_are_served() {
    let records = Arc::new(RwLock::new(Arc::new(build_records(
        &[],
        &[],
        "cluster.local",
    ))));
    let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), records.clone(), Vec::new())
        .await
        .unwrap();
    let before = udp(
        server.local_addr(),
        "web.shop.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    *records.write().unwrap() = Arc::new(cluster("cluster.local"));
    let after = udp(
        server.local_addr(),
        "web.shop.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(answers(&after), ["10.43.0.20"]);
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let server = start("cluster.local", Vec::new()).await;
    let addr = server.local_addr();
    let name = "many.shop.svc.cluster.local.";
    let truncated = udp(addr, name, RecordType::A).await;
    assert!(
        truncated.metadata.truncation,
        "TC must be set: {:?}",
        truncated.metadata
    );
    assert!(truncated.answers.len() < MANY_ENDPOINTS);
    let whole = tcp(addr, name, RecordType::A).await;
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), MANY_ENDPOINTS);

    // A real resolver retries the truncated answer over TCP on its own.
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut name_server.connections {
        connection.port = addr.port();
    }
    let resolver = hickory_resolver::TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    )
    .build()
    .unwrap();
    let lookup = resolver.lookup(name, RecordType::A).await.unwrap();
    assert_eq!(lookup.answers().len(), MANY_ENDPOINTS);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream() {
    // The upstream: another drover DNS server, authoritative for its own
    // domain.
    let upstream = start("upstream.test", Vec::new()).await;
    // A port where nothing listens: skipped for the next upstream.
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let server = start("cluster.local", vec![dead, upstream.local_addr()]).await;
    let addr = server.local_addr();
    for message in [
        udp(addr, "web.shop.svc.upstream.test.", RecordType::A).await,
        tcp(addr, "web.shop.svc.upstream.test.", RecordType::A).await,
    ] {
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert_eq!(message.metadata.id, 0x4242);
        assert_eq!(answers(&message), ["10.43.0.20"]);
    }
    // The upstream's NXDOMAIN comes back as it is.
    let nx = udp(addr, "nope.upstream.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    // A large upstream answer (asked with EDNS for 1232 bytes): the
    // upstream truncates it over UDP, so it is fetched again over TCP.
    let many = tcp(addr, "many.shop.svc.upstream.test.", RecordType::A).await;
    assert_eq!(many.answers.len(), MANY_ENDPOINTS);
    // An ExternalName's CNAME comes with its target's addresses, from the
    // upstream or from the cluster's own records.
    let away = udp(addr, "away.shop.svc.cluster.local.", RecordType::A).await;
    let chain: Vec<String> = away.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(chain, ["web.shop.svc.upstream.test.", "10.43.0.20"]);
    let alias = udp(addr, "alias.shop.svc.cluster.local.", RecordType::A).await;
    let chain: Vec<String> = alias.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(chain, ["web.shop.svc.cluster.local.", "10.43.0.20"]);
    // Cluster names are still ours.
    let ours = udp(addr, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert!(ours.metadata.authoritative);
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() {
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    // One that receives but never answers (its socket stays open).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = start("cluster.local", vec![dead, silent.local_addr().unwrap()]).await;
    let message = udp(server.local_addr(), "example.com.", RecordType::A).await;
    assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
    assert!(message.answers.is_empty());
    let none = start("cluster.local", Vec::new()).await;
    let message = tcp(none.local_addr(), "example.com.", RecordType::A).await;
    assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn binding_a_taken_address_is_an_error() {
    let server = start("cluster.local", Vec::new()).await;
    let records = Arc::new(RwLock::new(Arc::new(cluster("cluster.local"))));
    let taken = DnsServer::start(server.local_addr(), records, Vec::new()).await;
    let message = taken.err().expect("a second bind must fail").to_string();
    assert!(
        message.contains(&server.local_addr().to_string()),
        "{message}"
    );
}
