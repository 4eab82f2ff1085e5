//! Kernel launchers: each records [`Dispatch`](crate::Dispatch)es that can be replayed; none reads back.
pub mod basis;
pub mod hilbert;
pub mod lincomb;
pub mod reduce;
