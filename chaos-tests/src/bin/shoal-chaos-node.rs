//! The node the chaos tests run: the `shoal-node` command line, built as part of this
//! package so its tests can name it (`CARGO_BIN_EXE_shoal-chaos-node`).

fn main() -> std::process::ExitCode {
    shoal_node::cli::main()
}
