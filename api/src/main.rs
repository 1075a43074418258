//! The `keyledger` binary: `serve`, `migrate`, `projections rebuild`, ...

fn main() -> std::process::ExitCode {
    api::cli::main()
}
