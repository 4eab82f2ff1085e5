//! Per-adapter kernel variants: which of a kernel family's implementations runs on this adapter.
//!
//! What is fastest on the software adapter (few barriers, long per-thread loops, contiguous elements per thread)
//! is not what is fastest on a GPU (tree reductions in workgroup memory, coalesced loads), so several families
//! have variants — the same equations, tested against the same f64 oracle, differing in how work is split and
//! therefore in the order of their sums. To keep "same seed + same adapter ⇒ same bits", a variant is never
//! chosen by timing during a run. It is resolved once per adapter, in this order:
//!
//! 1. `L2O_KERNELS` — comma-separated `family=variant` overrides, e.g. `L2O_KERNELS=reduce=tree,lincomb=seg`;
//! 2. the on-disk cache written by the autotuner (`l2o autotune`, [`save_choice`]): `variants.json` in
//!    `L2O_CACHE_DIR`, else `$XDG_CACHE_HOME/l2o`, else `~/.cache/l2o`, keyed by the adapter's name, backend,
//!    driver and device type (`L2O_CACHE_DIR=off` disables the cache);
//! 3. the family's default for the adapter's device type (software adapter or GPU).
//!
//! Every resolution is recorded; [`Context::variant_report`](crate::Context::variant_report) lists them, and
//! `l2o train`, `l2o run` and `l2o bench` print it, so a result always names the kernels that produced it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

/// Where a choice came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Env,
    Cache,
    Default,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Env => "L2O_KERNELS",
            Source::Cache => "autotune cache",
            Source::Default => "default",
        }
    }
}

/// The overrides of `L2O_KERNELS` (`family=variant,...`).
pub fn env_overrides() -> Result<BTreeMap<String, String>> {
    match std::env::var("L2O_KERNELS") {
        Ok(s) => parse_overrides(&s),
        Err(_) => Ok(BTreeMap::new()),
    }
}

/// Parse `family=variant,...` (the syntax of `L2O_KERNELS` and `ContextOptions::kernels`).
pub fn parse_overrides(s: &str) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            bail!("L2O_KERNELS: {item:?} is not family=variant (e.g. L2O_KERNELS=reduce=tree)");
        };
        m.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(m)
}

/// l2o's cache directory — `L2O_CACHE_DIR`, else `$XDG_CACHE_HOME/l2o`, else `~/.cache/l2o` — or `None` when
/// caching is off (`L2O_CACHE_DIR=off`) or no directory is known. The variant choices and the compiled
/// pipelines ([`crate::pipeline_cache`]) live there.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var("L2O_CACHE_DIR") {
        Ok(d) if d == "off" => None,
        Ok(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => match std::env::var("XDG_CACHE_HOME") {
            Ok(d) if !d.is_empty() => Some(PathBuf::from(d).join("l2o")),
            _ => Some(
                PathBuf::from(std::env::var("HOME").ok()?)
                    .join(".cache")
                    .join("l2o"),
            ),
        },
    }
}

/// The cache file of the variant choices, or `None` when caching is off or no cache directory is known.
pub fn cache_path() -> Option<PathBuf> {
    Some(cache_dir()?.join("variants.json"))
}

/// Write `bytes` to `path` atomically (a temporary file of this process beside it, then a rename), creating the
/// directory: a reader never sees half a file, and concurrent writers leave one whole file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The key of an adapter in the cache.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | {:?} | {} {} | {:?}",
        info.name, info.backend, info.driver, info.driver_info, info.device_type
    )
}

fn read_cache() -> BTreeMap<String, BTreeMap<String, String>> {
    let Some(path) = cache_path() else {
        return BTreeMap::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeMap::new();
    };
    match parse_cache(&text) {
        Ok(m) => m,
        Err(e) => {
            log::warn!(
                "ignoring the kernel-variant cache {}: {e:#} (delete it or rerun `l2o autotune`)",
                path.display()
            );
            BTreeMap::new()
        }
    }
}

/// The cache format: `{"version": 1, "adapters": {adapter key: {family: variant}}}`.
fn parse_cache(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let v: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    if v.get("version").and_then(|x| x.as_u64()) != Some(1) {
        bail!("unknown cache version");
    }
    let mut out = BTreeMap::new();
    if let Some(ad) = v.get("adapters").and_then(|a| a.as_object()) {
        for (k, fams) in ad {
            let mut m = BTreeMap::new();
            for (f, c) in fams.as_object().context("adapter entry is not an object")? {
                m.insert(
                    f.clone(),
                    c.as_str().context("variant is not a string")?.to_string(),
                );
            }
            out.insert(k.clone(), m);
        }
    }
    Ok(out)
}

/// The cached choices for one adapter.
pub fn cached_for(info: &wgpu::AdapterInfo) -> BTreeMap<String, String> {
    read_cache().remove(&adapter_key(info)).unwrap_or_default()
}

/// Store `family = variant` for this adapter in the cache (atomically: write a temporary file, rename).
pub fn save_choice(info: &wgpu::AdapterInfo, family: &str, variant: &str) -> Result<PathBuf> {
    let path = cache_path().context(
        "no cache directory: set L2O_CACHE_DIR (or HOME / XDG_CACHE_HOME), or not L2O_CACHE_DIR=off",
    )?;
    let mut all = read_cache();
    all.entry(adapter_key(info))
        .or_default()
        .insert(family.to_string(), variant.to_string());
    let json = serde_json::json!({ "version": 1, "adapters": all });
    write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok(path)
}

/// Every choice made in this process (all contexts), for the report a command prints at its end.
static PROCESS: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());

fn note(family: &str, variant: &str, src: Source) {
    let v = if src == Source::Default {
        variant.to_string()
    } else {
        format!("{variant} ({})", src.name())
    };
    PROCESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(family.to_string(), v);
}

/// The kernel variants used anywhere in this process so far, `family=variant, …` (sorted), or "" if none.
pub fn process_report() -> String {
    PROCESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(f, v)| format!("{f}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Choices resolved so far on one context (family → (variant, source)).
#[derive(Debug, Default)]
pub struct Choices {
    pub env: BTreeMap<String, String>,
    pub cache: BTreeMap<String, String>,
    pub made: BTreeMap<String, (String, Source)>,
}

impl Choices {
    /// Resolve `family` (a key like `reduce:f32`; overrides and cache entries may also name the family without
    /// the precision) among `candidates`, with `default` when nothing else applies.
    pub fn resolve(&mut self, family: &str, candidates: &[&str], default: &str) -> Result<String> {
        if let Some((v, _)) = self.made.get(family) {
            return Ok(v.clone());
        }
        let base = family.split(':').next().unwrap_or(family);
        let pick = |m: &BTreeMap<String, String>| m.get(family).or_else(|| m.get(base)).cloned();
        let (v, src) = if let Some(v) = pick(&self.env) {
            if !candidates.contains(&v.as_str()) {
                bail!(
                    "L2O_KERNELS: {base}={v} is not a variant of {base}; choose one of {}",
                    candidates.join(", ")
                );
            }
            (v, Source::Env)
        } else if let Some(v) = pick(&self.cache).filter(|v| candidates.contains(&v.as_str())) {
            (v, Source::Cache)
        } else {
            (default.to_string(), Source::Default)
        };
        self.made.insert(family.to_string(), (v.clone(), src));
        note(family, &v, src);
        Ok(v)
    }

    /// Record a choice made elsewhere (families whose variants are open-ended, like the L2L kernels).
    pub fn record(&mut self, family: &str, variant: &str, src: Source) {
        self.made
            .insert(family.to_string(), (variant.to_string(), src));
        note(family, variant, src);
    }

    pub fn report(&self) -> String {
        self.made
            .iter()
            .map(|(f, (v, s))| {
                if *s == Source::Default {
                    format!("{f}={v}")
                } else {
                    format!("{f}={v} ({})", s.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order_is_env_then_cache_then_default() {
        let mut c = Choices::default();
        c.cache.insert("reduce".into(), "tree".into());
        c.env.insert("lincomb".into(), "seg".into());
        assert_eq!(
            c.resolve("reduce:f32", &["tree", "seq"], "seq").unwrap(),
            "tree"
        );
        assert_eq!(
            c.resolve("lincomb:f32", &["grid", "seg"], "grid").unwrap(),
            "seg"
        );
        assert_eq!(
            c.resolve("twoloop:f32", &["fused", "dispatches"], "fused")
                .unwrap(),
            "fused"
        );
        // a stale cache entry naming an unknown variant falls back to the default
        c.cache.insert("maps".into(), "gone".into());
        assert_eq!(c.resolve("maps", &["a", "b"], "b").unwrap(), "b");
        // an override naming an unknown variant is an error that lists the candidates
        c.env.insert("x".into(), "nope".into());
        let e = c.resolve("x", &["a", "b"], "a").unwrap_err().to_string();
        assert!(e.contains("a, b"), "{e}");
        let r = c.report();
        assert!(
            r.contains("reduce:f32=tree (autotune cache)")
                && r.contains("lincomb:f32=seg (L2O_KERNELS)"),
            "{r}"
        );
    }

    #[test]
    fn cache_files_round_trip_and_bad_files_are_reported() {
        let m =
            parse_cache(r#"{"version": 1, "adapters": {"gpu": {"reduce:f32": "tree"}}}"#).unwrap();
        assert_eq!(m["gpu"]["reduce:f32"], "tree");
        assert!(parse_cache("{").is_err());
        assert!(parse_cache(r#"{"version": 7}"#).is_err());
        assert!(parse_cache(r#"{"version": 1, "adapters": {"gpu": {"reduce": 3}}}"#).is_err());
    }
}
