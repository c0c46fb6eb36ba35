//! The cluster's DNS records as plain data: built from Services and
//! EndpointSlices by [`build_records`], answered by [`Records::lookup`]
//! the way CoreDNS's `kubernetes` plugin answers them (pure; the server
//! only encodes what this says).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// TTL of every record (CoreDNS's `kubernetes` plugin default: records
/// change as pods come and go, so resolvers must not keep them long).
pub const TTL_SECONDS: u32 = 5;

/// The label an EndpointSlice names its Service by.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What a name has, for one query type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// NOERROR with these answers; `additionals` are the addresses of SRV
    /// targets (as CoreDNS adds them, to spare a round trip).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// NOERROR without answers: the name exists, with other types only.
    /// The SOA ([`Records::soa`]) goes in the authority section.
    NoData,
    /// NXDOMAIN: the name is in the cluster domain and does not exist.
    /// The SOA goes in the authority section.
    NxDomain,
    /// Outside the cluster domain: not ours to answer (forward it).
    NotAuthoritative,
}

/// Index of every cluster name, by lowercase name without the final dot.
#[derive(Clone, Debug)]
pub struct Records {
    /// Lowercase, no final dot (`cluster.local`).
    domain: String,
    records: BTreeMap<String, Vec<Record>>,
    /// Names that exist without records of their own (`ns.svc.DOMAIN`,
    /// a Service that has no address yet): NODATA, not NXDOMAIN.
    empty_names: BTreeSet<String>,
    soa: Record,
}

/// `name` as the index keys it: lowercase, without the final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `name` as a fully qualified DNS name (it is always built from valid
/// labels here; an invalid one maps to the root rather than panicking).
fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).unwrap_or_default();
    n.set_fqdn(true);
    n
}

fn address_record(name: &str, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(fqdn(name), TTL_SECONDS, data)
}

/// The label CoreDNS gives an endpoint without a `hostname`: its address
/// with `.` and `:` turned into `-`.
fn ip_label(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The address a pod label `a-b-c-d` (or an IPv6 address with `-` for
/// `:`) stands for.
fn parse_ip_label(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Records {
    /// The SOA of the cluster domain (authority section of NXDOMAIN and
    /// NODATA answers; CoreDNS's names and timers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The cluster domain (lowercase, no final dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn is_cluster_name(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    fn exists(&self, name: &str) -> bool {
        self.records.contains_key(name) || self.empty_names.contains(name)
    }

    /// The answer to `qtype` at `name` (any case, with or without the
    /// final dot).
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Lookup {
        let name = key(name);
        if !self.is_cluster_name(&name) {
            return Lookup::NotAuthoritative;
        }
        if name == self.domain && qtype == RecordType::SOA {
            return Lookup::Answer {
                answers: vec![self.soa.clone()],
                additionals: Vec::new(),
            };
        }
        if let Some(records) = self.records.get(&name) {
            // A CNAME owns its name: every type is answered with it.
            let cname: Vec<Record> = records
                .iter()
                .filter(|r| r.record_type() == RecordType::CNAME)
                .cloned()
                .collect();
            let answers: Vec<Record> = if !cname.is_empty() {
                cname
            } else {
                records
                    .iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .cloned()
                    .collect()
            };
            if answers.is_empty() {
                return Lookup::NoData;
            }
            let additionals = self.additionals(&answers);
            return Lookup::Answer {
                answers,
                additionals,
            };
        }
        if self.exists(&name) {
            return Lookup::NoData;
        }
        self.pod_lookup(&name, qtype)
    }

    /// Addresses of the SRV targets among `answers`.
    fn additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for r in answers {
            if let RData::SRV(srv) = &r.data {
                for target in self
                    .records
                    .get(&key(&srv.target.to_ascii()))
                    .into_iter()
                    .flatten()
                {
                    if matches!(target.record_type(), RecordType::A | RecordType::AAAA)
                        && !out.contains(target)
                    {
                        out.push(target.clone());
                    }
                }
            }
        }
        out
    }

    /// `a-b-c-d.NAMESPACE.pod.DOMAIN` → a.b.c.d, for any namespace and
    /// address (CoreDNS's `pods insecure`, the default): the name is the
    /// answer.
    fn pod_lookup(&self, name: &str, qtype: RecordType) -> Lookup {
        let pod_zone = format!("pod.{}", self.domain);
        let Some(rest) = name.strip_suffix(&format!(".{pod_zone}")) else {
            return if name == pod_zone {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            };
        };
        let labels: Vec<&str> = rest.split('.').collect();
        match labels.as_slice() {
            [_namespace] => Lookup::NoData,
            [ip, _namespace] => match parse_ip_label(ip) {
                None => Lookup::NxDomain,
                Some(ip) => {
                    let matches = match ip {
                        IpAddr::V4(_) => matches!(qtype, RecordType::A | RecordType::ANY),
                        IpAddr::V6(_) => matches!(qtype, RecordType::AAAA | RecordType::ANY),
                    };
                    if matches {
                        Lookup::Answer {
                            answers: vec![address_record(name, ip)],
                            additionals: Vec::new(),
                        }
                    } else {
                        Lookup::NoData
                    }
                }
            },
            _ => Lookup::NxDomain,
        }
    }

    fn add(&mut self, record: Record) {
        let name = key(&record.name.to_ascii());
        self.add_name(&name);
        let list = self.records.entry(name).or_default();
        if !list.contains(&record) {
            list.push(record);
        }
    }

    /// Marks `name` and every ancestor up to the domain as existing.
    fn add_name(&mut self, name: &str) {
        let mut at = key(name);
        while self.is_cluster_name(&at) {
            self.empty_names.insert(at.clone());
            match at.split_once('.') {
                Some((_, parent)) => at = parent.to_string(),
                None => break,
            }
        }
    }
}

/// Indexes the records of `services` and their `slices` under `domain`
/// (`cluster.local`).
pub fn build_records(services: &[Service], slices: &[EndpointSlice], domain: &str) -> Records {
    let domain = key(domain);
    let soa = Record::from_rdata(
        fqdn(&domain),
        TTL_SECONDS,
        RData::SOA(SOA::new(
            fqdn(&format!("ns.dns.{domain}")),
            fqdn(&format!("hostmaster.{domain}")),
            1,
            7200,
            1800,
            86400,
            TTL_SECONDS,
        )),
    );
    let mut records = Records {
        domain: domain.clone(),
        records: BTreeMap::new(),
        empty_names: BTreeSet::new(),
        soa,
    };
    records.add_name(&format!("svc.{domain}"));
    records.add_name(&format!("pod.{domain}"));
    for service in services {
        let (Some(namespace), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let base = key(&format!("{name}.{namespace}.svc.{domain}"));
        records.add_name(&base);
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().filter(|t| !t.is_empty()) {
                records.add(Record::from_rdata(
                    fqdn(&base),
                    TTL_SECONDS,
                    RData::CNAME(CNAME(fqdn(target))),
                ));
            }
            continue;
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        if spec.cluster_ip.as_deref() == Some("None") {
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
            let mut srv: Vec<(String, u16, String)> = Vec::new();
            for slice in slices.iter().filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(name)
            }) {
                for endpoint in &slice.endpoints {
                    // An unset `ready` means ready (the API's rule).
                    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                    if !ready && !publish_not_ready {
                        continue;
                    }
                    for address in &endpoint.addresses {
                        let Ok(ip) = address.parse::<IpAddr>() else {
                            continue;
                        };
                        let host = endpoint
                            .hostname
                            .clone()
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| ip_label(&ip));
                        let host_name = key(&format!("{host}.{base}"));
                        records.add(address_record(&base, ip));
                        records.add(address_record(&host_name, ip));
                        for port in slice.ports.iter().flatten() {
                            let (Some(port_name), Some(number)) = (&port.name, port.port) else {
                                continue;
                            };
                            if port_name.is_empty() {
                                continue;
                            }
                            let protocol = port.protocol.as_deref().unwrap_or("TCP");
                            srv.push((
                                key(&format!("_{port_name}._{protocol}.{base}")),
                                number as u16,
                                host_name.clone(),
                            ));
                        }
                    }
                }
            }
            add_srv(&mut records, srv);
            continue;
        }
        let cluster_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        for ip in cluster_ips {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                records.add(address_record(&base, ip));
            }
        }
        let srv = ports
            .iter()
            .filter_map(|p| {
                let port_name = p.name.as_deref().filter(|n| !n.is_empty())?;
                let protocol = p.protocol.as_deref().unwrap_or("TCP");
                Some((
                    key(&format!("_{port_name}._{protocol}.{base}")),
                    p.port as u16,
                    base.clone(),
                ))
            })
            .collect();
        add_srv(&mut records, srv);
    }
    records
}

/// SRV records `(owner, port, target)`, each owner's share of weight split
/// evenly among its records (as CoreDNS: 100 / count).
fn add_srv(records: &mut Records, srv: Vec<(String, u16, String)>) {
    let mut by_owner: BTreeMap<String, Vec<(u16, String)>> = BTreeMap::new();
    for (owner, port, target) in srv {
        let list = by_owner.entry(owner).or_default();
        if !list.contains(&(port, target.clone())) {
            list.push((port, target));
        }
    }
    for (owner, targets) in by_owner {
        let weight = (100 / targets.len()).max(1) as u16;
        for (port, target) in targets {
            records.add(Record::from_rdata(
                fqdn(&owner),
                TTL_SECONDS,
                RData::SRV(SRV::new(0, weight, port, fqdn(&target))),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn cluster() -> Records {
        let services = vec![
            service(json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20", "fd00::20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"port": 81}]}
            })),
            service(json!({
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"clusterIP": "None",
                         "ports": [{"name": "pg", "port": 5432}]}
            })),
            service(json!({
                "metadata": {"name": "eager", "namespace": "shop"},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}
            })),
            service(json!({
                "metadata": {"name": "ext", "namespace": "shop"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}
            })),
            service(json!({
                "metadata": {"name": "pending", "namespace": "shop"},
                "spec": {"clusterIP": ""}
            })),
        ];
        let slices = vec![
            slice(json!({
                "metadata": {"name": "db-1", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.42.0.6"]},
                    {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}
                ]
            })),
            slice(json!({
                "metadata": {"name": "eager-1", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "eager"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.42.0.9"], "conditions": {"ready": false}}]
            })),
            // Same Service name, another namespace: not db's.
            slice(json!({
                "metadata": {"name": "db-x", "namespace": "other",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.42.9.9"]}]
            })),
        ];
        build_records(&services, &slices, "cluster.local")
    }

    /// The answer as text: `NXDOMAIN`, `NODATA`, `NOTAUTH`, or the
    /// answers' data sorted and joined by spaces.
    fn check(name: &str, qtype: RecordType, expected: &str) {
        let got = match cluster().lookup(name, qtype) {
            Lookup::NxDomain => "NXDOMAIN".to_string(),
            Lookup::NoData => "NODATA".to_string(),
            Lookup::NotAuthoritative => "NOTAUTH".to_string(),
            Lookup::Answer { answers, .. } => {
                for a in &answers {
                    assert_eq!(a.ttl, TTL_SECONDS, "ttl of {a}");
                }
                let mut data: Vec<String> = answers.iter().map(|a| a.data.to_string()).collect();
                data.sort();
                data.join(" ")
            }
        };
        assert_eq!(got, expected, "{name} {qtype}");
    }

    #[test]
    fn cluster_ip_services() {
        check("web.shop.svc.cluster.local", RecordType::A, "10.43.0.20");
        check("web.shop.svc.cluster.local.", RecordType::AAAA, "fd00::20");
        check("WEB.Shop.SVC.cluster.LOCAL", RecordType::A, "10.43.0.20");
        check("web.shop.svc.cluster.local", RecordType::TXT, "NODATA");
        check("nope.shop.svc.cluster.local", RecordType::A, "NXDOMAIN");
        check("web.other.svc.cluster.local", RecordType::A, "NXDOMAIN");
        check("pending.shop.svc.cluster.local", RecordType::A, "NODATA");
    }

    #[test]
    fn srv_for_named_ports() {
        check(
            "_http._tcp.web.shop.svc.cluster.local",
            RecordType::SRV,
            "0 100 80 web.shop.svc.cluster.local.",
        );
        check(
            "_http._udp.web.shop.svc.cluster.local",
            RecordType::SRV,
            "NXDOMAIN",
        );
        check("_tcp.web.shop.svc.cluster.local", RecordType::SRV, "NODATA");
        check(
            "_pg._tcp.db.shop.svc.cluster.local",
            RecordType::SRV,
            "0 50 5432 10-42-0-6.db.shop.svc.cluster.local. 0 50 5432 db-0.db.shop.svc.cluster.local.",
        );
    }

    #[test]
    fn srv_answers_carry_target_addresses() {
        let Lookup::Answer { additionals, .. } =
            cluster().lookup("_pg._tcp.db.shop.svc.cluster.local", RecordType::SRV)
        else {
            panic!("no SRV answer");
        };
        let mut data: Vec<String> = additionals
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        data.sort();
        assert_eq!(
            data,
            [
                "10-42-0-6.db.shop.svc.cluster.local. 10.42.0.6",
                "db-0.db.shop.svc.cluster.local. 10.42.0.5"
            ]
        );
    }

    #[test]
    fn headless_services_answer_ready_endpoints() {
        check(
            "db.shop.svc.cluster.local",
            RecordType::A,
            "10.42.0.5 10.42.0.6",
        );
        check("db-0.db.shop.svc.cluster.local", RecordType::A, "10.42.0.5");
        check(
            "10-42-0-6.db.shop.svc.cluster.local",
            RecordType::A,
            "10.42.0.6",
        );
        check(
            "10-42-0-7.db.shop.svc.cluster.local",
            RecordType::A,
            "NXDOMAIN",
        );
        check("eager.shop.svc.cluster.local", RecordType::A, "10.42.0.9");
    }

    #[test]
    fn external_name_is_a_cname() {
        check("ext.shop.svc.cluster.local", RecordType::A, "example.com.");
        check(
            "ext.shop.svc.cluster.local",
            RecordType::CNAME,
            "example.com.",
        );
    }

    #[test]
    fn pod_records() {
        check(
            "10-42-0-5.shop.pod.cluster.local",
            RecordType::A,
            "10.42.0.5",
        );
        check(
            "10-42-0-5.any.pod.cluster.local",
            RecordType::A,
            "10.42.0.5",
        );
        check(
            "10-42-0-5.shop.pod.cluster.local",
            RecordType::AAAA,
            "NODATA",
        );
        check(
            "fd00--5.shop.pod.cluster.local",
            RecordType::AAAA,
            "fd00::5",
        );
        check(
            "not-an-ip.shop.pod.cluster.local",
            RecordType::A,
            "NXDOMAIN",
        );
        check(
            "a.10-42-0-5.shop.pod.cluster.local",
            RecordType::A,
            "NXDOMAIN",
        );
        check("shop.pod.cluster.local", RecordType::A, "NODATA");
    }

    #[test]
    fn zone_structure() {
        check("cluster.local", RecordType::A, "NODATA");
        check("svc.cluster.local", RecordType::A, "NODATA");
        check("shop.svc.cluster.local", RecordType::A, "NODATA");
        check("other.svc.cluster.local", RecordType::A, "NXDOMAIN");
        check("x.cluster.local", RecordType::A, "NXDOMAIN");
        check(
            "cluster.local",
            RecordType::SOA,
            "ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
        );
        check("example.com", RecordType::A, "NOTAUTH");
        check("notcluster.local", RecordType::A, "NOTAUTH");
    }
}
