//! The extension module that `cargo test --workspace` compiles beside the Rust tests (this test makes cargo
//! build it, with the workspace's features, so scripts/test-python.sh packages it without a second build of
//! wgpu and the l2o crates): the shared library exists next to the test binaries' folder and exports the
//! module's init function `PyInit__l2o` (the module is `l2o._l2o`), while leaving the interpreter's own
//! symbols to the interpreter that loads it (it must not link libpython).

use std::path::PathBuf;

fn module_path() -> PathBuf {
    // cargo writes it beside the test binary, target/<profile>/deps/lib_l2o.so (and copies it to
    // target/<profile>/ only when the library itself is the requested target, as in `cargo build`)
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let name = if cfg!(target_os = "macos") {
        "lib_l2o.dylib"
    } else if cfg!(windows) {
        "_l2o.dll"
    } else {
        "lib_l2o.so"
    };
    deps.join(name)
}

#[test]
fn the_extension_module_is_built_and_exports_its_init_function() {
    let p = module_path();
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
    assert!(
        has(b"PyInit__l2o"),
        "{} does not export PyInit__l2o",
        p.display()
    );
    if cfg!(target_os = "linux") {
        // no DT_NEEDED entry for libpython: the names of needed libraries are in the dynamic string table
        assert!(!has(b"libpython3."), "{} links libpython", p.display());
    }
}
