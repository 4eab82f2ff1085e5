//! Metal and DX12 without a Mac or a Windows machine: every kernel run through naga's MSL and HLSL backends the
//! way wgpu 30 does on those platforms, no device needed.
//!
//! What wgpu does with a WGSL module on Metal or DX12, mirrored step by step:
//! 1. `wgpu-core` parses and validates it with the capabilities of the device's features
//!    (`wgpu_naga_bridge::features_to_naga_capabilities`). l2o requests only `SHADER_F64` (where the adapter has
//!    it), so: f32 — [`naga::valid::Capabilities::empty`], f64 — `FLOAT64`. [`check`] also intersects them with
//!    what the backend's writer supports (`naga::back::{msl,hlsl}::supported_capabilities`).
//! 2. `wgpu-hal` specialises the module to one entry point (`naga::back::pipeline_constants::process_overrides`,
//!    which compacts a module with several entry points) and writes it with the options of the pipeline layout:
//!    - Metal (`wgpu-hal/src/metal/device.rs`, `load_shader`, `create_pipeline_layout`): `msl::Options` with the
//!      OS's language version, one buffer slot per binding in binding order (storage buffers `mutable` unless
//!      read-only), the sizes buffer after them, no fake bindings, `Restrict` bounds checks, zero-initialised
//!      workgroup memory, loop bounding and integer-division checks (`ShaderRuntimeChecks::checked`, what
//!      `Device::create_shader_module` asks for); `PipelineOptions` naming the entry point.
//!    - DX12 (`wgpu-hal/src/dx12/device.rs`, `load_shader`, `create_pipeline_layout`): `hlsl::Options` with the
//!      shader model the adapter and compiler allow (FXC: 5.1; DXC: 6.0 and up), uniform buffers in `b` registers,
//!      read-only storage in `t`, read-write storage in `u` (space 0, in binding order), the special-constants
//!      buffer (`NUM_WORK_GROUPS`, always requested by `wgpu-core`) in the `b` register after the uniforms, no
//!      fake bindings, restricted indexing, zero-initialised workgroup memory and loop bounding.
//!
//! The platform compilers (Metal's, FXC/DXC) are not run: what is checked is that naga translates; a kernel
//! that naga cannot translate fails at pipeline creation on every Mac or Windows machine.
//!
//! f64: Metal has no doubles (naga's MSL writer rejects `f64`, `wgpu-hal`'s Metal adapter never offers
//! `SHADER_F64`); `wgpu-hal` 30's DX12 adapter does not offer `SHADER_F64` either, although naga's HLSL writer
//! translates `f64`. [`check`] asserts that MSL refuses the f64 kernels, writes them to HLSL, and records the
//! built-in functions they apply to doubles that Direct3D has no instruction for ([`d3d_double_gaps`]: the f64
//! prelude's `floor`, and `sqrt`). So l2o refuses f64 on Metal, DX12 and GL when the context is created
//! ([`crate::context::check_precision`]: no `SHADER_F64`; on DX12 also with it), and runs f32 there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use naga::back::{hlsl, msl};
use naga::valid::{Capabilities, ValidationFlags, Validator};

use crate::precision::Precision;
use crate::shaders::{Layout, ShaderFamily};

/// A platform shader language and the version wgpu writes it for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Metal Shading Language `(major, minor)`: wgpu picks it from the OS (macOS 10.13 / iOS 11: 2.0 … macOS 26:
    /// 4.0).
    Msl(u8, u8),
    /// HLSL for a shader model: 5.1 where wgpu compiles with FXC, 6.0 and up with DXC.
    Hlsl(hlsl::ShaderModel),
}

impl Target {
    /// The versions checked: MSL 2.0 (macOS 10.13 / iOS 11), 2.4 (macOS 12) and 4.0 (macOS 26, the newest wgpu
    /// 30 writes); HLSL for FXC (shader model 5.1) and for DXC's lowest model (6.0).
    pub const ALL: [Target; 5] = [
        Target::Msl(2, 0),
        Target::Msl(2, 4),
        Target::Msl(4, 0),
        Target::Hlsl(hlsl::ShaderModel::V5_1),
        Target::Hlsl(hlsl::ShaderModel::V6_0),
    ];

    /// The wgpu backend this language is for.
    pub fn backend(self) -> wgpu::Backend {
        match self {
            Target::Msl(..) => wgpu::Backend::Metal,
            Target::Hlsl(_) => wgpu::Backend::Dx12,
        }
    }

    /// What naga's writer for this language supports.
    pub fn supported_capabilities(self) -> Capabilities {
        match self {
            Target::Msl(..) => msl::supported_capabilities(),
            Target::Hlsl(_) => hlsl::supported_capabilities(),
        }
    }

    /// Whether naga's writer has doubles (MSL: no; HLSL: yes, shader model 5.1 and up).
    pub fn has_f64(self) -> bool {
        self.supported_capabilities()
            .contains(Capabilities::FLOAT64)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Msl(a, b) => write!(f, "MSL {a}.{b} (Metal)"),
            Target::Hlsl(m) => write!(f, "HLSL {} (DX12)", m.to_str()),
        }
    }
}

/// The naga capabilities `wgpu-core` validates with on a device with the features l2o requests: only
/// `SHADER_F64`, which a Metal or DX12 adapter never offers (so f32 gets none; f64 would need `FLOAT64`).
pub fn wgpu_capabilities(precision: Precision) -> Capabilities {
    match precision {
        Precision::F32 => Capabilities::empty(),
        Precision::F64 => Capabilities::FLOAT64,
    }
}

/// A parsed and validated module, or the error naga reported.
type Parsed = Result<(naga::Module, naga::valid::ModuleInfo), String>;

/// Parse and validate as `wgpu-core` does (front-end and validator with the same capabilities).
fn parse_validate(src: &str, caps: Capabilities) -> Parsed {
    let mut options = naga::front::wgsl::Options::new();
    options.capabilities = caps;
    let module = naga::front::wgsl::Frontend::new_with_options(options)
        .parse(src)
        .map_err(|e| e.emit_to_string(src))?;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| e.emit_to_string(src))?;
    Ok((module, info))
}

/// `wgpu-hal`'s Metal binding map for a family's bind group 0 (compute stage).
fn msl_resources(layout: &[Layout]) -> msl::EntryPointResources {
    let mut resources = msl::BindingMap::default();
    for (i, l) in layout.iter().enumerate() {
        resources.insert(
            naga::ResourceBinding {
                group: 0,
                binding: i as u32,
            },
            msl::BindTarget {
                buffer: Some(i as msl::Slot),
                mutable: *l == Layout::ReadWrite,
                ..Default::default()
            },
        );
    }
    let has_storage = layout.iter().any(|l| *l != Layout::Uniform);
    msl::EntryPointResources {
        resources,
        immediates_buffer: None,
        sizes_buffer: has_storage.then_some(layout.len() as msl::Slot),
    }
}

fn task_dispatch_limits() -> Option<naga::back::TaskDispatchLimits> {
    let l = wgpu::Limits::default();
    Some(naga::back::TaskDispatchLimits {
        max_mesh_workgroups_per_dim: l.max_mesh_workgroups_per_dimension,
        max_mesh_workgroups_total: l.max_mesh_workgroup_total_count,
    })
}

/// `wgpu-hal`'s DX12 `hlsl::Options` for a family's bind group 0.
fn hlsl_options(layout: &[Layout], shader_model: hlsl::ShaderModel) -> hlsl::Options {
    let mut binding_map = hlsl::BindingMap::default();
    let (mut cbv, mut srv, mut uav) = (0u32, 0u32, 0u32);
    for (i, l) in layout.iter().enumerate() {
        let reg = match l {
            Layout::Uniform => &mut cbv,
            Layout::Read => &mut srv,
            Layout::ReadWrite => &mut uav,
        };
        binding_map.insert(
            naga::ResourceBinding {
                group: 0,
                binding: i as u32,
            },
            hlsl::BindTarget {
                space: 0,
                register: *reg,
                binding_array_size: None,
                dynamic_storage_buffer_offsets_index: None,
                restrict_indexing: false,
            },
        );
        *reg += 1;
    }
    hlsl::Options {
        shader_model,
        binding_map,
        fake_missing_bindings: false,
        special_constants_binding: Some(hlsl::BindTarget {
            space: 0,
            register: cbv,
            binding_array_size: None,
            dynamic_storage_buffer_offsets_index: None,
            restrict_indexing: false,
        }),
        zero_initialize_workgroup_memory: true,
        restrict_indexing: true,
        force_loop_bounding: true,
        task_dispatch_limits: task_dispatch_limits(),
        mesh_shader_primitive_indices_clamp: true,
        ray_query_initialization_tracking: true,
        ..Default::default()
    }
}

/// Write one entry point of a validated module for `target` as `wgpu-hal` does; returns the platform source.
fn write_entry(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    layout: &[Layout],
    entry: &str,
    target: Target,
) -> Result<String, String> {
    let stage = naga::ShaderStage::Compute;
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((stage, entry)),
        &naga::back::PipelineConstants::default(),
    )
    .map_err(|e| format!("pipeline constants: {e:?}"))?;
    match target {
        Target::Msl(major, minor) => {
            let policy = naga::proc::BoundsCheckPolicy::Restrict;
            let options = msl::Options {
                lang_version: (major, minor),
                inline_samplers: Default::default(),
                spirv_cross_compatibility: false,
                fake_missing_bindings: false,
                per_entry_point_map: msl::EntryPointResourceMap::from([(
                    entry.to_owned(),
                    msl_resources(layout),
                )]),
                bounds_check_policies: naga::proc::BoundsCheckPolicies {
                    index: policy,
                    buffer: policy,
                    image_load: policy,
                    binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
                },
                zero_initialize_workgroup_memory: true,
                force_loop_bounding: true,
                task_dispatch_limits: task_dispatch_limits(),
                mesh_shader_primitive_indices_clamp: true,
                emit_int_div_checks: true,
                ray_query_initialization_tracking: true,
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((stage, entry.to_owned())),
                allow_and_force_point_size: false,
                vertex_pulling_transform: true,
                vertex_buffer_mappings: vec![],
                binding_array_length_map: Default::default(),
            };
            let (src, ti) = msl::write_string(&module, &info, &options, &pipeline)
                .map_err(|e| format!("{e} ({e:?})"))?;
            match ti.entry_point_names.first() {
                Some(Ok(_)) => Ok(src),
                Some(Err(e)) => Err(format!("{e} ({e:?})")),
                None => Err("no entry point written".into()),
            }
        }
        Target::Hlsl(model) => {
            let options = hlsl_options(layout, model);
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((stage, entry.to_owned())),
            };
            let mut src = String::new();
            let mut w = hlsl::Writer::new(&mut src, &options, &pipeline);
            let mut ri = w
                .write(&module, &info, None)
                .map_err(|e| format!("{e} ({e:?})"))?;
            if ri.entry_point_names.len() != 1 {
                return Err(format!(
                    "{} entry points written, wgpu expects one",
                    ri.entry_point_names.len()
                ));
            }
            ri.entry_point_names
                .pop()
                .unwrap()
                .map_err(|e| format!("{e} ({e:?})"))?;
            Ok(src)
        }
    }
}

/// The built-in math functions a module applies to f64 values that Direct3D's double-precision instructions
/// lack. D3D11/12 doubles (shader model 5.x `d*` instructions; DXIL's f64 overloads) have +, −, ×, ÷, fma,
/// rcp, min, max, comparisons and conversions — no square root, rounding, exponential, logarithm or
/// trigonometry — so `abs`, `min`, `max`, `clamp`, `saturate`, `fma` and `sign` (a comparison) are the only
/// ones allowed here. Vulkan has the same gap for exp/log (GLSL.std.450), which the f64 prelude works around.
pub fn d3d_double_gaps(module: &naga::Module, info: &naga::valid::ModuleInfo) -> BTreeSet<String> {
    use naga::MathFunction as M;
    let mut gaps = BTreeSet::new();
    let mut scan = |f: &naga::Function, fi: &naga::valid::FunctionInfo| {
        for (_, e) in f.expressions.iter() {
            if let naga::Expression::Math { fun, arg, .. } = *e {
                let ty = fi[arg].ty.inner_with(&module.types);
                let double = ty.scalar() == Some(naga::Scalar::F64);
                let allowed = matches!(
                    fun,
                    M::Abs | M::Min | M::Max | M::Clamp | M::Saturate | M::Fma | M::Sign
                );
                if double && !allowed {
                    gaps.insert(format!("{fun:?}").to_lowercase());
                }
            }
        }
    };
    for (h, f) in module.functions.iter() {
        scan(f, &info[h]);
    }
    for (i, ep) in module.entry_points.iter().enumerate() {
        scan(&ep.function, info.get_entry_point(i));
    }
    gaps
}

/// What [`check`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// (kernel source, precision, target) combinations translated.
    pub translated: usize,
    /// Entry points written, summed over those.
    pub entry_points: usize,
    /// (kernel source, f64, MSL) combinations naga refused, as expected (Metal has no doubles).
    pub refused_f64: usize,
    /// Per family, the built-in functions its f64 kernels apply to doubles that Direct3D has no double
    /// instruction for ([`d3d_double_gaps`]): naga writes them to HLSL, but FXC/DXC could not compile them.
    pub d3d_double_gaps: BTreeMap<String, BTreeSet<String>>,
}

impl std::ops::AddAssign for Checked {
    fn add_assign(&mut self, o: Checked) {
        self.translated += o.translated;
        self.entry_points += o.entry_points;
        self.refused_f64 += o.refused_f64;
        for (k, v) in o.d3d_double_gaps {
            self.d3d_double_gaps.entry(k).or_default().extend(v);
        }
    }
}

/// Translate one kernel source (a family with `defines`, the entry points `entries`; `variant` names it in
/// errors) in f32 and f64 to every [`Target`], as wgpu would: an error names kernel, variant, precision, target
/// and entry point. f64 on a target without doubles (MSL) must be refused by validation with the target's
/// capabilities (it would be a bug in this check if naga accepted it: wgpu could never run it).
pub fn check(
    family: &ShaderFamily,
    variant: &str,
    defines: &str,
    entries: &[&str],
) -> anyhow::Result<Checked> {
    check_in(
        family,
        variant,
        defines,
        entries,
        &[Precision::F32, Precision::F64],
    )
}

/// [`check`] in the given precisions only.
pub fn check_in(
    family: &ShaderFamily,
    variant: &str,
    defines: &str,
    entries: &[&str],
    precisions: &[Precision],
) -> anyhow::Result<Checked> {
    let mut done = Checked::default();
    for &precision in precisions {
        let src = family.source_with(precision, defines);
        // targets with the same capabilities share one parse and validation (the long generated kernels take
        // seconds to validate)
        let mut parsed: Option<(Capabilities, Parsed)> = None;
        for target in Target::ALL {
            let what = || format!("{} [{variant}], {precision}, {target}", family.name);
            let caps = wgpu_capabilities(precision) & target.supported_capabilities();
            if parsed.as_ref().is_none_or(|(c, _)| *c != caps) {
                parsed = Some((caps, parse_validate(&src, caps)));
            }
            let result = &parsed.as_ref().unwrap().1;
            if precision == Precision::F64 && !target.has_f64() {
                match result {
                    Err(e) if e.contains("FLOAT64") || e.contains("f64") => {
                        done.refused_f64 += 1;
                        continue;
                    }
                    Err(e) => anyhow::bail!("{}: refused, but not for f64: {e}", what()),
                    Ok(_) => anyhow::bail!(
                        "{}: validated without doubles although it is an f64 kernel",
                        what()
                    ),
                }
            }
            let (module, info) = result
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{}: parse/validate: {e}", what()))?;
            if precision == Precision::F64 && target == Target::ALL[Target::ALL.len() - 1] {
                let gaps = d3d_double_gaps(module, info);
                if !gaps.is_empty() {
                    done.d3d_double_gaps
                        .entry(family.name.to_string())
                        .or_default()
                        .extend(gaps);
                }
            }
            for entry in entries {
                write_entry(module, info, family.layout, entry, target)
                    .map_err(|e| anyhow::anyhow!("{}: entry point {entry}: {e}", what()))?;
                done.entry_points += 1;
            }
            done.translated += 1;
        }
    }
    Ok(done)
}

/// Every kernel source the engine ships, in every variant its launchers choose: (family, variant, defines).
/// The loop-form L2L kernels (`lstm`) come for every hidden size 1..=32 and input dimension 1, 2.
pub fn engine_sources() -> Vec<(&'static ShaderFamily, String, String)> {
    use crate::kernels::{lincomb, reduce::Reduction};
    use crate::shaders::*;
    let mut v: Vec<(&'static ShaderFamily, String, String)> = Vec::new();
    for f in engine_families() {
        v.push((f, "default".into(), f.default_defines.into()));
    }
    for r in [Reduction::Tree, Reduction::Seq] {
        for f in [&REDUCE, &HILBERT] {
            v.push((f, format!("{r:?}"), r.defines().into()));
        }
    }
    for l in [lincomb::Layout::Grid, lincomb::Layout::Seg] {
        v.push((&LINCOMB, format!("{l:?}"), l.defines().into()));
    }
    for h in 1..=32 {
        for d in [1, 2] {
            v.push((
                &LSTM,
                format!("H = {h}, D = {d}"),
                format!("const H: u32 = {h}u; const D: u32 = {d}u;"),
            ));
        }
    }
    v
}

/// Where a kernel's f64 HLSL uses double operations Direct3D lacks, l2o must refuse f64 on DX12 even on an
/// adapter offering `SHADER_F64` (a future wgpu): panics otherwise. For the tests.
pub fn assert_dx12_f64_refused(done: &Checked) {
    if done.d3d_double_gaps.is_empty() {
        return;
    }
    let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Dx12);
    info.name = "a DX12 GPU with doubles".into();
    let refused =
        crate::context::check_precision(Precision::F64, wgpu::Features::SHADER_F64, &info);
    assert!(
        refused.is_err(),
        "f64 kernels use double operations Direct3D lacks ({:?}) but l2o would run them on DX12",
        done.d3d_double_gaps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine kernel, every variant, f32 and f64, translates to MSL and HLSL as wgpu would on Metal and
    /// DX12 (f64 refused by MSL); the generated kernels of the layers above are checked in the top-level
    /// `tests/naga_backends.rs`.
    #[test]
    fn backends_translate_engine_kernels() {
        let mut done = Checked::default();
        for (f, variant, defines) in engine_sources() {
            done += check(f, &variant, &defines, f.entries).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(done.translated > 0 && done.refused_f64 > 0);
        eprintln!("{done:?}");
        assert_dx12_f64_refused(&done);
    }

    /// The check is not vacuous: naga's MSL writer refuses doubles, a missing binding in the layout is a
    /// translation error (wgpu-hal writes with no fake bindings), and an error names kernel, variant,
    /// precision, target and entry point.
    #[test]
    fn backends_translate_reports_errors() {
        assert!(!Target::Msl(2, 0).has_f64() && Target::Hlsl(hlsl::ShaderModel::V5_1).has_f64());
        static UNBOUND: ShaderFamily = ShaderFamily {
            name: "unbound",
            body: "@group(0) @binding(0) var<storage, read_write> x: array<Real>;\n\
                   @group(0) @binding(1) var<storage, read_write> y: array<Real>;\n\
                   @compute @workgroup_size(1) fn main() { x[0] = y[0]; }",
            // one binding fewer than the WGSL declares
            layout: &[Layout::ReadWrite],
            entries: &["main"],
            default_defines: "",
        };
        let e = check(&UNBOUND, "v1", "", &["main"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unbound [v1], f32, MSL 2.0 (Metal): entry point main"),
            "{e}"
        );
    }
}
