// Precision prelude (f64). Prepended to every kernel family by the engine; kernels are written once for `Real`.
// WGSL exp/log on f64 return garbage on Vulkan (GLSL.std.450 defines them for 16/32-bit floats only), so the
// transcendentals here use only + − × ÷, floor and f32 builtins; tested against Rust's f64 on the device.
alias Real = f64;
const L2O_REAL_MAX: Real = 1.7976931348623157e308;
// The machine epsilon 2⁻⁵² (the spacing of Reals at 1).
const L2O_EPS: Real = 2.220446049250313e-16;
fn l2o_is_finite(x: Real) -> bool { return abs(x) <= L2O_REAL_MAX; }

// 2^k for integer k in [-1100, 1100], by binary powering (exact).
fn l2o_pow2i(k: i32) -> f64 {
    var base: f64 = 2.0;
    if (k < 0) { base = 0.5; }
    var e: u32 = u32(abs(k));
    var r: f64 = 1.0;
    loop {
        if (e == 0u) { break; }
        if ((e & 1u) == 1u) { r = r * base; }
        base = base * base;
        e = e >> 1u;
    }
    return r;
}

// exp: x = k ln2 + r with |r| <= ln2/2 (Cody–Waite split of ln2), exp(r) by its Taylor series to degree 14
// (truncation < 1e-18 relative), times 2^k. Saturates to 0 below -745 and to L2O_REAL_MAX·2 (= +Inf) above 709.8.
fn l2o_exp(x: f64) -> f64 {
    if (!(x == x)) { return x; }
    if (x > 709.78) { let big: f64 = L2O_REAL_MAX; return big * (x - 708.0); }
    if (x < -745.2) { return f64(0.0); }
    let k = floor(x * 1.4426950408889634 + 0.5);
    let r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    var p: f64 = 1.0 / 87178291200.0; // 1/14!
    p = p * r + 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let ki = i32(k);
    // Split the scaling so 2^k never overflows or underflows on its own.
    let k1 = ki / 2;
    return p * l2o_pow2i(k1) * l2o_pow2i(ki - k1);
}

// log for x in [1e-37, 1e37] (the f32 normal range; outside it the result is clamped there): an f32 first guess
// refined by two Newton steps y <- y - 1 + x·exp(-y) (quadratic convergence: 1e-7 -> 1e-14 -> 1e-16 relative).
fn l2o_log(x: f64) -> f64 {
    if (!(x > 0.0)) { if (x == 0.0) { return -L2O_REAL_MAX * (2.0 - x); } return (x - x) / (x - x); }
    let xc = clamp(x, 1e-37, 1e37);
    var y: f64 = f64(log(f32(xc)));
    y = y - 1.0 + xc * l2o_exp(-y);
    y = y - 1.0 + xc * l2o_exp(-y);
    return y;
}

// tanh: odd Taylor series to z⁹ for |z| < 0.02 (truncation < 1e-19 relative), else 1 − 2/(e^{2z} + 1)
// (cancellation costs ≤ ~1e-14 relative at |z| = 0.02); saturates to ±1 for |z| > 20.
fn l2o_tanh(z: f64) -> f64 {
    let a = abs(z);
    if (a < 0.02) {
        let z2 = z * z;
        return z * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))));
    }
    if (a > 20.0) { return sign(z); }
    return 1.0 - 2.0 / (l2o_exp(2.0 * z) + 1.0);
}
// Reals in a 64 KiB uniform array of vec4 (learned-optimizer parameters).
const L2O_PHI_VEC4: u32 = 2048u;
