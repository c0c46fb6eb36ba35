//! End to end: the API side of Services — ClusterIP and NodePort allocation
//! (in range, distinct, kept across restarts, freed on delete, unique with
//! two servers on one etcd), the built-in `kubernetes` and `kube-dns`
//! Services, and kube-apiserver's 422s for bad Services — with kubectl 1.32.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::Server;
use serde_json::Value;

const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// The server's `--service-cidr` (the harness gives each its own /24):
/// (network address, prefix).
fn service_cidr(s: &Server) -> (Ipv4Addr, u32) {
    let arg = s
        .extra_args
        .iter()
        .find_map(|a| a.strip_prefix("--service-cidr="))
        .expect("the harness passes --service-cidr");
    let (ip, prefix) = arg.split_once('/').unwrap();
    (ip.parse().unwrap(), prefix.parse().unwrap())
}

/// Whether `ip` may be handed out from the CIDR (not network, not broadcast).
fn in_range(s: &Server, ip: &str) -> bool {
    let (net, prefix) = service_cidr(s);
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    let size = 1u32 << (32 - prefix);
    let offset = u32::from(ip).wrapping_sub(u32::from(net));
    u32::from(ip) >= u32::from(net) && offset > 0 && offset < size - 1
}

fn nth(s: &Server, i: u32) -> String {
    let (net, _) = service_cidr(s);
    Ipv4Addr::from(u32::from(net) + i).to_string()
}

fn cluster_ip(s: &Server, name: &str) -> String {
    let svc = s.json(&["get", "service", name]);
    svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string()
}

fn service_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn cluster_ips_and_node_ports_are_allocated_and_builtin_services_exist() {
    let s = Server::start();
    let mut ips = BTreeSet::new();
    for name in ["a", "b", "c"] {
        s.ok(&["create", "service", "clusterip", name, "--tcp=80:8080"]);
        let ip = cluster_ip(&s, name);
        assert!(
            in_range(&s, &ip),
            "{name} got {ip}, outside {:?}",
            service_cidr(&s)
        );
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        let svc = s.json(&["get", "service", name]);
        assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!([ip]));
        assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
        assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
        // The allocation is an IPAddress pointing at the Service.
        let record = s.json(&["get", "ipaddress", &ip]);
        assert_eq!(record["spec"]["parentRef"]["resource"], "services");
        assert_eq!(record["spec"]["parentRef"]["namespace"], "default");
        assert_eq!(record["spec"]["parentRef"]["name"], name);
    }
    // The two built-in addresses are never handed out dynamically.
    assert!(!ips.contains(&nth(&s, 1)) && !ips.contains(&nth(&s, 10)));

    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "np",
            "  type: NodePort\n  selector: {app: np}\n  ports:\n  - {name: http, port: 80}\n  - {name: dns, port: 53, protocol: UDP}\n",
        ),
    );
    let np = s.json(&["get", "service", "np"]);
    assert!(
        in_range(&s, np["spec"]["clusterIP"].as_str().unwrap()),
        "{np}"
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    let ports: Vec<i64> = np["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nodePort"].as_i64().unwrap_or(0))
        .collect();
    assert!(ports.iter().all(|p| NODE_PORTS.contains(p)), "{ports:?}");
    assert_ne!(ports[0], ports[1], "two ports got one node port");

    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "headless",
            "  clusterIP: None\n  selector: {app: h}\n  ports:\n  - {port: 80}\n",
        ),
    );
    let headless = s.json(&["get", "service", "headless"]);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["clusterIPs"], serde_json::json!(["None"]));
    s.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=db.example.com",
    ]);
    let ext = s.json(&["get", "service", "ext"]);
    assert!(ext["spec"].get("clusterIP").is_none(), "{ext}");

    let table = s.ok(&["get", "services"]);
    for want in [
        "kubernetes",
        "headless",
        "None",
        "db.example.com",
        &format!("80:{}/TCP,53:{}/UDP", ports[0], ports[1]),
    ] {
        assert!(table.contains(want), "{want} missing from:\n{table}");
    }
    for ip in &ips {
        assert!(table.contains(ip.as_str()), "{ip} missing from:\n{table}");
    }
    let records = s.ok(&["get", "ipaddresses"]);
    assert!(records.contains("PARENTREF"), "{records}");
    for want in [
        "services/default/kubernetes",
        "services/kube-system/kube-dns",
        "services/default/np",
    ] {
        assert!(records.contains(want), "{want} missing from:\n{records}");
    }

    // default/kubernetes: the first address, https 443 → this server.
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let k = s.json(&["get", "service", "kubernetes", "-n", "default"]);
    assert_eq!(k["spec"]["clusterIP"], nth(&s, 1));
    assert_eq!(k["metadata"]["labels"]["component"], "apiserver");
    assert_eq!(k["metadata"]["labels"]["provider"], "kubernetes");
    assert_eq!(k["spec"]["ports"][0]["name"], "https");
    assert_eq!(k["spec"]["ports"][0]["port"], 443);
    assert_eq!(k["spec"]["ports"][0]["targetPort"], port);
    let ep = s.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], port);
    let slice = s.json(&["get", "endpointslice", "kubernetes"]);
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(slice["ports"][0]["port"], port);

    // kube-system/kube-dns: --cluster-dns, the DNS ports, no selector.
    let dns = s.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns["spec"]["clusterIP"], nth(&s, 10));
    assert_eq!(dns["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert!(dns["spec"].get("selector").is_none(), "{dns}");
    let dns_ports: Vec<(String, i64, String)> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        dns_ports,
        [
            ("dns".to_string(), 53, "UDP".to_string()),
            ("dns-tcp".to_string(), 53, "TCP".to_string()),
            ("metrics".to_string(), 9153, "TCP".to_string()),
        ]
    );
}

#[test]
fn allocations_survive_a_restart_and_deleting_frees_them() {
    let mut s = Server::start();
    let mut before = Vec::new();
    for i in 0..5 {
        s.ok(&[
            "create",
            "service",
            "nodeport",
            &format!("s{i}"),
            "--tcp=80",
        ]);
        let svc = s.json(&["get", "service", &format!("s{i}")]);
        before.push((
            svc["spec"]["clusterIP"].as_str().unwrap().to_string(),
            svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap(),
        ));
    }
    let kubernetes_before = cluster_ip(&s, "kubernetes");
    // A record lost (here: deleted by hand) is restored by the repair pass
    // at the next start, for the Service that holds the address.
    s.ok(&["delete", "ipaddress", &before[1].0]);
    s.restart();
    let record = s.json(&["get", "ipaddress", &before[1].0]);
    assert_eq!(record["spec"]["parentRef"]["name"], "s1", "{record}");
    for (i, (ip, np)) in before.iter().enumerate() {
        let svc = s.json(&["get", "service", &format!("s{i}")]);
        assert_eq!(
            svc["spec"]["clusterIP"],
            ip.as_str(),
            "s{i} changed IP over a restart"
        );
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], *np);
    }
    assert_eq!(cluster_ip(&s, "kubernetes"), kubernetes_before);
    // The endpoint follows the restarted server's new port.
    let port: i64 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let ep = s.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], port, "{ep}");
    // New services never get an address or port that is taken.
    let taken_ips: BTreeSet<&str> = before.iter().map(|(ip, _)| ip.as_str()).collect();
    let taken_ports: BTreeSet<i64> = before.iter().map(|(_, np)| *np).collect();
    for i in 0..20 {
        let name = format!("new{i}");
        s.ok(&["create", "service", "nodeport", &name, "--tcp=80"]);
        let svc = s.json(&["get", "service", &name]);
        let ip = svc["spec"]["clusterIP"].as_str().unwrap();
        assert!(!taken_ips.contains(ip), "{name} got the taken {ip}");
        let np = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(
            !taken_ports.contains(&np),
            "{name} got the taken node port {np}"
        );
    }
    let all = s.json(&["get", "services"]);
    let ips: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["spec"]["clusterIP"].as_str())
        .collect();
    let distinct: BTreeSet<&&str> = ips.iter().collect();
    assert_eq!(distinct.len(), ips.len(), "duplicate ClusterIPs: {ips:?}");

    // Deleting frees both: another Service can ask for them at once.
    let (ip, np) = &before[0];
    s.ok(&["delete", "service", "s0"]);
    let out = s.fails(&["get", "ipaddress", ip], None);
    assert!(
        out.contains("NotFound") || out.contains("not found"),
        "{out}"
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "reuse",
            &format!(
                "  type: NodePort\n  clusterIP: {ip}\n  ports:\n  - {{port: 80, nodePort: {np}}}\n"
            ),
        ),
    );
    let reuse = s.json(&["get", "service", "reuse"]);
    assert_eq!(reuse["spec"]["clusterIP"], ip.as_str());
    assert_eq!(reuse["spec"]["ports"][0]["nodePort"], *np);
}

#[test]
fn updates_keep_allocations_and_type_changes_release_them() {
    let s = Server::start();
    s.ok(&["create", "service", "nodeport", "web", "--tcp=80"]);
    let svc = s.json(&["get", "service", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let np = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    // Unrelated changes keep both.
    s.ok(&["label", "service", "web", "tier=front"]);
    s.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"selector":{"app":"web"}}}"#,
    ]);
    let svc = s.json(&["get", "service", "web"]);
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str());
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], np);
    // A replace without the allocated values keeps them (as Kubernetes
    // does: node ports are matched by port name).
    let port_name = svc["spec"]["ports"][0]["name"].as_str().unwrap_or("");
    s.ok_stdin(
        &["replace", "-f", "-"],
        &service_yaml(
            "web",
            &format!("  type: NodePort\n  selector: {{app: web}}\n  ports:\n  - {{name: \"{port_name}\", port: 80}}\n"),
        ),
    );
    let svc = s.json(&["get", "service", "web"]);
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str(), "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], np, "{svc}");
    // Server-side apply, twice with a change: allocated once, then kept.
    let applied = |port: u16| {
        service_yaml(
            "ssa",
            &format!("  type: NodePort\n  ports:\n  - {{name: http, port: {port}}}\n"),
        )
    };
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &applied(80));
    let first = s.json(&["get", "service", "ssa"]);
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &applied(8080));
    let second = s.json(&["get", "service", "ssa"]);
    assert_eq!(second["spec"]["clusterIP"], first["spec"]["clusterIP"]);
    assert_eq!(second["spec"]["ports"][0]["port"], 8080);
    assert_eq!(
        second["spec"]["ports"][0]["nodePort"], first["spec"]["ports"][0]["nodePort"],
        "{second}"
    );
    // The ClusterIP cannot change (to an address other than its own: the
    // allocator picks at random, so .200 itself may be the one it has).
    let other = if ip == nth(&s, 200) {
        nth(&s, 201)
    } else {
        nth(&s, 200)
    };
    let err = s.fails(
        &[
            "patch",
            "service",
            "web",
            "-p",
            &format!(r#"{{"spec":{{"clusterIP":"{other}","clusterIPs":["{other}"]}}}}"#),
        ],
        None,
    );
    assert!(
        err.contains("spec.clusterIPs[0]") && err.contains("may not change once set"),
        "{err}"
    );

    // NodePort → ClusterIP gives the node port back.
    s.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let svc = s.json(&["get", "service", "web"]);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str());
    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "takes-port",
            &format!("  type: NodePort\n  ports:\n  - {{port: 80, nodePort: {np}}}\n"),
        ),
    );
    // ClusterIP → ExternalName gives the address back.
    s.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"web.example.com"}}"#,
    ]);
    let svc = s.json(&["get", "service", "web"]);
    assert!(svc["spec"].get("clusterIP").is_none(), "{svc}");
    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "takes-ip",
            &format!("  clusterIP: {ip}\n  ports:\n  - {{port: 80}}\n"),
        ),
    );
    // And back: ExternalName → ClusterIP allocates a fresh one.
    s.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}"#,
    ]);
    let fresh = cluster_ip(&s, "web");
    assert!(in_range(&s, &fresh) && fresh != ip, "{fresh}");
}

#[test]
fn bad_services_are_422_with_the_field_path() {
    let s = Server::start();
    let (net, _) = service_cidr(&s);
    s.ok_stdin(
        &["create", "-f", "-"],
        &service_yaml(
            "holder",
            "  type: NodePort\n  ports:\n  - {port: 80, nodePort: 30555}\n",
        ),
    );
    let holder_ip = cluster_ip(&s, "holder");
    let outside = if net.octets()[1] == 43 {
        "10.44.0.5"
    } else {
        "10.43.0.5"
    };
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "duplicate port",
            "  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80}\n".into(),
            vec!["spec.ports[1]: Duplicate value".into()],
        ),
        (
            "invalid targetPort name",
            "  ports:\n  - {port: 80, targetPort: Not_A-Name}\n".into(),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"Not_A-Name\"".into(),
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
            ],
        ),
        (
            "clusterIP outside the range",
            format!("  clusterIP: {outside}\n  ports:\n  - {{port: 80}}\n"),
            vec![
                "spec.clusterIPs: Invalid value: []string{".into(),
                format!(
                    "failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. The range of valid IPs is {}",
                    s.extra_args.iter().find_map(|a| a.strip_prefix("--service-cidr=")).unwrap()
                ),
            ],
        ),
        (
            "clusterIP already taken",
            format!("  clusterIP: {holder_ip}\n  ports:\n  - {{port: 80}}\n"),
            vec![format!("spec.clusterIPs: Invalid value: []string{{\"{holder_ip}\"}}: failed to allocate IP {holder_ip}: provided IP is already allocated")],
        ),
        (
            "nodePort already taken",
            "  type: NodePort\n  ports:\n  - {port: 80, nodePort: 30555}\n".into(),
            vec!["spec.ports[0].nodePort: Invalid value: 30555: provided port is already allocated".into()],
        ),
        (
            "nodePort out of range",
            "  type: NodePort\n  ports:\n  - {port: 80, nodePort: 40000}\n".into(),
            vec!["spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767".into()],
        ),
        (
            "duplicate nodePort in one service",
            "  type: NodePort\n  ports:\n  - {name: a, port: 80, nodePort: 30600}\n  - {name: b, port: 81, nodePort: 30600}\n".into(),
            vec!["spec.ports[1].nodePort: Duplicate value".into()],
        ),
        (
            "missing port names",
            "  ports:\n  - {port: 80}\n  - {port: 81}\n".into(),
            vec!["spec.ports[0].name: Required value".into()],
        ),
        (
            "nodePort on a ClusterIP service",
            "  ports:\n  - {port: 80, nodePort: 30700}\n".into(),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()],
        ),
        (
            "affinity timeout too long",
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 90000}}\n  ports:\n  - {port: 80}\n".into(),
            vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000".into()],
        ),
        (
            "externalName not a DNS name",
            "  type: ExternalName\n  externalName: Not_Valid\n".into(),
            vec!["spec.externalName: Invalid value: \"Not_Valid\"".into()],
        ),
        (
            "unknown internalTrafficPolicy",
            "  internalTrafficPolicy: Nearby\n  ports:\n  - {port: 80}\n".into(),
            vec!["spec.internalTrafficPolicy: Unsupported value: \"Nearby\"".into()],
        ),
        (
            "port 0",
            "  ports:\n  - {port: 0}\n".into(),
            vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into()],
        ),
    ];
    for (what, spec, wants) in &cases {
        let err = s.fails(&["create", "-f", "-"], Some(&service_yaml("bad", spec)));
        assert!(
            err.contains("The Service \"bad\" is invalid"),
            "{what}: {err}"
        );
        for want in wants {
            assert!(
                err.contains(want.as_str()),
                "{what}: {want:?} missing from:\n{err}"
            );
        }
    }
    // The status code is 422 (Invalid) with the field in details.causes.
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"bad"}},"spec":{{"clusterIP":"{holder_ip}","ports":[{{"port":80}}]}}}}"#
    );
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&s.token),
        Some("application/json"),
        Some(body.as_bytes()),
    );
    assert_eq!(code, 422, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.clusterIPs");
    // Nothing of the rejected services was kept.
    let out = s.fails(&["get", "service", "bad"], None);
    assert!(out.contains("not found"), "{out}");
}

#[test]
fn two_servers_on_one_etcd_never_hand_out_one_address_twice() {
    let etcd = store::testing::EtcdProcess::start()
        .expect("etcd must be installed (apt-get install -y etcd-server)");
    // One cluster: both servers share the service range. A small one, so
    // that collisions would be likely if allocation were not unique.
    let (a_octet, b_octet) = common::service_cidr_octets(std::process::id(), 255);
    let cidr = format!("--service-cidr=10.{a_octet}.{b_octet}.0/26");
    let args = ["--datastore-endpoint", etcd.endpoint(), cidr.as_str()];
    let a = Server::start_with(&args);
    let b = Server::start_with(&args);
    let per_server = 20;
    std::thread::scope(|scope| {
        for (s, tag) in [(&a, "a"), (&b, "b")] {
            scope.spawn(move || {
                for i in 0..per_server {
                    s.ok(&[
                        "create",
                        "service",
                        "nodeport",
                        &format!("{tag}{i}"),
                        "--tcp=80",
                    ]);
                }
            });
        }
    });
    let all = a.json(&["get", "services", "-A"]);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 2 * per_server + 2, "services: {all}");
    let ips: Vec<&str> = items
        .iter()
        .filter_map(|i| i["spec"]["clusterIP"].as_str())
        .collect();
    let distinct: BTreeSet<&&str> = ips.iter().collect();
    assert_eq!(distinct.len(), ips.len(), "duplicate ClusterIPs: {ips:?}");
    let ports: Vec<i64> = items
        .iter()
        .filter_map(|i| i["spec"]["ports"][0]["nodePort"].as_i64())
        .collect();
    let distinct_ports: BTreeSet<&i64> = ports.iter().collect();
    assert_eq!(ports.len(), 2 * per_server);
    assert_eq!(
        distinct_ports.len(),
        ports.len(),
        "duplicate node ports: {ports:?}"
    );
    // One IPAddress per address in use, each naming its own Service.
    let records = b.json(&["get", "ipaddresses"]);
    let records = records["items"].as_array().unwrap();
    assert_eq!(records.len(), ips.len(), "{records:?}");
    for r in records {
        let parent = &r["spec"]["parentRef"];
        let svc = b.json(&[
            "get",
            "service",
            parent["name"].as_str().unwrap(),
            "-n",
            parent["namespace"].as_str().unwrap(),
        ]);
        assert_eq!(svc["spec"]["clusterIP"], r["metadata"]["name"]);
    }
}
