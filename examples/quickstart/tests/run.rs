//! The README's embedding example runs as written: three runs within
//! seconds, each printed as it finishes.

use std::process::Command;

#[test]
fn the_readme_example_shows_three_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .current_dir(dir.path())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["Succeeded: hello from greeter"; 3], "{stdout}");
}

/// The program in the README is this example's source, byte for byte.
#[test]
fn the_readme_shows_this_program() {
    let readme = include_str!("../../../README.md");
    let source = include_str!("../src/main.rs");
    assert!(
        readme.contains(&format!("```rust\n{source}```")),
        "README.md's embedding example differs from examples/quickstart/src/main.rs"
    );
}
