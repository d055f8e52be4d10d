//! The `mcp-gateway` binary: parses the command line and runs it. `anyhow` lives only here and in `cli`.

/// mimalloc instead of glibc malloc: profiling the proxy path showed ~15% of CPU in glibc's allocator
/// (hyper's per-message buffer growth on both connections); see BENCHMARKS.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcp_gateway::cli::main()
}
