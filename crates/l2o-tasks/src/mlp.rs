//! Multilayer perceptrons on MNIST as a batched [`Task`]: B independent networks with their own parameters and
//! their own minibatch stream (seed 002 §3.2), or full-batch loss over a fixed image set (seed 003 §6).
//!
//! ## The function (one network; θ is its flat parameter vector)
//! ```text
//! θ = [W_1 (o_1×784), b_1, W_2 (o_2×o_1), b_2, …, W_L (10×o_{L−1}), b_L]     (row-major, biases after weights)
//! a_0 = x / 255,  a_l = σ(W_l a_{l−1} + b_l) for hidden layers,  z = W_L a_{L−1} + b_L   (logits)
//! f(θ) = (1/M) Σ_{i ≤ M} [log Σ_c e^{z_{i,c}} − z_{i,y_i}]                            (mean cross-entropy)
//! backward: δ_L = (softmax(z) − onehot(y))/M;  ∂W_l = Σ_i δ_l a_{l−1}ᵀ;  ∂b_l = Σ_i δ_l;
//!           δ_{l−1} = (W_lᵀ δ_l) ⊙ σ'(a_{l−1})
//! ```
//! σ ∈ {sigmoid, ReLU, tanh}. The 1×20 sigmoid network of the seeds has n = 784·20 + 20 + 20·10 + 10 = 15,910.
//!
//! ## Minibatches
//! Each evaluation of `loss_and_grad` draws a fresh minibatch on the device: image i of network b at draw s is
//! `h(seed, b, s, i) mod N` with murmur3's finaliser `h` ([`Mlp::minibatch`] is the same on the host), and a
//! device counter advances by one per evaluation — no host round trip. In full-batch mode the M images are fixed
//! per network: a seeded permutation of the split cut into ⌊N/M⌋ disjoint groups, network b using group b mod ⌊N/M⌋
//! (seed 003 §6: the 10,000 test images in 10 groups of 1,000; networks b and b + 10 share a group, not x0).
//! [`Task::oracle_loss_grad`] evaluates the minibatch of draw 0 (the first evaluation after construction);
//! [`Mlp::oracle_at`] takes any draw.

use anyhow::{Result, bail};
use l2o_engine::shaders::{Layout, ShaderFamily};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, View, sum};
use rand::SeedableRng;
use rand::rngs::StdRng;

use std::sync::Arc;

use crate::Task;
use crate::idx::MnistData;
use crate::mlp_gemm::GemmKind;

use Layout::{Read as R, ReadWrite as W};

const MLP_LAYOUT: &[Layout] = &[R, R, W, R, R, W, W, W, W, W, W];

pub static MLP: ShaderFamily = ShaderFamily {
    name: "mlp",
    body: include_str!("../../../shaders/mlp.wgsl"),
    layout: MLP_LAYOUT,
    entries: &["sample", "advance", "gemm", "bias_grad", "softmax_ce"],
    default_defines: "",
};

/// The generated products of [`crate::mlp_gemm`] (variant `lanes`), compiled with the body of `mlp.wgsl`.
pub static MLP_GEMM: ShaderFamily = ShaderFamily {
    name: "mlp_gemm",
    body: include_str!("../../../shaders/mlp.wgsl"),
    layout: MLP_LAYOUT,
    entries: &[],
    default_defines: "",
};

/// How the MLP's products run (family `mlp`, see `l2o_engine::variants`): `tiled` — 64×16 output tiles through
/// workgroup memory, two barriers per K-tile (GPUs); `lanes` — [`crate::mlp_gemm`]'s generated kernels, one
/// thread per long dimension, one barrier (the software adapter). They sum in different orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmVariant {
    Tiled,
    Lanes,
}

impl GemmVariant {
    pub const NAMES: [&'static str; 2] = ["tiled", "lanes"];
    pub fn of(ctx: &Context) -> Result<Self> {
        Ok(
            match ctx.variant("mlp", &Self::NAMES, "tiled", "lanes")?.as_str() {
                "tiled" => GemmVariant::Tiled,
                _ => GemmVariant::Lanes,
            },
        )
    }
}

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Sigmoid,
    Relu,
    Tanh,
}

impl Activation {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "sigmoid" => Activation::Sigmoid,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            _ => bail!("unknown activation {s:?}: use sigmoid, relu or tanh"),
        })
    }
    fn code(self) -> u32 {
        match self {
            Activation::Sigmoid => 1,
            Activation::Relu => 2,
            Activation::Tanh => 3,
        }
    }
    fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Activation::Relu => z.max(0.0),
            Activation::Tanh => z.tanh(),
        }
    }
    fn deriv_from_output(self, a: f64) -> f64 {
        match self {
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Relu => (a > 0.0) as u8 as f64,
            Activation::Tanh => 1.0 - a * a,
        }
    }
}

/// Architecture and data regime of the MLP task.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Units of each hidden layer (seed 002: \[20\]).
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Images per evaluation M (seed 002: 128 per step; seed 003: 1000, full batch).
    pub minibatch: usize,
    /// Full batch: the same M images every evaluation (drawn once from the seed) instead of a fresh minibatch.
    pub full_batch: bool,
    /// Use the test split (evaluation) instead of the training split.
    pub test_split: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![20],
            activation: Activation::Sigmoid,
            minibatch: 128,
            full_batch: false,
            test_split: false,
        }
    }
}

const CLASSES: usize = 10;

/// murmur3's 32-bit finaliser (mirrors `fmix` in mlp.wgsl).
fn fmix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

pub struct Mlp {
    cfg: MlpConfig,
    batch: usize,
    widths: Vec<usize>, // 784, hidden…, 10
    n: usize,
    seed: u32,
    /// The data set (host copy for the oracle); the split in use is `cfg.test_split`.
    data: Arc<MnistData>,
    n_images: usize,
    pixels: usize,
    /// Full batch: the image indices of each network.
    fixed: Option<Vec<Vec<u32>>>,
    theta0: Vec<f64>,
    // device
    imgs: DBuf,
    labs: DBuf,
    idx: DBuf,
    acts: DBuf,
    deltas: DBuf,
    terms: DBuf,
    ctr: DBuf,
    /// Partial sums of the `lanes` products: [chunk][network][r][c], sized for the largest.
    part: DBuf,
    act_off: Vec<usize>,
}

impl Mlp {
    /// B networks on `data` (training or test split per `cfg`), parameters and streams from `seed`.
    pub fn new(
        ctx: &Context,
        data: Arc<MnistData>,
        cfg: MlpConfig,
        batch: usize,
        seed: u64,
    ) -> Result<Self> {
        if batch == 0 || cfg.minibatch == 0 {
            bail!("mlp: batch and minibatch must be positive");
        }
        if cfg.hidden.contains(&0) {
            bail!(
                "mlp: hidden layers must have at least one unit: {:?}",
                cfg.hidden
            );
        }
        let (images, labels) = if cfg.test_split {
            (&data.test_images, &data.test_labels)
        } else {
            (&data.train_images, &data.train_labels)
        };
        let pixels = data.rows * data.cols;
        let n_images = labels.len();
        if cfg.full_batch && cfg.minibatch > n_images {
            bail!(
                "mlp: full batch of {} images but the split has {n_images}",
                cfg.minibatch
            );
        }
        let mut widths = vec![pixels];
        widths.extend(&cfg.hidden);
        widths.push(CLASSES);
        let n: usize = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let m = cfg.minibatch;
        let mut act_off = vec![0];
        for &w in &widths[1..] {
            act_off.push(act_off.last().unwrap() + batch * m * w);
        }
        let scratch = *act_off.last().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut theta0 = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            for w in widths.windows(2) {
                let a = 1.0 / (w[0] as f64).sqrt();
                for _ in 0..w[0] * w[1] {
                    theta0.push(rand::Rng::random_range(&mut rng, -a..a));
                }
                theta0.extend(std::iter::repeat_n(0.0, w[1]));
            }
        }
        let seed32 = (seed ^ (seed >> 32)) as u32;
        let fixed = cfg.full_batch.then(|| {
            // disjoint groups of M of a seeded permutation, network b on group b mod ⌊N/M⌋
            let mut perm: Vec<u32> = (0..n_images as u32).collect();
            rand::seq::SliceRandom::shuffle(&mut perm[..], &mut rng);
            let groups = (n_images / m).max(1);
            (0..batch)
                .map(|b| perm[(b % groups) * m..(b % groups + 1) * m].to_vec())
                .collect::<Vec<_>>()
        });
        let mut words: Vec<u32> = images
            .chunks(4)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .map(|(k, &v)| (v as u32) << (8 * k))
                    .sum()
            })
            .collect();
        // the kernels read the images as vec4<u32> (16 pixels)
        words.resize(words.len().next_multiple_of(4), 0);
        let idx0: Vec<u32> = match &fixed {
            Some(f) => f.iter().flat_map(|g| g.iter().copied()).collect(),
            None => vec![0; batch * m],
        };
        Ok(Self {
            imgs: ctx.upload_u32("mnist images", &words)?,
            labs: ctx.upload_u32(
                "mnist labels",
                &labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            )?,
            idx: ctx.upload_u32("minibatch indices", &idx0)?,
            acts: ctx.zeros("mlp activations", scratch)?,
            deltas: ctx.zeros("mlp deltas", scratch)?,
            terms: ctx.zeros("mlp losses", batch * m)?,
            ctr: ctx.upload_u32("minibatch counter", &[0])?,
            part: ctx.zeros("mlp partial sums", {
                let per = |rows: usize, cols: usize, inner: usize| {
                    inner.div_ceil(crate::mlp_gemm::KC) * batch * rows * cols
                };
                widths
                    .windows(2)
                    .map(|w| {
                        per(m, w[1], w[0])
                            .max(per(w[0], w[1], m))
                            .max(per(m, w[0], w[1]))
                    })
                    .max()
                    .unwrap_or(1)
            })?,
            cfg,
            batch,
            widths,
            n,
            seed: seed32,
            data: data.clone(),
            n_images,
            pixels,
            fixed,
            theta0,
            act_off,
        })
    }

    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    /// Layer widths [784, hidden…, 10].
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// The image indices network b uses at draw s.
    pub fn minibatch(&self, b: usize, s: u32) -> Vec<u32> {
        if let Some(f) = &self.fixed {
            return f[b].clone();
        }
        let n = self.n_images as u32;
        (0..self.cfg.minibatch as u32)
            .map(|i| fmix(fmix(fmix(fmix(self.seed) ^ b as u32) ^ s) ^ i) % n)
            .collect()
    }

    fn split(&self) -> (&[u8], &[u8]) {
        if self.cfg.test_split {
            (&self.data.test_images, &self.data.test_labels)
        } else {
            (&self.data.train_images, &self.data.train_labels)
        }
    }

    /// f64 reference: mean cross-entropy and gradient of network b on its minibatch of draw s.
    pub fn oracle_at(&self, b: usize, theta: &[f64], s: u32) -> (f64, Vec<f64>) {
        let (images, labels) = self.split();
        let imgs = self.minibatch(b, s);
        let m = imgs.len() as f64;
        let l = self.widths.len() - 1;
        let mut grad = vec![0.0; self.n];
        let mut loss = 0.0;
        // offsets of W_l, b_l
        let mut offs = vec![];
        let mut o = 0;
        for w in self.widths.windows(2) {
            offs.push((o, o + w[0] * w[1]));
            o += w[0] * w[1] + w[1];
        }
        for &img in &imgs {
            let mut a: Vec<Vec<f64>> = vec![
                (0..self.pixels)
                    .map(|k| images[img as usize * self.pixels + k] as f64 / 255.0)
                    .collect(),
            ];
            for li in 0..l {
                let (wo, bo) = offs[li];
                let (win, wout) = (self.widths[li], self.widths[li + 1]);
                let prev = &a[li];
                let next: Vec<f64> = (0..wout)
                    .map(|j| {
                        let z = theta[bo + j]
                            + (0..win)
                                .map(|k| theta[wo + j * win + k] * prev[k])
                                .sum::<f64>();
                        if li + 1 < l {
                            self.cfg.activation.apply(z)
                        } else {
                            z
                        }
                    })
                    .collect();
                a.push(next);
            }
            let z = &a[l];
            let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let se: f64 = z.iter().map(|v| (v - zmax).exp()).sum();
            let y = labels[img as usize] as usize;
            loss += (zmax + se.ln() - z[y]) / m;
            let mut delta: Vec<f64> = z
                .iter()
                .enumerate()
                .map(|(c, v)| ((v - zmax).exp() / se - (c == y) as u8 as f64) / m)
                .collect();
            for li in (0..l).rev() {
                let (wo, bo) = offs[li];
                let (win, wout) = (self.widths[li], self.widths[li + 1]);
                for j in 0..wout {
                    grad[bo + j] += delta[j];
                    for k in 0..win {
                        grad[wo + j * win + k] += delta[j] * a[li][k];
                    }
                }
                if li > 0 {
                    delta = (0..win)
                        .map(|k| {
                            (0..wout)
                                .map(|j| theta[wo + j * win + k] * delta[j])
                                .sum::<f64>()
                                * self.cfg.activation.deriv_from_output(a[li][k])
                        })
                        .collect();
                }
            }
        }
        (loss, grad)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        ctx: &Context,
        entry: &'static str,
        theta: View,
        grad: View,
        words: [u32; 20],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_in(ctx, &MLP, entry, "", theta, grad, words, groups)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_in(
        &self,
        ctx: &Context,
        family: &ShaderFamily,
        entry: &'static str,
        defines: &str,
        theta: View,
        grad: View,
        words: [u32; 20],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let params = ctx.params(&words);
        ctx.dispatch_with(
            family,
            entry,
            defines,
            &[
                &params,
                &theta.buf.buf,
                &grad.buf.buf,
                &self.imgs.buf,
                &self.labs.buf,
                &self.idx.buf,
                &self.acts.buf,
                &self.deltas.buf,
                &self.terms.buf,
                &self.ctr.buf,
                &self.part.buf,
            ],
            groups,
        )
    }
}

impl Task for Mlp {
    fn reset(&self, ctx: &Context) -> Result<()> {
        ctx.write_u32(&self.ctr, 0, &[0])
    }
    fn name(&self) -> String {
        format!("mnist-mlp{:?}-{:?}", self.cfg.hidden, self.cfg.activation).to_lowercase()
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn initial_point(&self) -> Vec<f64> {
        self.theta0.clone()
    }
    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
        self.oracle_at(b, theta, 0)
    }
    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>> {
        let (bt, n, m) = (self.batch, self.n, self.cfg.minibatch);
        if theta.offset != 0 || grad.offset != 0 || theta.stride != n || grad.stride != n {
            bail!("mlp: θ and the gradient must be plain B × n buffers (offset 0, stride n)");
        }
        theta.check("mlp: theta", n, bt)?;
        grad.check("mlp: grad", n, bt)?;
        let u = |x: usize| x as u32;
        let l = self.widths.len() - 1;
        let hid = self.cfg.activation.code();
        let base =
            |mode: u32, act: u32, li: usize, rows: usize, cols: usize, inner: usize| -> [u32; 20] {
                // layer li+1 maps widths[li] → widths[li+1]
                let w_off: usize = self.widths[..li + 1]
                    .windows(2)
                    .map(|w| w[0] * w[1] + w[1])
                    .sum();
                let (win, wout) = (self.widths[li], self.widths[li + 1]);
                [
                    u(bt),
                    u(m),
                    u(n),
                    u(self.n_images),
                    u(self.pixels),
                    mode,
                    act,
                    (li == 0) as u32,
                    u(rows),
                    u(cols),
                    u(inner),
                    u(w_off),
                    u(w_off + win * wout),
                    u(if li == 0 { 0 } else { self.act_off[li - 1] }),
                    u(self.act_off[li]),
                    u(win),
                    u(wout),
                    self.seed,
                    self.fixed.is_some() as u32,
                    0,
                ]
            };
        let tiles = |rows: usize, cols: usize| [u(cols.div_ceil(16)), u(rows.div_ceil(64)), u(bt)]; // 64×16 tiles
        let variant = GemmVariant::of(ctx)?;
        // C = A·B of one kind (l2o_tasks::mlp_gemm's table), rows × cols with `inner` terms
        let gemm = |d: &mut Vec<Dispatch>, kind: GemmKind, act: u32, li: usize| -> Result<()> {
            let (win, wout) = (self.widths[li], self.widths[li + 1]);
            let (mode, rows, cols, inner) = match kind {
                GemmKind::Forward => (0, m, wout, win),
                GemmKind::WeightGrad => (1, wout, win, m),
                GemmKind::InputGrad => (2, m, win, wout),
            };
            if variant == GemmVariant::Tiled {
                d.push(self.dispatch(
                    ctx,
                    "gemm",
                    theta,
                    grad,
                    base(mode, act, li, rows, cols, inner),
                    tiles(rows, cols),
                )?);
                return Ok(());
            }
            // lanes: threads along the long dimension (for ∂W the inputs j, so rows and columns swap)
            let (rows, cols) = if kind == GemmKind::WeightGrad {
                (win, wout)
            } else {
                (rows, cols)
            };
            let words = base(mode, act, li, rows, cols, inner);
            // ∂W₁ on images of whole 32-bit words: one thread per word of pixels
            let by_word = kind == GemmKind::WeightGrad
                && li == 0
                && self.pixels % 4 == 0;
            let (ct, src, threads) = if by_word {
                let ct = crate::mlp_gemm::PIXEL_CT;
                (ct, crate::mlp_gemm::weight_grad_pixels_source(), rows / 4)
            } else {
                let ct = crate::mlp_gemm::col_tile(cols);
                (ct, crate::mlp_gemm::source(kind, ct, li == 0), rows)
            };
            let nk = inner.div_ceil(crate::mlp_gemm::KC);
            let groups = [
                u(threads.div_ceil(crate::mlp_gemm::ROWS)),
                u(cols.div_ceil(ct) * nk),
                u(bt),
            ];
            d.push(self.dispatch_in(
                ctx,
                &MLP_GEMM,
                "gemm_tile",
                &src,
                theta,
                grad,
                words,
                groups,
            )?);
            let fin = [u((rows * cols).div_ceil(64)), u(bt), 1];
            d.push(self.dispatch_in(
                ctx,
                &MLP_GEMM,
                "gemm_finish",
                &src,
                theta,
                grad,
                words,
                fin,
            )?);
            Ok(())
        };
        let mut d = vec![];
        d.push(self.dispatch(
            ctx,
            "sample",
            theta,
            grad,
            base(0, 0, 0, 0, 0, 0),
            [u(m.div_ceil(64)), u(bt), 1],
        )?);
        d.push(self.dispatch(
            ctx,
            "advance",
            theta,
            grad,
            base(0, 0, 0, 0, 0, 0),
            [1, 1, 1],
        )?);
        for li in 0..l {
            let act = if li + 1 < l { hid } else { 0 };
            gemm(&mut d, GemmKind::Forward, act, li)?;
        }
        d.push(self.dispatch(
            ctx,
            "softmax_ce",
            theta,
            grad,
            base(0, 0, l - 1, 0, 0, 0),
            [u(m.div_ceil(64)), u(bt), 1],
        )?);
        for li in (0..l).rev() {
            let wout = self.widths[li + 1];
            gemm(&mut d, GemmKind::WeightGrad, hid, li)?;
            d.push(self.dispatch(
                ctx,
                "bias_grad",
                theta,
                grad,
                base(0, hid, li, 0, 0, 0),
                [u(wout.div_ceil(64)), u(bt), 1],
            )?);
            if li > 0 {
                gemm(&mut d, GemmKind::InputGrad, hid, li)?;
            }
        }
        d.extend(sum(ctx, m, bt, self.terms.view(m), out)?);
        Ok(d)
    }
}
