//! The environment variables the kubelet gives every container for the
//! Services it can see (`FOO_SERVICE_HOST`, `FOO_SERVICE_PORT`, and the
//! Docker-link style `FOO_PORT_80_TCP…`): those of the pod's namespace when
//! `enableServiceLinks` is on (the default), and always the API server's
//! `kubernetes` Service of `default`, which is how in-cluster clients
//! (client-go's `InClusterConfig`, the Python client's
//! `load_incluster_config`, kube-rs) find the API.

use std::collections::BTreeMap;

use serde_json::Value;

/// The Services whose variables a container gets, as the kubelet chooses
/// them (`getServiceEnvVarMap`): headless and ClusterIP-less ones never.
pub fn services_for_pod<'a>(
    services: &'a [Value],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<&'a Value> {
    let mut chosen: BTreeMap<&str, &Value> = BTreeMap::new();
    for s in services {
        let ip = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ns = s
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, s);
        }
    }
    chosen.into_values().collect()
}

fn variable_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The variables of `services` (`envvars.FromServices`).
pub fn service_variables(services: &[&Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let ip = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = s
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ports = s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = variable_name(name);
        let port_of = |p: &Value| p.get("port").and_then(Value::as_i64).unwrap_or(0);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), port_of(first).to_string()));
        for p in ports {
            if let Some(port_name) = p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", variable_name(port_name)),
                    port_of(p).to_string(),
                ));
            }
        }
        let host = |port: i64| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let port = port_of(p);
            let url = format!("{lower}://{}", host(port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{port}_{}", protocol.to_uppercase());
            out.push((port_prefix.clone(), url));
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, ip: &str, ports: Value) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn the_api_service_is_always_there_others_only_with_links() {
        let all = vec![
            service(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443}]),
            ),
            service("web", "db", "10.43.0.9", json!([{"port": 5432}])),
            service("web", "headless", "None", json!([{"port": 80}])),
            service("other", "cache", "10.43.0.7", json!([{"port": 6379}])),
        ];
        let names = |v: Vec<&Value>| -> Vec<String> {
            v.iter()
                .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            names(services_for_pod(&all, "web", true)),
            vec!["db", "kubernetes"]
        );
        assert_eq!(
            names(services_for_pod(&all, "web", false)),
            vec!["kubernetes"]
        );
        // A `kubernetes` Service of the pod's own namespace wins over the
        // API's when links are on.
        let mut shadowed = all.clone();
        shadowed.push(service(
            "web",
            "kubernetes",
            "10.43.0.5",
            json!([{"port": 80}]),
        ));
        let chosen = services_for_pod(&shadowed, "web", true);
        assert_eq!(chosen[1]["spec"]["clusterIP"], "10.43.0.5");
    }

    #[test]
    fn variables_are_the_kubelets() {
        let api = service(
            "default",
            "kubernetes",
            "10.43.0.1",
            json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        );
        let dns = service(
            "kube-system",
            "kube-dns",
            "10.43.0.10",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        );
        let got: BTreeMap<String, String> = service_variables(&[&api, &dns]).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("KUBE_DNS_SERVICE_HOST", "10.43.0.10"),
            ("KUBE_DNS_SERVICE_PORT", "53"),
            ("KUBE_DNS_SERVICE_PORT_DNS", "53"),
            ("KUBE_DNS_SERVICE_PORT_DNS_TCP", "53"),
            ("KUBE_DNS_PORT", "udp://10.43.0.10:53"),
            ("KUBE_DNS_PORT_53_UDP", "udp://10.43.0.10:53"),
            ("KUBE_DNS_PORT_53_UDP_PROTO", "udp"),
            ("KUBE_DNS_PORT_53_UDP_PORT", "53"),
            ("KUBE_DNS_PORT_53_UDP_ADDR", "10.43.0.10"),
            ("KUBE_DNS_PORT_53_TCP", "tcp://10.43.0.10:53"),
            ("KUBE_DNS_PORT_53_TCP_PROTO", "tcp"),
            ("KUBE_DNS_PORT_53_TCP_PORT", "53"),
            ("KUBE_DNS_PORT_53_TCP_ADDR", "10.43.0.10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
