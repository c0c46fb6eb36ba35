//! Table tests of whole scheduling cycles: bindings, exact unschedulable messages,
//! preemption choices, the search budget and a 5,000-node cluster.

use super::*;
use crate::testing::{node_name_term, node_term, pv, pvc, term, NodeBuilder, PodBuilder};

fn snapshot(nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>) -> Snapshot {
    Snapshot::new(
        nodes.into_iter().map(NodeBuilder::build).collect(),
        pods.into_iter().map(PodBuilder::build).collect(),
        vec![],
        vec![],
    )
}

/// A decision as one line: `bind <node>`, or the message followed by
/// ` => preempt <node>: ns/name, ...` when preemption found victims.
fn outcome(decision: &Decision) -> String {
    match decision {
        Decision::Bind { node, .. } => format!("bind {node}"),
        Decision::Unschedulable {
            message,
            preemption,
            ..
        } => match preemption {
            None => message.clone(),
            Some(p) => {
                let victims: Vec<String> = p
                    .victims
                    .iter()
                    .map(|(ns, name)| format!("{ns}/{name}"))
                    .collect();
                format!("{message} => preempt {}: {}", p.node, victims.join(", "))
            }
        },
    }
}

fn next_start_index(decision: &Decision) -> usize {
    match decision {
        Decision::Bind {
            next_start_index, ..
        } => *next_start_index,
        Decision::Unschedulable { .. } => panic!("expected a binding, got {decision:?}"),
    }
}

fn check(snapshot: &Snapshot, pod: PodBuilder, expected: &str) {
    let decision = schedule(snapshot, &pod.build(), &ScheduleOptions::default());
    assert_eq!(outcome(&decision), expected);
}

fn on(name: &str, node: &str) -> PodBuilder {
    PodBuilder::new(name).node(node)
}

fn cpu(name: &str, node: &str, amount: &str) -> PodBuilder {
    on(name, node).requests(amount, "")
}

const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

#[test]
fn binds_where_the_pod_fits() {
    let s = snapshot(vec![NodeBuilder::new("n1")], vec![]);
    check(&s, PodBuilder::new("p"), "bind n1");
    let s = snapshot(
        vec![
            NodeBuilder::new("cp").taint(CONTROL_PLANE, "", "NoSchedule"),
            NodeBuilder::new("w1"),
        ],
        vec![],
    );
    check(&s, PodBuilder::new("p"), "bind w1");
    check(
        &s,
        PodBuilder::new("p")
            .toleration(CONTROL_PLANE, "Exists", "", "NoSchedule")
            .node_selector("kubernetes.io/hostname", "cp"),
        "bind cp",
    );
    let s = snapshot(
        vec![NodeBuilder::new("n1"), NodeBuilder::new("n2")],
        vec![cpu("big", "n1", "3")],
    );
    check(&s, PodBuilder::new("p").requests("2", ""), "bind n2");
    // Least allocated wins among feasible nodes.
    check(&s, PodBuilder::new("p").requests("500m", ""), "bind n2");
    // A pod naming its node goes there or nowhere.
    check(&s, PodBuilder::new("p").node("n1"), "bind n1");
}

#[test]
fn decision_counts_and_start_index() {
    let s = snapshot(
        vec![
            NodeBuilder::new("n1"),
            NodeBuilder::new("n2").unschedulable(),
            NodeBuilder::new("n3"),
        ],
        vec![],
    );
    let decision = schedule(
        &s,
        &PodBuilder::new("p").build(),
        &ScheduleOptions::default(),
    );
    assert_eq!(
        decision,
        Decision::Bind {
            node: "n1".to_string(),
            evaluated_nodes: 3,
            feasible_nodes: 2,
            next_start_index: 0,
        }
    );
    let only_n3 = PodBuilder::new("p")
        .node_selector("kubernetes.io/hostname", "n3")
        .build();
    let options = ScheduleOptions {
        start_index: 1,
        ..Default::default()
    };
    assert_eq!(
        schedule(&s, &only_n3, &options),
        Decision::Bind {
            node: "n3".to_string(),
            evaluated_nodes: 3,
            feasible_nodes: 1,
            next_start_index: 1,
        }
    );
}

#[test]
fn unschedulable_messages() {
    // Taint on one node and full nodes: the FitError plus what preemption found.
    let s = snapshot(
        vec![
            NodeBuilder::new("cp").taint(CONTROL_PLANE, "", "NoSchedule"),
            NodeBuilder::new("w1"),
            NodeBuilder::new("w2"),
        ],
        vec![cpu("a", "w1", "3"), cpu("b", "w2", "3")],
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", ""),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod.",
    );
    // Several reasons on one node are each counted.
    check(
        &s,
        PodBuilder::new("p").requests("5", "40Gi"),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient cpu, 2 Insufficient memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    check(
        &s,
        PodBuilder::new("p").node_selector("disk", "ssd"),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").preemption_never(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
    );
    let empty = snapshot(vec![], vec![]);
    check(
        &empty,
        PodBuilder::new("p"),
        "no nodes available to schedule pods",
    );
    check(
        &s,
        PodBuilder::new("p")
            .scheduling_gate("a")
            .scheduling_gate("b"),
        "waiting for scheduling gates: [a b]",
    );
}

#[test]
fn reasons_sort_as_strings() {
    // Like kube-scheduler, "count reason" strings sort lexicographically: 10 before 2.
    let mut nodes: Vec<NodeBuilder> = (0..10)
        .map(|i| NodeBuilder::new(&format!("small-{i}")).cpu("1"))
        .collect();
    nodes.push(NodeBuilder::new("cordoned-1").unschedulable());
    nodes.push(NodeBuilder::new("cordoned-2").unschedulable());
    let s = snapshot(nodes, vec![]);
    check(
        &s,
        PodBuilder::new("p").requests("2", ""),
        "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable. \
         preemption: 0/12 nodes are available: 12 Preemption is not helpful for scheduling.",
    );
}

#[test]
fn every_filter_reports_its_reason() {
    let s = snapshot(
        vec![
            NodeBuilder::new("full").pods("1"),
            NodeBuilder::new("ports"),
            NodeBuilder::new("zoneless"),
        ],
        vec![
            on("x", "full"),
            on("web", "ports").host_port(80, "", "").label("app", "web"),
            on("other", "zoneless")
                .host_port(80, "", "")
                .label("app", "other"),
        ],
    );
    check(
        &s,
        PodBuilder::new("p").host_port(80, "", ""),
        "0/3 nodes are available: 1 Too many pods, 2 node(s) didn't have free ports for the requested pod ports. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
    check(
        &s,
        PodBuilder::new("p").label("app", "web").spread(1, "topology.kubernetes.io/zone", "DoNotSchedule", &[("app", "web")]),
        "0/3 nodes are available: 1 Too many pods, 2 node(s) didn't match pod topology spread constraints (missing required label). \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.",
    );
    check(
        &s,
        PodBuilder::new("p").pod_affinity(term(&[("app", "db")], "kubernetes.io/hostname")),
        "0/3 nodes are available: 1 Too many pods, 2 node(s) didn't match pod affinity rules. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.",
    );
    check(
        &s,
        PodBuilder::new("p").pod_anti_affinity(term(&[("app", "web")], "kubernetes.io/hostname")).node_selector("kubernetes.io/hostname", "ports"),
        "0/3 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.",
    );
    let guarded = snapshot(
        vec![NodeBuilder::new("n1")],
        vec![on("guard", "n1").pod_anti_affinity(term(&[("app", "web")], "kubernetes.io/hostname"))],
    );
    check(
        &guarded,
        PodBuilder::new("p").label("app", "web"),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
    );
}

#[test]
fn pre_filter_failures() {
    let zone = "topology.kubernetes.io/zone";
    let nodes = || {
        vec![
            NodeBuilder::new("n1").zone("a"),
            NodeBuilder::new("n2").zone("b"),
        ]
    };
    let s = snapshot(nodes(), vec![]);
    check(
        &s,
        PodBuilder::new("p").pvc("data"),
        "0/2 nodes are available: persistentvolumeclaim \"data\" not found. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
    let with_volume = Snapshot::new(
        nodes().into_iter().map(NodeBuilder::build).collect(),
        vec![],
        vec![pvc("data", "pv1")],
        vec![pv("pv1", Some(node_term(zone, "In", &["b"])))],
    );
    check(&with_volume, PodBuilder::new("p").pvc("data"), "bind n2");
    check(
        &with_volume,
        PodBuilder::new("p").pvc("data").node_selector(zone, "a"),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had volume node affinity conflict. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
    let conflicting = k8s_openapi::api::core::v1::NodeSelectorTerm {
        match_fields: Some(
            [node_name_term("In", &["n1"]), node_name_term("In", &["n2"])]
                .into_iter()
                .flat_map(|t| t.match_fields.unwrap_or_default())
                .collect(),
        ),
        match_expressions: None,
    };
    check(
        &s,
        PodBuilder::new("p").required_node_affinity(vec![conflicting]),
        "0/2 nodes are available: pod affinity terms conflict. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
}

#[test]
fn daemon_set_pods_are_pinned() {
    let s = snapshot(
        vec![
            NodeBuilder::new("n1"),
            NodeBuilder::new("n2"),
            NodeBuilder::new("n3"),
        ],
        vec![on("exporter-old", "n2").host_port(9100, "", "")],
    );
    let daemon = |node: &str| {
        PodBuilder::new("exporter")
            .host_port(9100, "", "")
            .required_node_affinity(vec![node_name_term("In", &[node])])
    };
    check(&s, daemon("n3"), "bind n3");
    check(
        &s,
        daemon("n2"),
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, \
         2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/3 nodes are available: \
         1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
    );
    check(
        &s,
        daemon("gone"),
        "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    let far = ScheduleOptions {
        start_index: usize::MAX,
        ..Default::default()
    };
    assert!(matches!(
        schedule(&s, &daemon("n3").build(), &far),
        Decision::Bind { .. }
    ));
    let decision = schedule(&s, &daemon("n1").build(), &ScheduleOptions::default());
    assert!(matches!(
        decision,
        Decision::Bind {
            evaluated_nodes: 1,
            feasible_nodes: 1,
            ..
        }
    ));
}

#[test]
fn scoring_chooses_the_best_node() {
    let nodes = || {
        vec![
            NodeBuilder::new("soft-tainted").taint("spot", "", "PreferNoSchedule"),
            NodeBuilder::new("ssd").label("disk", "ssd"),
            NodeBuilder::new("plain"),
        ]
    };
    let s = snapshot(nodes(), vec![]);
    // Taint score (weight 3) pushes away from soft-tainted; ssd and plain tie.
    let options = |tie_break| ScheduleOptions {
        tie_break,
        ..Default::default()
    };
    let pick =
        |pod: PodBuilder, tie_break| outcome(&schedule(&s, &pod.build(), &options(tie_break)));
    assert_eq!(pick(PodBuilder::new("p"), 0), "bind ssd");
    assert_eq!(pick(PodBuilder::new("p"), 1), "bind plain");
    assert_eq!(pick(PodBuilder::new("p"), 2), "bind ssd");
    assert_eq!(
        pick(
            PodBuilder::new("p").preferred_node_affinity(1, node_term("disk", "In", &["ssd"])),
            1
        ),
        "bind ssd"
    );
    assert_eq!(
        pick(
            PodBuilder::new("p")
                .toleration("spot", "Exists", "", "")
                .preferred_node_affinity(1, node_term("disk", "DoesNotExist", &[])),
            0
        ),
        "bind soft-tainted"
    );
    // Preferred pod affinity follows the pods it likes.
    let with_db = snapshot(nodes(), vec![on("db", "plain").label("app", "db")]);
    check(
        &with_db,
        PodBuilder::new("p")
            .preferred_pod_affinity(50, term(&[("app", "db")], "kubernetes.io/hostname")),
        "bind plain",
    );
    check(
        &with_db,
        PodBuilder::new("p")
            .preferred_pod_anti_affinity(50, term(&[("app", "db")], "kubernetes.io/hostname")),
        "bind ssd",
    );
}

#[test]
fn assumed_replicas_spread_out() {
    let mut s = snapshot(
        vec![
            NodeBuilder::new("a1").zone("a"),
            NodeBuilder::new("a2").zone("a"),
            NodeBuilder::new("b1").zone("b"),
        ],
        vec![],
    );
    let mut options = ScheduleOptions::default();
    let mut per_node = BTreeMap::new();
    for i in 0..6 {
        let pod = PodBuilder::new(&format!("web-{i}"))
            .owner("ReplicaSet", "web", "rs-web")
            .requests("100m", "100Mi")
            .build();
        let decision = schedule(&s, &pod, &options);
        options.start_index = next_start_index(&decision);
        options.tie_break += 1;
        let Decision::Bind { node, .. } = decision else {
            panic!("web-{i} did not bind: {decision:?}");
        };
        *per_node.entry(node.clone()).or_insert(0) += 1;
        let mut bound = pod;
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node);
        s.add_pod(bound);
    }
    assert_eq!(
        per_node,
        BTreeMap::from([
            ("a1".to_string(), 2),
            ("a2".to_string(), 2),
            ("b1".to_string(), 2)
        ])
    );
}

#[test]
fn percentage_of_nodes_to_score() {
    let nodes = |count: usize| {
        (0..count)
            .map(|i| NodeBuilder::new(&format!("n{i:04}")))
            .collect::<Vec<_>>()
    };
    let counts = |s: &Snapshot, options: &ScheduleOptions| match schedule(
        s,
        &PodBuilder::new("p").build(),
        options,
    ) {
        Decision::Bind {
            evaluated_nodes,
            feasible_nodes,
            next_start_index,
            ..
        } => (evaluated_nodes, feasible_nodes, next_start_index),
        other => panic!("unexpected {other:?}"),
    };
    let small = snapshot(nodes(99), vec![]);
    assert_eq!(counts(&small, &ScheduleOptions::default()), (99, 99, 0));
    let s = snapshot(nodes(1000), vec![]);
    // Adaptive: 50 - 1000/125 = 42%.
    assert_eq!(counts(&s, &ScheduleOptions::default()), (420, 420, 420));
    let options = |percentage, start_index| ScheduleOptions {
        percentage_of_nodes_to_score: Some(percentage),
        start_index,
        tie_break: 0,
    };
    assert_eq!(counts(&s, &options(50, 0)), (500, 500, 500));
    assert_eq!(counts(&s, &options(5, 990)), (100, 100, 90));
    assert_eq!(counts(&s, &options(100, 7)), (1000, 1000, 7));
    assert_eq!(feasible_nodes_to_find(None, 5000), 500);
    assert_eq!(feasible_nodes_to_find(None, 100_000), 5000);
    assert_eq!(feasible_nodes_to_find(Some(1), 1000), 100);
    // Rejected nodes count as evaluated and move the start.
    let mut mixed: Vec<NodeBuilder> = (0..50)
        .map(|i| NodeBuilder::new(&format!("tainted{i}")).taint("x", "", "NoSchedule"))
        .collect();
    mixed.extend(nodes(150));
    let s = snapshot(mixed, vec![]);
    let decision = schedule(&s, &PodBuilder::new("p").build(), &options(50, 0));
    assert_eq!(next_start_index(&decision), 150);
    assert!(matches!(
        decision,
        Decision::Bind {
            evaluated_nodes: 150,
            feasible_nodes: 100,
            ..
        }
    ));
}

#[test]
fn preemption_evicts_the_fewest_least_important_pods() {
    // a: priorities 1 and 2; b: two pods of priority 5. The pod needs 2 of 4 cpus.
    let s = snapshot(
        vec![NodeBuilder::new("a"), NodeBuilder::new("b")],
        vec![
            cpu("a-low", "a", "2").priority(1),
            cpu("a-mid", "a", "2").priority(2),
            cpu("b-1", "b", "2").priority(5),
            cpu("b-2", "b", "2").priority(5),
        ],
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").priority(10),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt a: default/a-low",
    );
    // Needing the whole node evicts both.
    check(
        &s,
        PodBuilder::new("p").requests("4", "").priority(10),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt a: default/a-mid, default/a-low",
    );
    // Only pods of lower priority are victims.
    check(
        &s,
        PodBuilder::new("p").requests("3", "").priority(5),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt a: default/a-mid, default/a-low",
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").priority(2),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt a: default/a-low",
    );
    check(
        &s,
        PodBuilder::new("p").requests("3", "").priority(2),
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
         1 Insufficient cpu, 1 No preemption victims found for incoming pod.",
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").priority(1),
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
         2 No preemption victims found for incoming pod.",
    );
}

#[test]
fn preemption_fixes_ports_and_anti_affinity() {
    let s = snapshot(
        vec![NodeBuilder::new("n1"), NodeBuilder::new("n2")],
        vec![
            on("proxy-old", "n1").host_port(443, "", "").priority(100),
            on("batch", "n2")
                .host_port(443, "", "")
                .label("app", "batch"),
        ],
    );
    check(
        &s,
        PodBuilder::new("proxy").host_port(443, "", "").priority(50),
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. => preempt n2: default/batch",
    );
    check(
        &s,
        PodBuilder::new("loner")
            .priority(50)
            .pod_anti_affinity(term(&[("app", "batch")], "kubernetes.io/hostname"))
            .node_selector("kubernetes.io/hostname", "n2"),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) didn't match pod anti-affinity rules. => preempt n2: default/batch",
    );
    // An existing pod's anti-affinity is fixed by evicting it.
    let guarded = snapshot(
        vec![NodeBuilder::new("n1")],
        vec![on("guard", "n1").pod_anti_affinity(term(&[("app", "web")], "kubernetes.io/hostname"))],
    );
    check(
        &guarded,
        PodBuilder::new("web").label("app", "web").priority(1),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules. => preempt n1: default/guard",
    );
}

#[test]
fn preemption_prefers_cheaper_nodes() {
    // Victims of lower priority win over fewer victims.
    let s = snapshot(
        vec![NodeBuilder::new("a"), NodeBuilder::new("b")],
        vec![
            cpu("a-1", "a", "4").priority(8),
            cpu("b-1", "b", "2").priority(3),
            cpu("b-2", "b", "2").priority(3),
        ],
    );
    check(
        &s,
        PodBuilder::new("p").requests("4", "").priority(10),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt b: default/b-1, default/b-2",
    );
    // Equal priorities: the node whose victims started last.
    let s = snapshot(
        vec![NodeBuilder::new("a"), NodeBuilder::new("b")],
        vec![
            cpu("old", "a", "4").started(100),
            cpu("new", "b", "4").started(500),
        ],
    );
    check(
        &s,
        PodBuilder::new("p").requests("1", "").priority(1),
        "0/2 nodes are available: 2 Insufficient cpu. => preempt b: default/new",
    );
}

#[test]
fn nominated_pods_keep_their_room() {
    let s = snapshot(
        vec![NodeBuilder::new("n1")],
        vec![
            cpu("running", "n1", "2").priority(100),
            PodBuilder::new("preemptor")
                .requests("2", "")
                .priority(100)
                .nominated("n1"),
        ],
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").priority(100),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod.",
    );
    check(
        &s,
        PodBuilder::new("p").requests("2", "").priority(101),
        "bind n1",
    );
    // The nominated pod itself is not counted twice.
    check(
        &s,
        PodBuilder::new("preemptor")
            .requests("2", "")
            .priority(100)
            .nominated("n1"),
        "bind n1",
    );
}

#[test]
fn nominated_node_is_tried_first_and_waited_for() {
    let s = snapshot(
        vec![NodeBuilder::new("a"), NodeBuilder::new("b")],
        vec![cpu("victim", "b", "4").preempted()],
    );
    // The nominated node fits: it is taken without looking further.
    let decision = schedule(
        &s,
        &PodBuilder::new("p").nominated("a").build(),
        &ScheduleOptions::default(),
    );
    assert!(matches!(&decision, Decision::Bind { node, evaluated_nodes: 1, .. } if node == "a"));
    // Victims still terminating on the nominated node: wait instead of preempting more.
    check(
        &s,
        PodBuilder::new("p").requests("4", "").priority(10).nominated("b").node_selector("kubernetes.io/hostname", "b"),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector. \
         preemption: not eligible due to a terminating pod on the nominated node.",
    );
}

/// 5,000 nodes in 5 zones, some tainted or labelled, 30 pods each; a few hundred
/// pods of several shapes are scheduled one after the other, each binding assumed.
#[test]
fn schedules_hundreds_of_pods_on_five_thousand_nodes() {
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for i in 0..5000 {
        let name = format!("node-{i:04}");
        let mut node = NodeBuilder::new(&name)
            .zone(&format!("zone-{}", i % 5))
            .cpu("16")
            .memory("64Gi");
        if i % 10 == 0 {
            node = node
                .taint("dedicated", "gpu", "NoSchedule")
                .label("gpu", "true");
        }
        if i % 7 == 0 {
            node = node.label("disk", "ssd");
        }
        nodes.push(node.build());
        for j in 0..30 {
            pods.push(
                PodBuilder::new(&format!("existing-{i}-{j}"))
                    .node(&name)
                    .label("app", &format!("app-{}", (i + j) % 97))
                    .requests("250m", "512Mi")
                    .build(),
            );
        }
    }
    let mut s = Snapshot::new(nodes, pods, vec![], vec![]);
    assert_eq!(s.node_count(), 5000);
    let mut options = ScheduleOptions::default();
    for i in 0..300 {
        let mut pod = PodBuilder::new(&format!("new-{i}"))
            .label("app", "new")
            .owner("ReplicaSet", "new", "rs-new")
            .requests("500m", "1Gi");
        match i % 4 {
            0 => {
                pod = pod
                    .toleration("dedicated", "Equal", "gpu", "NoSchedule")
                    .node_selector("gpu", "true")
            }
            1 => pod = pod.preferred_node_affinity(10, node_term("disk", "In", &["ssd"])),
            2 => {
                pod = pod
                    .pod_anti_affinity(term(&[("app", "app-3")], "kubernetes.io/hostname"))
                    .label("app", "app-3")
            }
            _ => {}
        }
        let pod = pod.build();
        let decision = schedule(&s, &pod, &options);
        options.start_index = next_start_index(&decision);
        options.tie_break = options
            .tie_break
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
        let Decision::Bind {
            node,
            evaluated_nodes,
            feasible_nodes,
            ..
        } = decision
        else {
            panic!("new-{i} did not bind: {decision:?}");
        };
        assert!(feasible_nodes <= evaluated_nodes && evaluated_nodes <= 5000);
        let info = s.node_info(&node).expect("bound to a known node");
        let tainted = info.labels().contains_key("gpu");
        assert_eq!(
            tainted,
            i % 4 == 0,
            "new-{i} on {node}: gpu pods and only they go to gpu nodes"
        );
        if i % 4 == 2 {
            let app3_on_node = s
                .pods_on_node(&node)
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app"))
                        .map(String::as_str)
                        == Some("app-3")
                })
                .count();
            assert_eq!(app3_on_node, 0, "anti-affinity of new-{i} broken on {node}");
        }
        let mut bound = pod;
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
        s.add_pod(bound);
        let info = s.node_info(&node).expect("node");
        assert!(info.requested().milli_cpu <= info.allocatable().milli_cpu);
        assert!(info.requested().memory <= info.allocatable().memory);
    }
}
