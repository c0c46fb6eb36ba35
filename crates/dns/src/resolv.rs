//! A pod's `/etc/resolv.conf`, decided as the kubelet decides it (its
//! `dnsPolicy`, the node's cluster DNS settings and the host's file, then
//! `dnsConfig` merged in and the result cut to the resolver's limits) and
//! written as CRI runtimes write it. Pure: the agent hands the text to the
//! runtime, which binds it onto the containers' `/etc/resolv.conf`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};

/// At most this many `nameserver` lines (glibc reads no more).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (the API's and the kubelet's limit).
pub const MAX_SEARCH_DOMAINS: usize = 32;
/// At most this many characters on the `search` line.
pub const MAX_SEARCH_LINE_CHARS: usize = 2048;
/// A longer search domain is dropped (some resolvers abort on one).
const MAX_SEARCH_DOMAIN_CHARS: usize = 253;

/// What a resolv.conf says, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct DnsConfig {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

/// The parts of the host's resolv.conf the kubelet reads: `nameserver`s,
/// the last `search` line (without final dots), and `options` (a later one
/// replaces an earlier one of the same name).
fn parse_host(text: &str) -> Result<DnsConfig, String> {
    let mut config = DnsConfig::default();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.split_first() {
            Some((&"nameserver", rest)) => {
                if rest.is_empty() {
                    return Err("the host's resolv.conf: nameserver list is empty".into());
                }
                config.servers.extend(rest.iter().map(|s| s.to_string()));
            }
            Some((&"search", rest)) => {
                config.searches = rest
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some((&"options", rest)) => {
                let parsed: Vec<(String, Option<String>)> =
                    rest.iter().map(|o| split_option(o)).collect();
                config.options = merge_options(&config.options, &parsed);
            }
            _ => {}
        }
    }
    Ok(config)
}

fn split_option(option: &str) -> (String, Option<String>) {
    match option.split_once(':') {
        Some((name, value)) => (name.to_string(), Some(value.to_string())),
        None => (option.to_string(), None),
    }
}

/// `existing` options with `overrides` replacing those of the same name
/// in place and the rest appended (the kubelet merges by name; its order
/// is a Go map's, so drover keeps the first appearance's instead).
fn merge_options(existing: &[String], overrides: &[(String, Option<String>)]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> =
        existing.iter().map(|o| split_option(o)).collect();
    for (name, value) in overrides {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => merged.push((name.clone(), value.clone())),
        }
    }
    merged
        .into_iter()
        .map(|(name, value)| match value.filter(|v| !v.is_empty()) {
            Some(v) => format!("{name}:{v}"),
            None => name,
        })
        .collect()
}

fn omit_duplicates(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The search list cut as the kubelet cuts it: the first 32 domains,
/// without any longer than 253 characters, then dropped from the end
/// until the line fits 2048 characters.
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_DOMAINS);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_CHARS);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        searches.pop();
    }
    searches
}

/// The content of `pod`'s `/etc/resolv.conf`.
///
/// `cluster_dns` and `cluster_domain` are the node's settings (the
/// kubelet's `clusterDNS` and `clusterDomain`); `host_resolv_conf` is the
/// host's file. `ClusterFirst` (the default) on a `hostNetwork` pod, and
/// `ClusterFirst`/`ClusterFirstWithHostNet` on a node without cluster DNS,
/// fall back to `Default` (the host's settings) as the kubelet does. When
/// nothing at all is configured the host's file is returned as it is (what
/// a CRI runtime does with an empty DNS config). An error names what
/// cannot be done (an unknown `dnsPolicy`, a host file the kubelet rejects).
pub fn resolv_conf(
    pod: &Pod,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    host_resolv_conf: &str,
) -> Result<String, String> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" => Some(!host_network),
        "Default" => Some(false),
        other => return Err(format!("invalid dnsPolicy {other:?}")),
    };
    let host = parse_host(host_resolv_conf)?;
    let mut config = match cluster {
        None => DnsConfig::default(),
        Some(true) if !cluster_dns.is_empty() => {
            let mut searches = Vec::new();
            if !cluster_domain.is_empty() {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                searches.push(format!("{namespace}.svc.{cluster_domain}"));
                searches.push(format!("svc.{cluster_domain}"));
                searches.push(cluster_domain.to_string());
            }
            searches.extend(host.searches);
            DnsConfig {
                servers: cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: omit_duplicates(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        Some(_) => host,
    };
    if let Some(dns_config) = spec.and_then(|s| s.dns_config.as_ref()) {
        config
            .servers
            .extend(dns_config.nameservers.iter().flatten().cloned());
        config.servers = omit_duplicates(config.servers);
        config
            .searches
            .extend(dns_config.searches.iter().flatten().cloned());
        config.searches = omit_duplicates(config.searches);
        let overrides: Vec<(String, Option<String>)> = dns_config
            .options
            .iter()
            .flatten()
            .filter_map(|PodDNSConfigOption { name, value }| Some((name.clone()?, value.clone())))
            .collect();
        config.options = merge_options(&config.options, &overrides);
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches = fit_searches(config.searches);
    if config == DnsConfig::default() {
        return Ok(host_resolv_conf.to_string());
    }
    let mut text = String::new();
    if !config.searches.is_empty() {
        text.push_str(&format!("search {}\n", config.searches.join(" ")));
    }
    for server in &config.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !config.options.is_empty() {
        text.push_str(&format!("options {}\n", config.options.join(" ")));
    }
    Ok(text)
}

/// The servers names outside the cluster domain are forwarded to: the
/// host's `nameserver`s on port 53, without the cluster DNS addresses
/// themselves (a node whose resolver points at the cluster DNS would
/// otherwise forward to itself forever).
pub fn upstream_servers(
    host_resolv_conf: &str,
    cluster_dns: &[IpAddr],
) -> Vec<std::net::SocketAddr> {
    let servers = parse_host(host_resolv_conf)
        .map(|c| c.servers)
        .unwrap_or_default();
    let mut out = Vec::new();
    for server in servers {
        if let Ok(ip) = server.parse::<IpAddr>() {
            let addr = std::net::SocketAddr::new(ip, 53);
            if !cluster_dns.contains(&ip) && !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "# generated\n; comment\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example. lab.example .\noptions timeout:2 rotate\noptions timeout:3\n";

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": spec
        }))
        .unwrap()
    }

    fn check(spec: serde_json::Value, cluster_dns: &[&str], expected: &str) {
        let dns: Vec<IpAddr> = cluster_dns.iter().map(|s| s.parse().unwrap()).collect();
        let got = resolv_conf(&pod(spec.clone()), &dns, "cluster.local", HOST).unwrap();
        assert_eq!(got, expected, "spec {spec}");
    }

    #[test]
    fn cluster_first() {
        let cluster = "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n";
        check(json!({"containers": []}), &["10.43.0.10"], cluster);
        check(
            json!({"dnsPolicy": "ClusterFirst"}),
            &["10.43.0.10"],
            cluster,
        );
        check(
            json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
            &["10.43.0.10"],
            cluster,
        );
    }

    #[test]
    fn host_settings() {
        let host = "search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions timeout:3 rotate\n";
        check(json!({"dnsPolicy": "Default"}), &["10.43.0.10"], host);
        // ClusterFirst on the host network, or with no cluster DNS: Default.
        check(json!({"hostNetwork": true}), &["10.43.0.10"], host);
        check(json!({"dnsPolicy": "ClusterFirst"}), &[], host);
        check(json!({"dnsPolicy": "ClusterFirstWithHostNet"}), &[], host);
    }

    #[test]
    fn dns_config_merges() {
        check(
            json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
            &["10.43.0.10"],
            "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n",
        );
        check(
            json!({"dnsConfig": {
                "nameservers": ["10.43.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"],
                "searches": ["svc.cluster.local", "extra.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}),
            &["10.43.0.10"],
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\nnameserver 10.43.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:1 single-request\n",
        );
        check(
            json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "timeout"}]}}),
            &["10.43.0.10"],
            "search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions timeout rotate\n",
        );
    }

    #[test]
    fn search_limits() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let dns = ["10.43.0.10".parse().unwrap()];
        let text = resolv_conf(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": many}})),
            &dns,
            "cluster.local",
            HOST,
        )
        .unwrap();
        let search = text.lines().next().unwrap();
        assert_eq!(
            search.split_whitespace().count(),
            1 + MAX_SEARCH_DOMAINS,
            "{search}"
        );
        assert!(search.ends_with(" d31.example"), "{search}");

        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(200))).collect();
        let text = resolv_conf(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": long}})),
            &dns,
            "cluster.local",
            HOST,
        )
        .unwrap();
        let search = text.lines().next().unwrap().trim_start_matches("search ");
        assert!(
            search.len() <= MAX_SEARCH_LINE_CHARS,
            "{} chars",
            search.len()
        );
        assert_eq!(search.split(' ').count(), 10, "{search}");
    }

    #[test]
    fn nothing_configured_keeps_the_host_file() {
        let host = "# only comments\n";
        let got = resolv_conf(
            &pod(json!({"dnsPolicy": "Default"})),
            &[],
            "cluster.local",
            host,
        );
        assert_eq!(got.as_deref(), Ok(host));
    }

    #[test]
    fn upstreams_are_the_hosts_nameservers_but_the_cluster_dns() {
        let host = "nameserver 10.43.0.10\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nnameserver ::1\n";
        let got = upstream_servers(host, &["10.43.0.10".parse().unwrap()]);
        let want: Vec<std::net::SocketAddr> = vec![
            "192.168.1.1:53".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn errors() {
        let dns = ["10.43.0.10".parse().unwrap()];
        let got = resolv_conf(
            &pod(json!({"dnsPolicy": "Bogus"})),
            &dns,
            "cluster.local",
            HOST,
        );
        assert_eq!(got, Err("invalid dnsPolicy \"Bogus\"".to_string()));
        let got = resolv_conf(&pod(json!({})), &dns, "cluster.local", "nameserver\n");
        assert_eq!(
            got,
            Err("the host's resolv.conf: nameserver list is empty".to_string())
        );
    }
}
