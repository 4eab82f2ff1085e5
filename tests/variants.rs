//! Kernel-variant selection end to end: the autotuner writes the on-disk cache for this adapter, a new context
//! resolves the family from it, an explicit override beats the cache, and every choice is reported. Then the
//! pipeline cache beside it: written when a context closes, read by the next, and a corrupt or truncated file is
//! ignored and replaced. (One test in its own binary: it points L2O_CACHE_DIR at a temporary directory for the
//! whole process.)

use l2o::engine::pipeline_cache::CacheReport;
use l2o::engine::variants::Source;
use l2o::engine::{Context, ContextOptions, Precision, ScalarOut};

/// ⟨x, x⟩ for x = (1, 2, 3) on `c`: builds (or takes from the cache) the reduce pipeline, and checks the answer.
fn dot_is_14(c: &Context) {
    let x = c.upload("x", &[1.0, 2.0, 3.0]).unwrap();
    let out = c.zeros("out", 1).unwrap();
    let d = l2o::engine::dot(
        c,
        3,
        1,
        x.view(3),
        x.view(3),
        ScalarOut {
            buf: &out,
            stride: 1,
            col: 0,
        },
        None,
    )
    .unwrap();
    c.submit(&d).unwrap();
    assert_eq!(c.read(&out).unwrap()[0], 14.0);
}

/// What a new context read from the pipeline cache (None: no cache on this adapter).
fn loaded(c: &Context) -> Option<usize> {
    match c.pipeline_cache_report() {
        CacheReport::On { loaded, .. } => Some(loaded),
        CacheReport::Off(why) => {
            assert!(!why.is_empty());
            None
        }
    }
}

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
    drop((c, o, bad, probe));

    // The pipeline cache: contexts that built pipelines wrote it when they closed (where the adapter has one).
    let c = Context::new(&base).unwrap();
    let Some(first) = loaded(&c) else {
        // no Features::PIPELINE_CACHE (GL, or a Vulkan driver without it): nothing is written
        assert!(!dir.join("pipelines").exists());
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    assert!(
        first > 0,
        "the contexts above built pipelines and saved them"
    );
    let file = std::fs::read_dir(dir.join("pipelines"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    dot_is_14(&c);
    drop(c);
    let good = std::fs::read(&file).unwrap();
    // a corrupt file and a truncated one are ignored (the kernels still build and compute), then replaced
    for bad in [
        b"not a pipeline cache".to_vec(),
        good[..good.len() / 2].to_vec(),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let c = Context::new(&base).unwrap();
        assert_eq!(loaded(&c), Some(bad.len()));
        dot_is_14(&c);
        drop(c);
        let now = std::fs::read(&file).unwrap();
        assert_ne!(
            now, bad,
            "a context that built a pipeline rewrites the cache"
        );
        assert!(now.len() >= 32, "{} bytes", now.len());
    }
    // L2O_CACHE_DIR=off: no cache
    // SAFETY: as above, the only test of this binary.
    unsafe { std::env::set_var("L2O_CACHE_DIR", "off") };
    let c = Context::new(&base).unwrap();
    assert_eq!(loaded(&c), None);
    let _ = std::fs::remove_dir_all(&dir);
}
