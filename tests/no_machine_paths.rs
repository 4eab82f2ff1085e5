//! Nothing the project commits names a folder of the machine it was made on: the tables, plots, CSVs and pages
//! under docs/, README.md and BENCHMARKS.md carry no absolute path and no link outside the repository, and the
//! checkpoints' JSON headers store no data folder (a checkpoint records its MNIST by file names and SHA-256).

use std::path::{Path, PathBuf};

/// Top-level folders of absolute paths as they appear on Linux, macOS and clusters.
const ROOTS: &[&str] = &[
    "home", "work", "tmp", "root", "Users", "mnt", "scratch", "data", "var", "opt", "srv", "media",
    "nfs", "gpfs", "lustre", "private", "Volumes",
];

/// Absolute paths (`/home/…`, `C:\…`) and links out of the repository (`../shared/`) in `text`.
fn machine_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    for (i, _) in text.match_indices('/') {
        // a path starts a token: after whitespace, a quote, a bracket, '=' or ':' — not inside a URL or a
        // relative path like docs/results/
        let before = if i == 0 { b' ' } else { b[i - 1] };
        if !matches!(
            before,
            b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'(' | b'[' | b'=' | b':' | b'`' | b'<' | b'>'
        ) {
            continue;
        }
        if before == b':' && text[i..].starts_with("//") {
            continue; // a URL scheme
        }
        let rest = &text[i + 1..];
        let first: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if ROOTS.contains(&first.as_str()) && rest[first.len()..].starts_with('/') {
            out.push(text[i..].chars().take(60).collect());
        }
    }
    for (i, _) in text.match_indices("../shared") {
        out.push(text[i..].chars().take(60).collect());
    }
    for w in text.split_whitespace() {
        let w = w.trim_start_matches(['"', '\'', '(', '`']);
        if w.len() > 3
            && w.as_bytes()[1] == b':'
            && w.as_bytes()[2] == b'\\'
            && w.as_bytes()[0].is_ascii_alphabetic()
        {
            out.push(w.chars().take(60).collect());
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The UTF-8 JSON header of a checkpoint (see `l2o_meta::checkpoint`'s file layout).
fn checkpoint_header(bytes: &[u8]) -> String {
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    String::from_utf8(bytes[20..20 + len].to_vec()).unwrap()
}

#[test]
fn the_scanner_finds_what_it_must() {
    for bad in [
        "best φ of /work/study/pi/train/checkpoint.l2o (epoch 12)",
        "\"data\":\"/home/me/mnist\"",
        "see [notes](../shared/notes/a.md)",
        "in C:\\Users\\me\\run",
        "(/Users/me/run.l2o)",
    ] {
        assert!(!machine_paths(bad).is_empty(), "missed: {bad}");
    }
    for good in [
        "best φ of docs/results/l2l-mnist/l2l-mnist.l2o [best_phi_sha256 91a63b48ad99]",
        "https://github.com/home/x and out/l2l/checkpoint.l2o",
        "θ ← θ + g, 1/2 ‖x‖², n/a, f/f_0",
    ] {
        assert!(
            machine_paths(good).is_empty(),
            "false alarm: {good}: {:?}",
            machine_paths(good)
        );
    }
}

#[test]
fn no_machine_paths_in_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    files(&root.join("docs"), &mut all);
    let mut found = Vec::new();
    let mut checked = 0;
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        let text = if p.extension().and_then(|e| e.to_str()) == Some("l2o") {
            let h = checkpoint_header(&bytes);
            assert!(
                !h.contains("\"data\":"),
                "{}: the checkpoint stores a data folder",
                p.display()
            );
            h
        } else {
            match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => continue, // binary (none today)
            }
        };
        checked += 1;
        for m in machine_paths(&text) {
            found.push(format!("{}: {m}", p.strip_prefix(root).unwrap().display()));
        }
    }
    assert!(checked > 30, "only {checked} files checked");
    assert!(
        found.is_empty(),
        "machine paths or links outside the repository:\n{}",
        found.join("\n")
    );
}
