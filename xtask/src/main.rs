//! Project automation: `cargo xtask <task>`. Tasks are added as they are needed.

mod gen_protobuf;

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "gen-protobuf" => gen_protobuf::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  gen-protobuf  regenerate crates/protobuf/src/generated.rs from k8s-pb"
            );
            std::process::exit(2);
        }
    }
}
