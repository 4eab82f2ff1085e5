//! The wgpu context: adapter choice, device with the adapter's limits, precision, pipeline cache and error
//! capture (validation errors and device loss become `anyhow` errors at the next call, never a panic).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::precision::Precision;
use crate::shaders::{Layout, ShaderFamily};

/// What a compiled pipeline is made of (see `Context::pipelines`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    body: &'static str,
    layout: &'static [Layout],
    entry: &'static str,
    precision: Precision,
    defines: String,
}

/// How to choose the adapter and the arithmetic.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Restrict to these backends (`vulkan`, `metal`, `dx12`, `gl`, comma separated). `None`: the env var
    /// `L2O_BACKEND`, else every backend.
    pub backend: Option<String>,
    /// Pick the first adapter whose name contains this (case-insensitive). `None`: `L2O_ADAPTER`, else prefer a
    /// hardware GPU and fall back to a software adapter.
    pub adapter: Option<String>,
    /// f32 everywhere, or f64 where the adapter supports `SHADER_F64`.
    pub precision: Precision,
    /// Kernel-variant overrides in the syntax of `L2O_KERNELS` (`family=variant,...`), applied over it.
    pub kernels: Option<String>,
    /// The rank of this process among the processes of a distributed run on the same host (MPI's local rank):
    /// when no adapter is named, it takes the (local rank mod k)-th of the k hardware GPUs of the preferred
    /// kind and backend, so the ranks of a host spread over its GPUs. `None`: one process, the best adapter.
    pub local_rank: Option<usize>,
}

impl ContextOptions {
    pub fn with_precision(precision: Precision) -> Self {
        Self {
            precision,
            ..Default::default()
        }
    }
}

/// One adapter as seen by [`Context::adapters`], for `l2o info`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub f64: bool,
}

/// A compiled pipeline and the bind-group layout shared by its kernel family.
pub(crate) struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// `family::entry`, for [`Context::profile_report`].
    pub name: String,
}

/// Per-kernel device time when `L2O_PROFILE` is set: by `family::entry`, (dispatches, seconds).
pub(crate) type Profile = Mutex<HashMap<String, (u64, f64)>>;

/// The engine's handle on a device. Cheap to share by reference; all kernels take `&Context`.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Why this adapter was chosen (for `l2o info` and the log).
    pub reason: String,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    precision: Precision,
    /// Compiled pipelines by what they are made of — the family's body and bindings, the entry point, the
    /// precision and the defines — not by the family's name alone, so two families that share a name (a user's
    /// family called `reduce`, say) can never be handed each other's pipelines.
    pipelines: Mutex<HashMap<PipelineKey, Arc<CachedPipeline>>>,
    /// Bind-group layouts by their bindings.
    layouts: Mutex<HashMap<&'static [Layout], wgpu::BindGroupLayout>>,
    error: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
    variants: Mutex<crate::variants::Choices>,
    compile_stats: Mutex<CompileStats>,
    /// Compiled pipelines across processes, or why not (see [`crate::pipeline_cache`]).
    disk_cache: Result<crate::pipeline_cache::DiskCache, &'static str>,
    /// Kernel dispatches recorded so far ([`Context::dispatches`]).
    dispatched: AtomicU64,
    /// `L2O_PROFILE` set: every kernel is submitted alone and waited for, its time summed here.
    pub(crate) profile: Option<Profile>,
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(r) = self.profile_report() {
            eprintln!("{r}");
        }
        // written back when this context built a pipeline since it read the cache
        if let Ok(c) = &self.disk_cache
            && self.compile_stats().pipelines > 0
        {
            c.save();
        }
    }
}

/// What building kernels has cost this context so far (see [`Context::compile_stats`]). Seconds are summed over
/// the threads that built them ([`Context::prepare`] builds several at once), so they can exceed the wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileStats {
    /// Pipelines built (each distinct family × entry × precision × defines once).
    pub pipelines: usize,
    /// Seconds in `create_shader_module` (WGSL parsing and validation by naga).
    pub module_s: f64,
    /// Seconds in `create_compute_pipeline` (translation to the backend and the driver's compiler).
    pub pipeline_s: f64,
}

const NO_ADAPTER_HELP: &str = "no GPU adapter found. On Debian/Ubuntu install the software Vulkan driver: \
`sudo apt-get install -y mesa-vulkan-drivers libvulkan1` (Mesa lavapipe); on macOS (Metal) and Windows (DX12) \
a GPU driver is enough. Check with `l2o info`.";

fn parse_backends(s: &str) -> Result<wgpu::Backends> {
    let b = wgpu::Backends::from_comma_list(s);
    if b.is_empty() {
        bail!("unknown backend list {s:?}: use vulkan, metal, dx12 or gl (comma separated)");
    }
    Ok(b)
}

fn instance_for(backend: Option<&str>) -> Result<(wgpu::Instance, wgpu::Backends)> {
    let backends = match backend {
        Some(b) => parse_backends(b)?,
        None => match std::env::var("L2O_BACKEND") {
            Ok(b) if !b.is_empty() => parse_backends(&b)?,
            _ => wgpu::Backends::all(),
        },
    };
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    Ok((wgpu::Instance::new(desc), backends))
}

fn rank(info: &wgpu::AdapterInfo) -> u32 {
    // Prefer real GPUs, then Vulkan's software adapter (full f64 support) over GL.
    let t = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let b = if info.backend == wgpu::Backend::Gl {
        1
    } else {
        0
    };
    t * 2 + b
}

/// Refuse f64 on an adapter without `SHADER_F64`, and on DX12 in any case. In wgpu 30 only Vulkan adapters
/// offer `SHADER_F64`: never Metal (no doubles in MSL), DX12 or GL — there l2o runs in f32. Should a later
/// wgpu offer it on DX12, the f64 kernels would still not compile there: they take `floor` and `sqrt` of
/// doubles, which Direct3D has no instructions for (see [`crate::naga_backends`]).
pub fn check_precision(
    precision: Precision,
    features: wgpu::Features,
    info: &wgpu::AdapterInfo,
) -> Result<()> {
    if precision == Precision::F64 && info.backend == wgpu::Backend::Dx12 {
        bail!(
            "f64 was requested on the adapter {} ({:?}): l2o's f64 kernels take floor and sqrt of doubles, which \
             Direct3D has no double-precision instructions for; use --precision f32, or a Vulkan adapter \
             (L2O_BACKEND=vulkan) where it has SHADER_F64",
            info.name,
            info.backend
        );
    }
    if precision == Precision::F64 && !features.contains(wgpu::Features::SHADER_F64) {
        bail!(
            "f64 was requested but the adapter {} ({:?}) has no SHADER_F64; use --precision f32 or pick \
             another adapter (Vulkan adapters such as the software adapter lavapipe have f64; Metal, DX12 and GL \
             do not)",
            info.name,
            info.backend
        );
    }
    Ok(())
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

impl Context {
    /// [`Context::new`] in f64 where the chosen adapter has `SHADER_F64`, else in f32 (`options.precision` is
    /// ignored): the most accurate arithmetic this machine offers.
    pub fn new_best_precision(options: &ContextOptions) -> Result<Self> {
        let f64 = ContextOptions {
            precision: Precision::F64,
            ..options.clone()
        };
        Self::new(&f64).or_else(|e64| {
            Self::new(&ContextOptions {
                precision: Precision::F32,
                ..options.clone()
            })
            .map_err(|e32| anyhow!("{e32:#} (and in f64: {e64:#})"))
        })
    }

    /// Every adapter the selected backends expose.
    pub fn adapters(backend: Option<&str>) -> Result<Vec<AdapterSummary>> {
        let (instance, backends) = instance_for(backend)?;
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        Ok(adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                AdapterSummary {
                    name: i.name.clone(),
                    backend: format!("{:?}", i.backend),
                    device_type: format!("{:?}", i.device_type),
                    driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                    f64: a.features().contains(wgpu::Features::SHADER_F64),
                }
            })
            .collect())
    }

    /// Choose an adapter and open a device on it.
    pub fn new(options: &ContextOptions) -> Result<Self> {
        let (instance, backends) = instance_for(options.backend.as_deref())?;
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            bail!("{NO_ADAPTER_HELP}");
        }
        let wanted = options
            .adapter
            .clone()
            .or_else(|| std::env::var("L2O_ADAPTER").ok().filter(|s| !s.is_empty()));
        let (adapter, reason) = if let Some(w) = wanted {
            let lw = w.to_lowercase();
            let pos = adapters
                .iter()
                .position(|a| a.get_info().name.to_lowercase().contains(&lw))
                .ok_or_else(|| {
                    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                    anyhow!(
                        "no adapter name contains {w:?}; available: {}",
                        names.join(", ")
                    )
                })?;
            (
                adapters.swap_remove(pos),
                format!("its name matches {w:?} (L2O_ADAPTER / --adapter)"),
            )
        } else {
            adapters.sort_by_key(|a| rank(&a.get_info()));
            // a rank of a distributed run: spread the host's ranks over its GPUs of the best kind and backend
            let (pick, spread) = match options.local_rank {
                Some(local) if !is_software(&adapters[0].get_info()) => {
                    let best = adapters[0].get_info();
                    let same: Vec<usize> = (0..adapters.len())
                        .filter(|&i| {
                            let a = adapters[i].get_info();
                            rank(&a) == rank(&best) && a.backend == best.backend
                        })
                        .collect();
                    (same[local % same.len()], Some((local, same.len())))
                }
                _ => (0, None),
            };
            let a = adapters.remove(pick);
            let reason = if let Some((local, k)) = spread {
                format!(
                    "local rank {local} of a distributed run: GPU {} of the {k} best on this host",
                    local % k
                )
            } else if is_software(&a.get_info()) {
                log::warn!(
                    "no hardware GPU found: falling back to the software adapter {}",
                    a.get_info().name
                );
                "no hardware GPU was found: software fallback".to_string()
            } else {
                "best hardware GPU (discrete > integrated > virtual)".to_string()
            };
            (a, reason)
        };
        let info = adapter.get_info();
        log::info!(
            "adapter: {} ({:?}, {:?}) — {reason}",
            info.name,
            info.backend,
            info.device_type
        );
        let f64_ok = adapter.features().contains(wgpu::Features::SHADER_F64);
        check_precision(options.precision, adapter.features(), &info)?;
        let mut features = wgpu::Features::empty();
        if f64_ok {
            features |= wgpu::Features::SHADER_F64;
        }
        // compiled pipelines kept across processes where the adapter can (crate::pipeline_cache)
        features |= adapter.features() & wgpu::Features::PIPELINE_CACHE;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("l2o"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("could not open a device on {}", info.name))?;
        Self::build(
            device,
            queue,
            info,
            reason,
            options.precision,
            options.kernels.as_deref(),
        )
    }

    /// Embed l2o in another wgpu program: use its device and queue. f64 kernels need the device to have been
    /// created with `Features::SHADER_F64`.
    pub fn from_wgpu(
        device: wgpu::Device,
        queue: wgpu::Queue,
        precision: Precision,
    ) -> Result<Self> {
        if precision == Precision::F64 && !device.features().contains(wgpu::Features::SHADER_F64) {
            bail!(
                "f64 was requested but the given device was created without Features::SHADER_F64"
            );
        }
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::Other, wgpu::Backend::Noop);
        info.name = "embedded device".into();
        Self::build(
            device,
            queue,
            info,
            "supplied by the host program (Context::from_wgpu)".into(),
            precision,
            None,
        )
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        reason: String,
        precision: Precision,
        kernels: Option<&str>,
    ) -> Result<Self> {
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let e1 = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut g = e1.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some(format!("GPU error: {e}"));
            }
        }));
        let e2 = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut g = e2.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() && reason != wgpu::DeviceLostReason::Destroyed {
                *g = Some(format!(
                    "the GPU device was lost ({reason:?}: {msg}); restart the program"
                ));
            }
        });
        let mut env = crate::variants::env_overrides()?;
        if let Some(k) = kernels {
            env.extend(crate::variants::parse_overrides(k)?);
        }
        let variants = crate::variants::Choices {
            env,
            cache: crate::variants::cached_for(&info),
            ..Default::default()
        };
        let disk_cache = crate::pipeline_cache::open(&device, &info);
        Ok(Self {
            disk_cache,
            dispatched: AtomicU64::new(0),
            variants: Mutex::new(variants),
            limits: device.limits(),
            features: device.features(),
            device,
            queue,
            info,
            reason,
            precision,
            pipelines: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            error,
            next_id: AtomicU64::new(1),
            compile_stats: Mutex::new(CompileStats::default()),
            profile: std::env::var_os("L2O_PROFILE")
                .filter(|v| !v.is_empty() && v != "0")
                .map(|_| Mutex::new(HashMap::new())),
        })
    }

    /// What building kernels has cost so far: how many pipelines, and the seconds spent in shader modules and
    /// in pipeline creation.
    pub fn compile_stats(&self) -> CompileStats {
        *self.compile_stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kernel dispatches recorded by this context so far (every submit and encode): benchmarks print the count
    /// per optimizer step.
    pub fn dispatches(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    /// With `L2O_PROFILE=1` in the environment: device time per kernel (`family::entry`), largest first —
    /// each kernel submitted alone and waited for, so the figures include one submit + wait each and the run is
    /// slower than without (use it to find where the time goes, not for the totals). Printed to stderr when the
    /// context is dropped. `None` when profiling is off.
    pub fn profile_report(&self) -> Option<String> {
        let p = self
            .profile
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&String, &(u64, f64))> = p.iter().collect();
        rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let total: f64 = rows.iter().map(|r| r.1.1).sum();
        let mut s = format!(
            "L2O_PROFILE: {:.3} s of kernels (each submitted alone and waited for)\n",
            total
        );
        for (name, (count, secs)) in rows {
            s += &format!(
                "  {:>8.3} s {:>5.1} % {:>9} × {:>9.1} µs  {name}\n",
                secs,
                100.0 * secs / total.max(1e-300),
                count,
                1e6 * secs / *count as f64
            );
        }
        Some(s)
    }

    pub(crate) fn count_dispatch(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether compiled pipelines are kept across processes here, and where (see [`crate::pipeline_cache`]).
    pub fn pipeline_cache_report(&self) -> crate::pipeline_cache::CacheReport {
        match &self.disk_cache {
            Ok(c) => c.report(),
            Err(why) => crate::pipeline_cache::CacheReport::Off(why),
        }
    }

    /// Build the pipelines `(entry, defines)` of `family` that are not built yet, several at once (a thread
    /// each, all started together): what the first use of a learned optimizer would otherwise compile one after
    /// the other. Compilation runs on the host CPU (naga, then the driver's compiler), so on a many-core host
    /// the start-up becomes that of the largest kernel instead of the sum. Errors are those of
    /// [`Context::pipeline`], the first in `entries` order.
    pub fn prepare(&self, family: &ShaderFamily, entries: &[(&'static str, &str)]) -> Result<()> {
        let missing: Vec<&(&'static str, &str)> = {
            let built = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .filter(|(entry, defines)| !built.contains_key(&self.key(family, entry, defines)))
                .collect()
        };
        if missing.len() < 2 {
            for (entry, defines) in missing {
                self.pipeline(family, entry, defines)?;
            }
            return Ok(());
        }
        std::thread::scope(|s| {
            let jobs: Vec<_> = missing
                .iter()
                .map(|(entry, defines)| s.spawn(move || self.pipeline(family, entry, defines)))
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join()
                        .unwrap_or_else(|_| Err(anyhow!("a kernel build thread panicked")))
                        .map(|_| ())
                })
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn supports_f64(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F64)
    }

    pub fn is_software(&self) -> bool {
        is_software(&self.info)
    }

    /// The most loop iterations one invocation may run, all its loops together, where the adapter has such a
    /// limit: Mesa's software JIT (gallivm: llvmpipe, lavapipe) silently stops every loop of an invocation after
    /// LP_MAX_TGSI_LOOP_ITERATIONS = 65,535 ("shared between every loop in a shader"). Kernels in which one
    /// thread walks long loops (the fused L-BFGS and L-BFGS-π kernels) size themselves by it. `None`: no limit.
    pub fn loop_budget(&self) -> Option<usize> {
        self.is_software().then_some(65_535)
    }

    /// Whether an invocation running `iterations` loop iterations stays within [`Context::loop_budget`].
    pub fn within_loop_budget(&self, iterations: usize) -> bool {
        self.loop_budget().is_none_or(|budget| iterations <= budget)
    }

    /// A one-line description: "llvmpipe (LLVM 15.0.6, 256 bits) [Vulkan, Cpu]".
    pub fn describe(&self) -> String {
        format!(
            "{} [{:?}, {:?}]",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The variant of kernel family `family` for this adapter and precision (see [`crate::variants`]):
    /// `L2O_KERNELS`, else the autotune cache, else `cpu_default` on a software adapter and `gpu_default`
    /// elsewhere. Resolved once per context; every answer is in [`Context::variant_report`].
    pub fn variant(
        &self,
        family: &str,
        candidates: &[&str],
        gpu_default: &str,
        cpu_default: &str,
    ) -> Result<String> {
        let key = format!("{family}:{}", self.precision);
        let default = if self.is_software() {
            cpu_default
        } else {
            gpu_default
        };
        self.variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(&key, candidates, default)
    }

    /// Record the variant of a family that resolves its own choice (names outside a fixed list).
    pub fn record_variant(&self, family: &str, variant: &str, source: crate::variants::Source) {
        self.variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(family, variant, source);
    }

    /// The override or cached choice for `family` (with or without the `:precision` suffix), if any.
    pub fn variant_hint(&self, family: &str) -> Option<(String, crate::variants::Source)> {
        let key = format!("{family}:{}", self.precision);
        let v = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        let pick = |m: &std::collections::BTreeMap<String, String>| {
            m.get(&key).or_else(|| m.get(family)).cloned()
        };
        pick(&v.env)
            .map(|x| (x, crate::variants::Source::Env))
            .or_else(|| pick(&v.cache).map(|x| (x, crate::variants::Source::Cache)))
    }

    /// The kernel variants this context has used, e.g. `reduce:f32=seq, lstm[H20 D2]:f32=unrolled-…`.
    pub fn variant_report(&self) -> String {
        self.variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The first GPU error (validation, out of memory, device lost) seen since the last call, as an error.
    pub fn check(&self) -> Result<()> {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match g.take() {
            Some(msg) => Err(anyhow!(msg)),
            None => Ok(()),
        }
    }

    /// Block until the queue is idle, then report any GPU error.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU failed: {e}"))?;
        self.check()
    }

    fn layout(&self, family: &ShaderFamily) -> wgpu::BindGroupLayout {
        let mut layouts = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        layouts
            .entry(family.layout)
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = family
                    .layout
                    .iter()
                    .enumerate()
                    .map(|(i, l)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: match l {
                                Layout::Uniform => wgpu::BufferBindingType::Uniform,
                                Layout::Read => {
                                    wgpu::BufferBindingType::Storage { read_only: true }
                                }
                                Layout::ReadWrite => {
                                    wgpu::BufferBindingType::Storage { read_only: false }
                                }
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                self.device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some(family.name),
                        entries: &entries,
                    })
            })
            .clone()
    }

    /// What the pipeline of `entry` of `family` with `defines` is made of, in this context's precision.
    fn key(&self, family: &ShaderFamily, entry: &'static str, defines: &str) -> PipelineKey {
        PipelineKey {
            body: family.body,
            layout: family.layout,
            entry,
            precision: self.precision,
            defines: defines.to_string(),
        }
    }

    /// The pipeline for `entry` of a kernel family, compiled once per precision (and per set of `defines`,
    /// WGSL constant declarations placed before the body, e.g. the hidden size) and cached.
    pub(crate) fn pipeline(
        &self,
        family: &ShaderFamily,
        entry: &'static str,
        defines: &str,
    ) -> Result<Arc<CachedPipeline>> {
        let key = self.key(family, entry, defines);
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let layout = self.layout(family);
        let src = family.source_with(self.precision, defines);
        let src_bytes = src.len();
        let t0 = std::time::Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(family.name),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let t1 = std::time::Instant::now();
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(family.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: self.disk_cache.as_ref().ok().map(|c| &c.cache),
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "building kernel {}::{entry} ({}) failed: {e}",
                family.name,
                self.precision
            );
        }
        let t2 = std::time::Instant::now();
        {
            let mut st = self.compile_stats.lock().unwrap_or_else(|p| p.into_inner());
            st.pipelines += 1;
            st.module_s += (t1 - t0).as_secs_f64();
            st.pipeline_s += (t2 - t1).as_secs_f64();
        }
        log::debug!(
            "compiled {}::{entry} ({}, {:.1} kB of WGSL): shader module {:.1} ms, pipeline {:.1} ms",
            family.name,
            self.precision,
            src_bytes as f64 / 1e3,
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
        let p = Arc::new(CachedPipeline {
            pipeline,
            layout,
            name: format!("{}::{entry}", family.name),
        });
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 on a Metal, DX12 or GL adapter (wgpu 30 offers `SHADER_F64` on none) is refused with a message naming
    /// the adapter, its backend and the way out; on DX12 also with the feature; f32 is accepted everywhere.
    #[test]
    fn f64_refused_on_metal_and_dx12() {
        for backend in [wgpu::Backend::Metal, wgpu::Backend::Dx12, wgpu::Backend::Gl] {
            let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, backend);
            info.name = "Some GPU".into();
            let e = check_precision(Precision::F64, wgpu::Features::empty(), &info)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("Some GPU")
                    && e.contains(&format!("{backend:?}"))
                    && e.contains("SHADER_F64")
                    && e.contains("--precision f32"),
                "{e}"
            );
            check_precision(Precision::F32, wgpu::Features::empty(), &info).unwrap();
            check_precision(Precision::F32, wgpu::Features::SHADER_F64, &info).unwrap();
            // DX12: refused even with the feature (no double floor/sqrt in Direct3D)
            let with = check_precision(Precision::F64, wgpu::Features::SHADER_F64, &info);
            if backend == wgpu::Backend::Dx12 {
                let e = with.unwrap_err().to_string();
                assert!(
                    e.contains("Direct3D") && e.contains("--precision f32"),
                    "{e}"
                );
            } else {
                with.unwrap();
            }
        }
        let vulkan = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        check_precision(Precision::F64, wgpu::Features::SHADER_F64, &vulkan).unwrap();
    }
}
