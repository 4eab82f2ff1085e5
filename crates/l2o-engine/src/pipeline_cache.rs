//! Compiled pipelines kept across processes: wgpu's [`wgpu::PipelineCache`] (a Vulkan `VkPipelineCache`),
//! loaded when a [`Context`](crate::Context) opens and written back when it closes.
//!
//! Where: `pipelines/<key>.bin` in l2o's cache directory ([`crate::variants::cache_dir`]: `L2O_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/l2o`, else `~/.cache/l2o`; `L2O_CACHE_DIR=off` disables it), the key being
//! [`wgpu::util::pipeline_cache_key`] — the backend, vendor and device. The data carry the driver's own
//! validation header (vendor, device, driver version, pipeline-cache UUID) and wgpu's; data that do not match
//! this adapter and driver, or that are truncated or corrupt, are ignored (`fallback: true`) and replaced at the
//! next write, so a driver update or a copied cache directory costs one cold start, never an error.
//!
//! What it saves depends on the driver. On Vulkan GPU drivers the data hold the compiled machine code, so a
//! second process skips the driver's compiler. Mesa's lavapipe 22.3 (the software adapter of Debian 12)
//! implements `vkGetPipelineCacheData` as a 32-byte header with no contents: there the cache is written but
//! saves nothing, and start-up is what [`Context::prepare`](crate::Context::prepare) makes it (measured in
//! BENCHMARKS.md, "Start-up"). wgpu offers pipeline caches on Vulkan only (`Features::PIPELINE_CACHE`); on
//! Metal, DX12 and GL this module does nothing (those drivers keep their own shader caches).

use std::path::PathBuf;

/// The pipeline cache of one context and the file it came from.
pub(crate) struct DiskCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Bytes read from the file at start (0: no file, or caching off).
    pub loaded: usize,
}

/// What [`DiskCache`] did, for run reports (`l2o train` prints it).
#[derive(Clone, Debug)]
pub enum CacheReport {
    /// No pipeline cache: the adapter lacks `Features::PIPELINE_CACHE`, or `L2O_CACHE_DIR=off`.
    Off(&'static str),
    /// A cache file read at start (bytes; 0 when there was none).
    On { path: PathBuf, loaded: usize },
}

impl std::fmt::Display for CacheReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheReport::Off(why) => write!(f, "no pipeline cache: {why}"),
            CacheReport::On { path, loaded: 0 } => {
                write!(f, "pipeline cache {} (new)", path.display())
            }
            CacheReport::On { path, loaded } => {
                write!(f, "pipeline cache {} ({loaded} bytes read)", path.display())
            }
        }
    }
}

/// The file of this adapter's cache, or why there is none.
fn file_for(info: &wgpu::AdapterInfo) -> Result<PathBuf, &'static str> {
    let key =
        wgpu::util::pipeline_cache_key(info).ok_or("wgpu keeps pipeline caches on Vulkan only")?;
    let dir =
        crate::variants::cache_dir().ok_or("caching is off (L2O_CACHE_DIR=off or no HOME)")?;
    Ok(dir.join("pipelines").join(format!("{key}.bin")))
}

/// Open the cache of this adapter: the file's data when it has some (the driver checks them), else empty.
pub(crate) fn open(
    device: &wgpu::Device,
    info: &wgpu::AdapterInfo,
) -> Result<DiskCache, &'static str> {
    if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
        return Err("the device has no Features::PIPELINE_CACHE");
    }
    let path = file_for(info)?;
    let data = std::fs::read(&path).ok();
    // SAFETY: wgpu requires the data to come from `PipelineCache::get_data` of a compatible adapter or to be
    // rejected by validation; with `fallback: true` wgpu and the driver check the headers (vendor, device,
    // driver version, cache UUID) and start empty on any mismatch. The file is only ever written by `save`
    // below, from `get_data`, atomically.
    let cache = unsafe {
        device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
            label: Some("l2o pipelines"),
            data: data.as_deref(),
            fallback: true,
        })
    };
    Ok(DiskCache {
        cache,
        path,
        loaded: data.map_or(0, |d| d.len()),
    })
}

impl DiskCache {
    pub fn report(&self) -> CacheReport {
        CacheReport::On {
            path: self.path.clone(),
            loaded: self.loaded,
        }
    }

    /// Write the cache's data back (atomically). Failures are logged, never raised: a cache is an optimisation.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        match crate::variants::write_atomic(&self.path, &data) {
            Ok(()) => log::debug!(
                "pipeline cache: wrote {} bytes to {}",
                data.len(),
                self.path.display()
            ),
            Err(e) => log::warn!("pipeline cache not saved: {e:#}"),
        }
    }
}
