//! drover's cluster DNS: the records CoreDNS's `kubernetes` plugin would
//! serve for Services, their endpoints and pods ([`records`]), a hickory-dns
//! server that answers them and forwards the rest ([`server`]), and each
//! pod's `/etc/resolv.conf` as the kubelet composes it ([`resolv`]).

pub mod records;
pub mod resolv;
pub mod server;

pub use hickory_proto::rr::RecordType;
pub use records::{build_records, Lookup, Records, TTL_SECONDS};
pub use resolv::{resolv_conf, upstream_servers};
pub use server::{DnsServer, SharedRecords};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the DNS server to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
