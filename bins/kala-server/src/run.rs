//! `kala-server run "command"`: runs a command exactly as a local job
//! would, and reports the result as Kala does.

use std::process::ExitCode;

pub async fn run(command: Vec<String>) -> ExitCode {
    match command.as_slice() {
        [] => {
            eprintln!("Must include a command");
            ExitCode::FAILURE
        }
        [cmd] => {
            let attempt = kala_executor::run_command(cmd, None).await;
            if attempt.success {
                println!("Command Succeeded!");
                println!("Output:  {}", attempt.output.trim());
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "Command Failed with err: {}",
                    attempt.error.unwrap_or_default()
                );
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("Must only include a command (quote it: kala-server run \"echo hi\")");
            ExitCode::FAILURE
        }
    }
}
