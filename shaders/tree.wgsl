// Shared by the reduction families (`reduce`, `hilbert`): a workgroup of WG threads reduces the CHUNK = WG·ITEMS
// coordinates of one chunk into sh[0]. WG, ITEMS, CONTIG and TREE are the constants of a variant, chosen per
// adapter (l2o_engine::kernels::reduce::Reduction):
//   tree (GPUs): thread t takes the items t, t + WG, t + 2·WG, … (neighbouring threads read neighbouring
//                coordinates: coalesced), then sh[0..WG] is summed by a pairwise tree;
//   seq (the software adapter): thread t takes the contiguous items [t·ITEMS, (t+1)·ITEMS), then thread 0 adds
//                sh[0..WG] in order — one barrier instead of log2(WG) + 1 (lavapipe pays ~1 µs per barrier
//                and workgroup).
// Each thread keeps four partial sums (items ≡ 0, 1, 2, 3 mod 4) added as (s0 + s1) + (s2 + s3). Every order is
// fixed: deterministic, no atomics.
const CHUNK: u32 = WG * ITEMS;

var<workgroup> sh: array<Real, WG>;

// Coordinate of item t of thread lid in chunk c.
fn item(c: u32, lid: u32, t: u32) -> u32 {
    if (CONTIG) { return c * CHUNK + lid * ITEMS + t; }
    return c * CHUNK + t * WG + lid;
}

fn tree(lid: u32) {
    if (TREE) {
        var s = WG / 2u;
        loop {
            if (s == 0u) { break; }
            workgroupBarrier();
            if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
            s = s / 2u;
        }
        workgroupBarrier();
    } else {
        workgroupBarrier();
        if (lid == 0u) {
            var total: Real = 0.0;
            for (var l = 0u; l < WG; l = l + 1u) { total = total + sh[l]; }
            sh[0] = total;
        }
        workgroupBarrier();
    }
}
