//! `aisc`: the AISC Subsidy Back Office service and its staff commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    aisc_api::cli::main()
}
