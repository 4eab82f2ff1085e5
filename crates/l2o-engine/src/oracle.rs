//! f64 CPU references of the engine kernels. Tests compare the device results with these.

/// ⟨a, b⟩ summed pairwise (so the oracle itself loses no digits for large n).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.len() <= 32 {
        return a.iter().zip(b).map(|(x, y)| x * y).sum();
    }
    let h = a.len() / 2;
    dot(&a[..h], &b[..h]) + dot(&a[h..], &b[h..])
}

pub fn sum(a: &[f64]) -> f64 {
    if a.len() <= 32 {
        return a.iter().sum();
    }
    let h = a.len() / 2;
    sum(&a[..h]) + sum(&a[h..])
}

/// Row-major k×k Gram matrix of `vecs`.
pub fn gram(vecs: &[&[f64]]) -> Vec<f64> {
    let k = vecs.len();
    let mut g = vec![0.0; k * k];
    for i in 0..k {
        for j in i..k {
            let v = dot(vecs[i], vecs[j]);
            g[i * k + j] = v;
            g[j * k + i] = v;
        }
    }
    g
}

/// out ← keep·out + Σ c_j v_j.
pub fn lincomb(out: &mut [f64], keep: Option<f64>, terms: &[(f64, &[f64])]) {
    for i in 0..out.len() {
        let mut v = keep.map_or(0.0, |k| k * out[i]);
        for (c, x) in terms {
            v += c * x[i];
        }
        out[i] = v;
    }
}

/// Relative error |a − b| / max(|b|, floor) — the measure every tolerance in the tests uses.
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / b.abs().max(floor)
}

/// Largest relative error of a vector against a reference, scaled by the reference's max magnitude.
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
}
