// Shared by every kernel family (prepended after the precision prelude).
const NONE: u32 = 0xffffffffu;
// Per-problem scalar columns shared by every optimizer (mirrored by `l2o_engine::cols`):
// f, ‖g‖², iterations taken, function evaluations.
const F: u32 = 0u;
const G2: u32 = 1u;
const ITER: u32 = 2u;
const NFEV: u32 = 3u;
