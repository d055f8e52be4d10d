//! The `mcp-gateway` binary: parses the command line and runs it. `anyhow` lives only here and in `cli`.

fn main() -> std::process::ExitCode {
    mcp_gateway::cli::main()
}
