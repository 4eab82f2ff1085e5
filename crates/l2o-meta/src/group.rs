//! The processes that meta-train (and evaluate) together: a [`Group`] of ranks, each owning a contiguous block
//! of the shards of every meta-batch and of the validation set ([`owned`]).
//!
//! Meta-training is data-parallel over the problems of a meta-batch and φ is small, so one collective per
//! unroll is all the communication it needs: every rank runs the forward and reverse sweeps of its own shards,
//! then [`gather_shards`] hands every rank every shard's (meta-loss, ∂L/∂φ) **in shard order**, and every rank
//! averages them the same way a single process does ([`crate::learned::Unroll::mean`]). Floating-point
//! addition is not associative, so an MPI allreduce (whose order the standard leaves open) would make φ depend
//! on the number of ranks; gathering the partials and adding them in a fixed order makes a P-rank run give the
//! same φ, bit for bit, as one process with the same shards — whatever P is. [`check_agree`] verifies it.
//!
//! This crate knows no MPI: [`Solo`] is the single process, and the `mpi` feature of the command line
//! implements [`Group`] on MPI's world communicator (rsmpi). Anything else that can all-gather bytes (a test
//! harness, another transport) can implement it too.

use std::cell::Cell;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};

/// A group of ranks that call the same collectives in the same order.
pub trait Group {
    /// This process's rank, 0..size.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `local` (lengths may differ), in rank order, on every rank. A collective: every rank calls
    /// it, in the same order.
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>>;
    /// Rank 0 writes checkpoints, CSV and plots and shows progress.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// One process on its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Group for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        Ok(vec![local.to_vec()])
    }
}

/// The shards of `shards` that rank `rank` of `size` owns: a contiguous block (the first `shards % size`
/// ranks own one more), so that concatenating the ranks' blocks in rank order lists the shards in order.
pub fn owned(shards: usize, rank: usize, size: usize) -> Range<usize> {
    let (q, r) = (shards / size, shards % size);
    let start = rank * q + rank.min(r);
    start..start + q + usize::from(rank < r)
}

/// Error unless every rank of `g` owns at least one of `shards` shards.
pub fn check_shards(g: &dyn Group, shards: usize, what: &str) -> Result<()> {
    if shards < g.size() {
        bail!(
            "{} ranks but {shards} shard(s) of the {what}: every rank owns whole shards, so give --shards {} (or \
             more), or start fewer ranks",
            g.size(),
            g.size()
        );
    }
    Ok(())
}

/// Every shard's record on every rank, in shard order: `local` holds this rank's records, one per shard of
/// [`owned`]`(shards, rank, size)`, in order (records may differ in length).
pub fn gather_shards(g: &dyn Group, shards: usize, local: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let mine = owned(shards, g.rank(), g.size());
    ensure!(
        local.len() == mine.len(),
        "rank {} owns shards {mine:?} but has {} records",
        g.rank(),
        local.len()
    );
    if g.size() == 1 {
        return Ok(local.to_vec());
    }
    // [len, values…] per record
    let mut packed = Vec::with_capacity(local.iter().map(|r| r.len() + 1).sum());
    for r in local {
        packed.push(r.len() as f64);
        packed.extend_from_slice(r);
    }
    let mut all = Vec::with_capacity(shards);
    for (rank, buf) in g.all_gather(&packed)?.into_iter().enumerate() {
        let expect = owned(shards, rank, g.size()).len();
        let mut rest = &buf[..];
        for _ in 0..expect {
            let Some((&len, tail)) = rest.split_first() else {
                bail!("rank {rank} sent fewer than its {expect} shard records");
            };
            let len = len as usize;
            ensure!(
                tail.len() >= len,
                "rank {rank} sent a truncated shard record"
            );
            all.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        ensure!(
            rest.is_empty(),
            "rank {rank} sent more than its {expect} shard records"
        );
    }
    Ok(all)
}

/// Error naming the ranks unless every rank has the same `digest` (hex, e.g. [`crate::checkpoint::phi_sha256`])
/// of `what`. Compares its first 64 bits, sent as two exact 32-bit integers.
pub fn check_agree(g: &dyn Group, what: &str, digest: &str) -> Result<()> {
    if g.size() == 1 {
        return Ok(());
    }
    let head = u64::from_str_radix(digest.get(..16).unwrap_or(digest), 16)
        .map_err(|_| anyhow::anyhow!("digest {digest:?} is not hex"))?;
    let mine = [(head >> 32) as f64, (head & 0xffff_ffff) as f64];
    let all: Vec<u64> = g
        .all_gather(&mine)?
        .iter()
        .map(|v| ((v[0] as u64) << 32) | v[1] as u64)
        .collect();
    if all.iter().all(|&d| d == all[0]) {
        return Ok(());
    }
    let differ: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, d)| **d != all[0])
        .map(|(r, d)| format!("rank {r} ({d:016x})"))
        .collect();
    bail!(
        "the ranks disagree on {what}: rank 0 has {:016x}, but {} — the ranks must run the same l2o build on the \
         same kind of adapter with the same precision (see the device: lines); resume from the last checkpoint \
         after fixing it",
        all[0],
        differ.join(", ")
    )
}

/// A [`Group`] that counts the collectives of another and the time spent in them (waiting for the slowest rank
/// included): what `l2o bench --meta` reports per unroll under MPI.
pub struct Timed<'a> {
    inner: &'a dyn Group,
    spent: Cell<Duration>,
    calls: Cell<usize>,
}

impl<'a> Timed<'a> {
    pub fn new(inner: &'a dyn Group) -> Self {
        Self {
            inner,
            spent: Cell::new(Duration::ZERO),
            calls: Cell::new(0),
        }
    }
    /// Collectives so far and the seconds spent in them.
    pub fn totals(&self) -> (usize, f64) {
        (self.calls.get(), self.spent.get().as_secs_f64())
    }
}

impl Group for Timed<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        let t0 = Instant::now();
        let r = self.inner.all_gather(local);
        self.spent.set(self.spent.get() + t0.elapsed());
        self.calls.set(self.calls.get() + 1);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_blocks_cover_the_shards_in_order() {
        for shards in 1..12 {
            for size in 1..=shards {
                let mut next = 0;
                for rank in 0..size {
                    let r = owned(shards, rank, size);
                    assert_eq!(r.start, next, "shards {shards} size {size} rank {rank}");
                    assert!(!r.is_empty());
                    next = r.end;
                }
                assert_eq!(next, shards);
            }
        }
    }

    /// P ranks simulated in one process: rank r's gather sees every rank's packed records.
    struct Fake {
        rank: usize,
        packed: Vec<Vec<f64>>,
    }
    impl Group for Fake {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.packed.len()
        }
        fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
            assert_eq!(local, &self.packed[self.rank][..]);
            Ok(self.packed.clone())
        }
    }

    #[test]
    fn gather_shards_returns_shard_order_and_digests_compare() {
        let records: Vec<Vec<f64>> = (0..5).map(|s| vec![s as f64; s + 1]).collect();
        let size = 3;
        let pack = |rank: usize| {
            let mut p = vec![];
            for s in owned(5, rank, size) {
                p.push(records[s].len() as f64);
                p.extend_from_slice(&records[s]);
            }
            p
        };
        let packed: Vec<Vec<f64>> = (0..size).map(pack).collect();
        for rank in 0..size {
            let g = Fake {
                rank,
                packed: packed.clone(),
            };
            let local: Vec<Vec<f64>> = owned(5, rank, size).map(|s| records[s].clone()).collect();
            assert_eq!(gather_shards(&g, 5, &local).unwrap(), records);
        }
        let same = Fake {
            rank: 1,
            packed: vec![vec![1.0, 2.0]; 3],
        };
        let d = format!("{:08x}{:08x}", 1, 2);
        check_agree(&same, "φ", &d).unwrap();
        let differ = Fake {
            rank: 0,
            packed: vec![vec![1.0, 2.0], vec![1.0, 2.0], vec![1.0, 3.0]],
        };
        let e = check_agree(&differ, "φ", &d).unwrap_err().to_string();
        assert!(e.contains("rank 2 (0000000100000003)"), "{e}");
        assert!(check_shards(&differ, 2, "meta-batch").is_err());
        assert!(check_shards(&differ, 3, "meta-batch").is_ok());
    }
}
