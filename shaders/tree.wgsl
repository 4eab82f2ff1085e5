// Shared by the reduction families (`reduce`, `hilbert`): a 256-thread workgroup reduces CHUNK = 256·16
// coordinates, each thread summing ITEMS = 16 terms sequentially into sh[lid]; tree() then sums sh pairwise
// (a fixed order: deterministic) and leaves the total in sh[0].
const WG: u32 = 256u;
const ITEMS: u32 = 16u;
const CHUNK: u32 = 4096u;

var<workgroup> sh: array<Real, 256>;

fn tree(lid: u32) {
    var s = WG / 2u;
    loop {
        if (s == 0u) { break; }
        workgroupBarrier();
        if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
        s = s / 2u;
    }
    workgroupBarrier();
}
