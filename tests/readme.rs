//! README.md and .ci/run must agree on the test command (CI runs exactly what the README tells users to run).

#[test]
fn ci_runs_the_readme_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    let cmd = ci
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap()
        .trim();
    assert!(cmd.contains("cargo test"), "last line of .ci/run: {cmd}");
    assert!(
        readme.lines().any(|l| l.trim() == cmd),
        "README.md must contain the line `{cmd}`"
    );
}
