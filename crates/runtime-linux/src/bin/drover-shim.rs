//! The container shim as its own program, for tests of the runtimes (the
//! drover binary runs the same code as `drover internal-shim CONFIG` and
//! `drover internal-shim-zygote`): `drover-shim CONFIG`, or
//! `drover-shim internal-shim-zygote`.

fn main() {
    let first = std::env::args_os().nth(1).unwrap_or_default();
    if first == "internal-shim-zygote" {
        std::process::exit(runtime_linux::zygote::zygote_main());
    }
    std::process::exit(runtime_linux::shim::shim_main(std::path::Path::new(&first)));
}
