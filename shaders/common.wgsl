// Shared by every kernel family (prepended after the precision prelude).
const L2O_NONE: u32 = 0xffffffffu;
// Per-problem scalar columns shared by every optimizer (mirrored by `l2o_engine::cols`):
// f, ‖g‖², iterations taken, function evaluations.
const L2O_F: u32 = 0u;
const L2O_G2: u32 = 1u;
const L2O_ITER: u32 = 2u;
const L2O_NFEV: u32 = 3u;
