// Precision prelude (f32). Prepended to every kernel family by the engine; kernels are written once for `Real`.
alias Real = f32;
const L2O_REAL_MAX: Real = 3.4028234e38;
// The machine epsilon 2⁻²³ (the spacing of Reals at 1).
const L2O_EPS: Real = 1.1920929e-7;
// NaN and ±Inf fail `abs(x) <= L2O_REAL_MAX` (WGSL has no isnan/isinf).
fn l2o_is_finite(x: Real) -> bool { return abs(x) <= L2O_REAL_MAX; }
fn l2o_exp(x: Real) -> Real { return exp(x); }
fn l2o_log(x: Real) -> Real { return log(x); }
// tanh with the argument clamped (tanh(±15) = ±1 in f32; some drivers return NaN for |z| ≳ 44).
fn l2o_tanh(z: Real) -> Real { return tanh(clamp(z, -15.0, 15.0)); }
// Reals in a 64 KiB uniform array of vec4 (learned-optimizer parameters).
const L2O_PHI_VEC4: u32 = 4096u;
