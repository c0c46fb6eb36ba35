//! The simulation in CI: many seeds, with and without faults, each checked
//! for invariant violations after every committed change; and replay: the
//! same seed gives the same run, change for change.

use sim::{run, Faults, SimConfig};

/// Seeds per test; `DROVER_SIM_SEEDS` raises it for a longer soak.
fn seeds(default: u64) -> u64 {
    std::env::var("DROVER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn small(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(6, 40, seed);
    c.pods_per_deployment = 10;
    c
}

fn faulty(seed: u64) -> SimConfig {
    let mut c = small(seed);
    c.faults = Faults {
        write_conflict: 0.05,
        write_error: 0.02,
        watch_drop: 0.02,
        crash_rate: 0.05,
        lost_nodes: 1,
    };
    c
}

fn check_all(name: &str, configs: impl Iterator<Item = SimConfig>) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for config in configs {
        runs += 1;
        let report = run(&config);
        if !report.ok() {
            failures.push(format!(
                "seed {} ({name}): {}\n  replay: drover sim --nodes {} --pods {} --pods-per-deployment {}{} --seed {}\n  log:\n    {}",
                config.seed,
                report
                    .violations
                    .iter()
                    .map(|v| format!("[rev {}] {}", v.revision, v.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                config.nodes,
                config.pods,
                config.pods_per_deployment,
                if config.faults.any() { " --faults" } else { "" },
                config.seed,
                report.log.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs violated invariants:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn seeds_without_faults() {
    check_all("no faults", (1..=seeds(100)).map(small));
}

#[test]
fn seeds_with_faults() {
    check_all("faults", (1..=seeds(100)).map(faulty));
}

#[test]
fn a_seed_replays_exactly() {
    for config in [small(7), faulty(7)] {
        let first = run(&config);
        let second = run(&config);
        assert!(
            first.steps > 100,
            "the run did something: {} steps",
            first.steps
        );
        assert_eq!(
            (first.steps, first.digest),
            (second.steps, second.digest),
            "seed {} diverged between two runs (faults: {})",
            config.seed,
            config.faults.any()
        );
    }
}

#[test]
fn different_seeds_differ() {
    let a = run(&faulty(1));
    let b = run(&faulty(2));
    assert_ne!(a.digest, b.digest, "two seeds gave the identical run");
}
