//! `scripts/setup.sh` decides by the files each consumer loads. Device-free: the script inspects fake system
//! images (`L2O_SETUP_ROOT`) with `--check`, which reports what it would install and installs nothing.
//!
//! The case that broke a fresh machine: Mesa's packages pull in `libclang-cpp.so.N` (the C++ interface), which an
//! earlier glob `libclang*.so*` took for libclang; bindgen (rsmpi's build script) needs the C API
//! (`libclang.so`, `libclang-N.so[.M]`, package libclang-dev) and clang's builtin headers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fake system image under the test's temporary folder with `files` (empty files; a trailing `*` marks an
/// executable).
fn image(name: &str, files: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("setup-images")
        .join(name);
    let _ = std::fs::remove_dir_all(&root);
    for f in files {
        let (f, exe) = match f.strip_suffix('*') {
            Some(f) => (f, true),
            None => (*f, false),
        };
        let p = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
        if exe {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// `bash scripts/setup.sh --check ARGS` against `root`: (exit code, the packages it reports missing).
fn check(root: &Path, args: &[&str]) -> (i32, Vec<String>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .args(args)
        .env("L2O_SETUP_ROOT", root)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "setup.sh --check exited {code}: {stdout}{stderr}"
    );
    let missing = stdout
        .lines()
        .find_map(|l| l.strip_prefix("setup: missing: "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    if code == 0 {
        assert!(stdout.contains("nothing missing"), "{stdout}");
    }
    (code, missing)
}

/// Everything the build and the tests load on Debian 12 (amd64), except libclang.
const BASE: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
    "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
    "/usr/lib/x86_64-linux-gnu/libEGL.so.1",
    "/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0",
    "/usr/bin/python3*",
    "/usr/lib/python3.11/venv/__init__.py",
    "/usr/lib/python3.11/ensurepip/__init__.py",
    "/usr/bin/mpicc*",
    "/usr/bin/mpirun*",
    "/usr/lib/x86_64-linux-gnu/pkgconfig/ompi.pc",
    "/usr/bin/pkg-config*",
    // what Mesa pulls in: the C++ interface of clang, not what bindgen loads
    "/usr/lib/llvm-14/lib/libclang-cpp.so.14",
    "/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
];

/// What libclang-dev (and libclang1-14, libclang-common-14-dev) add.
const LIBCLANG: &[&str] = &[
    "/usr/lib/llvm-14/lib/libclang.so",
    "/usr/lib/x86_64-linux-gnu/libclang-14.so.1",
    "/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
];

#[test]
fn only_libclang_cpp_is_not_libclang() {
    let root = image("only-libclang-cpp", BASE);
    assert_eq!(
        check(&root, &["--mpi"]),
        (1, vec!["libclang-dev".to_string()])
    );
    // without --mpi nothing needs libclang
    assert_eq!(check(&root, &[]), (0, vec![]));
}

#[test]
fn a_complete_system_needs_nothing() {
    let files: Vec<&str> = BASE.iter().chain(LIBCLANG).copied().collect();
    assert_eq!(check(&image("complete", &files), &["--mpi"]), (0, vec![]));
}

#[test]
fn libclang_without_builtin_headers_is_incomplete() {
    let files: Vec<&str> = BASE.iter().chain(&LIBCLANG[..2]).copied().collect();
    assert_eq!(
        check(&image("no-stddef", &files), &["--mpi"]),
        (1, vec!["libclang-dev".to_string()])
    );
}

#[test]
fn each_consumer_by_its_own_files() {
    let all: Vec<&str> = BASE.iter().chain(LIBCLANG).copied().collect();
    let without = |drop: &[&str]| -> Vec<&str> {
        all.iter()
            .copied()
            .filter(|f| !drop.iter().any(|d| f.contains(d)))
            .collect()
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("no-icd", &["icd.d"], &["mesa-vulkan-drivers", "libvulkan1"]),
        (
            "no-loader",
            &["libvulkan.so"],
            &["mesa-vulkan-drivers", "libvulkan1"],
        ),
        (
            "no-egl-mesa",
            &["libEGL_mesa"],
            &["libegl1", "libegl-mesa0", "libgl1-mesa-dri"],
        ),
        (
            "no-venv",
            &["venv/"],
            &["python3", "python3-venv", "python3-pip"],
        ),
        (
            "no-ompi-pc",
            &["ompi.pc"],
            &["libopenmpi-dev", "openmpi-bin"],
        ),
        ("no-mpicc", &["mpicc"], &["libopenmpi-dev", "openmpi-bin"]),
        ("no-pkg-config", &["pkg-config"], &["pkg-config"]),
    ];
    for (name, drop, want) in cases {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            check(&image(name, &without(drop)), &["--mpi"]),
            (1, want),
            "{name}"
        );
    }
    // an empty image needs everything
    let (code, missing) = check(&image("empty", &[]), &["--mpi"]);
    assert_eq!(code, 1);
    for p in [
        "mesa-vulkan-drivers",
        "libegl1",
        "python3-venv",
        "libopenmpi-dev",
        "pkg-config",
        "libclang-dev",
    ] {
        assert!(missing.iter().any(|m| m == p), "{p} not in {missing:?}");
    }
}

#[test]
fn unknown_options_are_refused() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --frobnicate"));
}
