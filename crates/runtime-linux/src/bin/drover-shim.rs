//! The container shim as its own program, for tests of the process runtime
//! (the drover binary runs the same code as `drover internal-shim`).

fn main() {
    let config = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    std::process::exit(runtime_linux::shim::shim_main(&config));
}
