//! `shoal-node`: run a Shoal node (see [`shoal_node::cli`]).

fn main() -> std::process::ExitCode {
    shoal_node::cli::main()
}

/// jemalloc, not the system allocator: with glibc's, malloc and free were about a fifth of the
/// node's CPU under write load, and jemalloc gives 1.1-1.4x the writes per second at about
/// the same memory (docs/PERFORMANCE.md, "Throughput").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
