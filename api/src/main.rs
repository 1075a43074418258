//! The `keyledger` binary: `serve`, `migrate`, `projections rebuild`, ...

/// mimalloc instead of glibc malloc: see [`api::Allocator`].
#[global_allocator]
static GLOBAL: api::Allocator = api::Allocator;

fn main() -> std::process::ExitCode {
    api::cli::main()
}
