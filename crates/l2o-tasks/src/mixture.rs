//! A mixture of task families: the B problems of one batch split into contiguous blocks, one family per block
//! (`--task quadratic-cond-rotated+rosenbrock+logistic`). Meta-training on a mixture asks one learned
//! optimizer to serve every family at once; every family keeps its own kernels, data and f64 oracle.

use anyhow::{Result, bail};
use l2o_engine::{Context, Dispatch, ScalarOut, View};

use crate::Task;

/// Families joined by `+` in a task name.
pub const SEPARATOR: char = '+';

/// B problems: family i holds the block `starts[i] .. starts[i] + parts[i].batch()`.
pub struct Mixture {
    parts: Vec<Box<dyn Task>>,
    starts: Vec<usize>,
    n: usize,
    batch: usize,
}

/// Problems of family i when B problems are split over `families` (the first B mod F families get one more).
pub fn block_sizes(batch: usize, families: usize) -> Vec<usize> {
    (0..families)
        .map(|i| batch / families + usize::from(i < batch % families))
        .collect()
}

/// Seed of family i's block: one stream per family, so adding a family never changes another's problems.
pub fn family_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Mixture {
    /// Joins already-built tasks (block i gets `parts[i]`'s problems, in order). All must have one dimension.
    pub fn new(parts: Vec<Box<dyn Task>>) -> Result<Self> {
        let Some(first) = parts.first() else {
            bail!("a mixture needs at least one task");
        };
        let n = first.dim();
        if let Some(t) = parts.iter().find(|t| t.dim() != n) {
            bail!(
                "a mixture's tasks must share one dimension: {} has n = {n}, {} has n = {} (pick --dim so that \
                 every family has it, e.g. an even n for rosenbrock; mnist's n is fixed by its architecture)",
                first.name(),
                t.name(),
                t.dim()
            );
        }
        let mut starts = Vec::with_capacity(parts.len());
        let mut batch = 0;
        for t in &parts {
            starts.push(batch);
            batch += t.batch();
        }
        Ok(Self {
            parts,
            starts,
            n,
            batch,
        })
    }

    /// The family and the problem within it of problem b.
    fn locate(&self, b: usize) -> (usize, usize) {
        let i = self.starts.partition_point(|&s| s <= b) - 1;
        (i, b - self.starts[i])
    }
}

/// The rows of a B × n view from problem `row` on.
fn rows_from<'a>(v: &View<'a>, row: usize) -> View<'a> {
    View {
        buf: v.buf,
        offset: v.offset + row * v.stride,
        stride: v.stride,
    }
}

impl Task for Mixture {
    fn name(&self) -> String {
        let names: Vec<String> = self.parts.iter().map(|t| t.name()).collect();
        names.join(&SEPARATOR.to_string())
    }

    fn dim(&self) -> usize {
        self.n
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>> {
        crate::check_views("mixture", &theta, &grad, self.n, self.batch)?;
        out.check(self.batch, 1)?;
        let mut d = Vec::new();
        for (t, &s) in self.parts.iter().zip(&self.starts) {
            let (th, gr) = (rows_from(&theta, s), rows_from(&grad, s));
            d.extend(t.loss_and_grad(ctx, th, gr, out.from_row(s))?);
        }
        Ok(d)
    }

    fn initial_point(&self) -> Vec<f64> {
        self.parts.iter().flat_map(|t| t.initial_point()).collect()
    }

    fn initial_point_of(&self, b: usize) -> Vec<f64> {
        let (i, j) = self.locate(b);
        self.parts[i].initial_point_of(j)
    }

    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
        let (i, j) = self.locate(b);
        self.parts[i].oracle_loss_grad(j, theta)
    }

    fn reset(&self, ctx: &Context) -> Result<()> {
        self.parts.iter().try_for_each(|t| t.reset(ctx))
    }
}
