// Precision prelude (f32). Prepended to every kernel family by the engine; kernels are written once for `Real`.
alias Real = f32;
const REAL_MAX: Real = 3.4028234e38;
// NaN and ±Inf fail `abs(x) <= REAL_MAX` (WGSL has no isnan/isinf).
fn is_finite(x: Real) -> bool { return abs(x) <= REAL_MAX; }
fn r_exp(x: Real) -> Real { return exp(x); }
fn r_log(x: Real) -> Real { return log(x); }
// tanh with the argument clamped (tanh(±15) = ±1 in f32; some drivers return NaN for |z| ≳ 44).
fn r_tanh(z: Real) -> Real { return tanh(clamp(z, -15.0, 15.0)); }
// Reals in a 64 KiB uniform array of vec4 (learned-optimizer parameters).
const PHI_VEC4: u32 = 4096u;
