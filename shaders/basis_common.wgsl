// The basis ring's parameters, shared by the families `basis` and `basis_rows` (prepended to each): sizes, flags,
// the (up to 4) new slots, the ring, Gram, coefficient and output layouts, and p.pad = 1 where every vector offset
// is a multiple of 4. With flag USE_STATUS, problems whose status is not 0 are left untouched.
struct Params {
    n: u32, batch: u32, chunks: u32, flags: u32,
    slot0: u32, slot1: u32, slot2: u32, slot3: u32,
    v_stride: u32, g_off: u32, g_stride: u32, coef_off: u32,
    coef_stride: u32, out_off: u32, out_stride: u32, pad: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// private copy, as in every family (storage reads in loops are gathers on the software adapter)
var<private> p: Params;

const RK: u32 = R * K;
const USE_STATUS: u32 = 2u;

fn slot(a: u32) -> u32 {
    switch a {
        case 0u: { return p.slot0; }
        case 1u: { return p.slot1; }
        case 2u: { return p.slot2; }
        default: { return p.slot3; }
    }
}

// Whether problem b is left alone (USE_STATUS and a status other than 0; each family binds `status`).
fn frozen(b: u32) -> bool {
    return (p.flags & USE_STATUS) != 0u && status[b] != 0u;
}
