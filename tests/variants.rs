//! Kernel-variant selection end to end: the autotuner writes the on-disk cache for this adapter, a new context
//! resolves the family from it, an explicit override beats the cache, and every choice is reported. (One test
//! in its own binary: it points L2O_CACHE_DIR at a temporary directory for the whole process.)

use l2o::engine::variants::Source;
use l2o::engine::{Context, ContextOptions, Precision};

#[test]
fn autotune_cache_then_override_then_default() {
    let dir = std::env::temp_dir().join(format!("l2o-variants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // SAFETY: the only test of this binary; no other thread reads the environment concurrently.
    unsafe { std::env::set_var("L2O_CACHE_DIR", &dir) };
    let base = ContextOptions {
        backend: Some(std::env::var("L2O_BACKEND").unwrap_or_else(|_| "vulkan".into())),
        adapter: None,
        precision: Precision::F32,
        kernels: None,
        local_rank: None,
    };
    let Ok(probe) = Context::new(&base) else {
        assert_eq!(
            std::env::var("L2O_SKIP_GPU_TESTS").as_deref(),
            Ok("1"),
            "no device for the tests"
        );
        return;
    };
    // no cache yet: the device-type default
    let default = if probe.is_software() { "seg" } else { "grid" };
    assert_eq!(
        probe
            .variant("lincomb", &["grid", "seg"], "grid", "seg")
            .unwrap(),
        default
    );
    assert_eq!(probe.variant_hint("lincomb"), None);
    // the autotuner times both layouts and caches the fastest for this adapter
    let (rows, notes) = l2o_bench::autotune::autotune(
        &base,
        &["lincomb".to_string()],
        true,
        true,
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    let best = rows[0].best().to_string();
    assert_eq!(rows[0].times.len(), 2, "both candidates timed");
    assert!(notes.iter().any(|n| n.contains("lincomb:f32")), "{notes:?}");
    let text = std::fs::read_to_string(dir.join("variants.json")).unwrap();
    assert!(
        text.contains(&probe.info.name) && text.contains("lincomb:f32"),
        "{text}"
    );
    // a new context on the same adapter takes the cached choice, and says so
    let c = Context::new(&base).unwrap();
    assert_eq!(
        c.variant_hint("lincomb"),
        Some((best.clone(), Source::Cache))
    );
    assert_eq!(
        c.variant("lincomb", &["grid", "seg"], "grid", "seg")
            .unwrap(),
        best
    );
    assert!(
        c.variant_report().contains("(autotune cache)"),
        "{}",
        c.variant_report()
    );
    // an explicit override beats the cache
    let other = if best == "seg" { "grid" } else { "seg" };
    let o = Context::new(&ContextOptions {
        kernels: Some(format!("lincomb={other}")),
        ..base.clone()
    })
    .unwrap();
    assert_eq!(
        o.variant("lincomb", &["grid", "seg"], "grid", "seg")
            .unwrap(),
        other
    );
    assert!(o.variant_report().contains("L2O_KERNELS"));
    // an override naming no variant is an error that lists them
    let bad = Context::new(&ContextOptions {
        kernels: Some("lincomb=fastest".into()),
        ..base.clone()
    })
    .unwrap();
    let e = bad
        .variant("lincomb", &["grid", "seg"], "grid", "seg")
        .unwrap_err()
        .to_string();
    assert!(e.contains("grid, seg"), "{e}");
    // a corrupt cache is ignored (defaults again), not an error
    std::fs::write(dir.join("variants.json"), "{ not json").unwrap();
    let c = Context::new(&base).unwrap();
    assert_eq!(
        c.variant("lincomb", &["grid", "seg"], "grid", "seg")
            .unwrap(),
        default
    );
    let _ = std::fs::remove_dir_all(&dir);
}
