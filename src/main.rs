//! The `authgate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    authgate::cli::run()
}
