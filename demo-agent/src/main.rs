//! `shoal-demo-agent`: a deterministic ACP agent on stdin/stdout (see the library docs).

fn main() -> std::process::ExitCode {
    shoal_demo_agent::run_blocking()
}
