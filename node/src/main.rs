//! `shoal-node`: run a Shoal node (see [`shoal_node::cli`]).

fn main() -> std::process::ExitCode {
    shoal_node::cli::main()
}
