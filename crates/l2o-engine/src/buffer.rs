//! Device buffers and recorded dispatches. Upload and readback are explicit calls so a reader can count host
//! round trips: nothing in a kernel launcher reads back.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use wgpu::util::DeviceExt;

use crate::context::{CachedPipeline, Context};
use crate::shaders::ShaderFamily;

/// Element type of a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// f32 or f64, as the context's precision says.
    Real,
    U32,
}

/// A storage buffer of `len` elements.
#[derive(Clone, Debug)]
pub struct DBuf {
    pub buf: wgpu::Buffer,
    pub len: usize,
    pub elem: Elem,
    pub id: u64,
}

/// A batched vector view: element i of problem b is `buf[offset + b·stride + i]`, i < n.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub buf: &'a DBuf,
    pub offset: usize,
    pub stride: usize,
}

impl View<'_> {
    /// The wgpu buffer under the view, to bind in a dispatch (`&view.buffer()` instead of `&view.buf.buf`).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buf.buf
    }
}

impl DBuf {
    /// The whole buffer seen as `B` problems of `stride` contiguous elements.
    pub fn view(&self, stride: usize) -> View<'_> {
        View {
            buf: self,
            offset: 0,
            stride,
        }
    }
    /// Slot `j` of a buffer holding `k` vectors of length n per problem (layout \[B\]\[k\]\[n\]).
    pub fn slot(&self, j: usize, k: usize, n: usize) -> View<'_> {
        View {
            buf: self,
            offset: j * n,
            stride: k * n,
        }
    }
}

impl View<'_> {
    /// Fails unless every index touched by B problems of n elements is inside the buffer.
    pub fn check(&self, what: &str, n: usize, batch: usize) -> Result<()> {
        if n == 0 || batch == 0 {
            bail!("{what}: empty problem (n = {n}, batch = {batch})");
        }
        let last = self.offset + (batch - 1) * self.stride + n;
        if last > self.buf.len || (batch > 1 && self.stride < n && self.stride != 0) {
            bail!(
                "{what}: wrong dimensions: {batch} problems × {n} coordinates (offset {}, stride {}) do not fit a \
                 buffer of {} elements",
                self.offset,
                self.stride,
                self.buf.len
            );
        }
        Ok(())
    }
}

/// One recorded step of a dispatch list: a kernel launch, or a **host step** — a function the host runs at
/// that point of the list, after every earlier dispatch has finished and before any later one starts (a task
/// whose loss and gradient come from the host, [`Dispatch::host`]). Dispatches are built once (pipeline + bind
/// group + grid) and replayed by [`Context::submit`] any number of times: per-step values live in device
/// buffers, not in the dispatch.
#[derive(Clone)]
pub struct Dispatch {
    pub(crate) op: Op,
    pub label: &'static str,
}

/// A host step: runs on the host with the context (reads and writes go through it).
pub type HostStep = Arc<dyn Fn(&Context) -> Result<()> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Op {
    Kernel {
        pipeline: Arc<CachedPipeline>,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Host(HostStep),
}

impl Dispatch {
    /// A host step in a dispatch list. [`Context::submit`] splits the list there: it submits the kernels
    /// before it, runs `f` (which typically reads a buffer — one round trip, waiting for those kernels — and
    /// writes others with [`Context::write`], queued before the kernels after it), then goes on. This is the
    /// price of a host step: one wait for the device per step, which a list of kernels alone never pays.
    pub fn host(label: &'static str, f: HostStep) -> Self {
        Self {
            op: Op::Host(f),
            label,
        }
    }

    /// Whether this is a host step (not a kernel launch).
    pub fn is_host(&self) -> bool {
        matches!(self.op, Op::Host(_))
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.op {
            Op::Kernel { groups, .. } => write!(f, "Dispatch({} {:?})", self.label, groups),
            Op::Host(_) => write!(f, "Dispatch({} on the host)", self.label),
        }
    }
}

/// Grid for `units` workgroups in x (capped at the 65535 limit; kernels loop over the rest) × y × z.
pub fn grid_x(units: usize) -> u32 {
    units.clamp(1, 65535) as u32
}

/// Grid for `groups` workgroups numbered one after another, folded into x × y so that neither axis exceeds the
/// 65535 limit; the kernel's linear thread index is gid.x + gid.y·nwg.x·WG (WG threads per workgroup).
pub fn grid_flat(groups: usize) -> [u32; 3] {
    let x = grid_x(groups);
    [x, groups.div_ceil(x as usize) as u32, 1]
}

impl Context {
    fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
        let lim = self.limits.max_storage_buffer_binding_size;
        if bytes > lim {
            bail!(
                "{what} needs {bytes} bytes ({:.1} MiB) but this device's max_storage_buffer_binding_size is {lim} \
                 bytes ({:.1} MiB): use a smaller batch or dimension, or a GPU with larger limits",
                bytes as f64 / 1048576.0,
                lim as f64 / 1048576.0
            );
        }
        if bytes > self.limits.max_buffer_size {
            bail!(
                "{what} needs {bytes} bytes but max_buffer_size is {}",
                self.limits.max_buffer_size
            );
        }
        Ok(())
    }

    fn storage(&self, bytes: &[u8], len: usize, elem: Elem, label: &str) -> Result<DBuf> {
        self.check_size(bytes.len() as u64, label)?;
        // wgpu buffers must not be empty and bindings must be 4-byte multiples.
        let buf = if bytes.is_empty() {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &[0u8; 8],
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        } else {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        };
        Ok(DBuf {
            buf,
            len,
            elem,
            id: self.next_id(),
        })
    }

    /// Upload host values (converted to the device precision). Refuses NaN/Inf and oversize buffers.
    pub fn upload(&self, label: &str, v: &[f64]) -> Result<DBuf> {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            bail!("{label}: value {} at index {i} is not finite", v[i]);
        }
        self.storage(&self.precision().encode(v), v.len(), Elem::Real, label)
    }

    /// A zero-filled buffer of `len` Real elements.
    pub fn zeros(&self, label: &str, len: usize) -> Result<DBuf> {
        let bytes = (len * self.precision().size()) as u64;
        self.check_size(bytes, label)?;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(8),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(DBuf {
            buf,
            len,
            elem: Elem::Real,
            id: self.next_id(),
        })
    }

    pub fn upload_u32(&self, label: &str, v: &[u32]) -> Result<DBuf> {
        self.storage(bytemuck::cast_slice(v), v.len(), Elem::U32, label)
    }

    /// Overwrite a Real buffer from the host (queued; takes effect before the next submit).
    pub fn write(&self, dst: &DBuf, offset: usize, v: &[f64]) -> Result<()> {
        if dst.elem != Elem::Real || offset + v.len() > dst.len {
            bail!(
                "write of {} values at {offset} does not fit a buffer of {}",
                v.len(),
                dst.len
            );
        }
        let bytes = self.precision().encode(v);
        self.queue
            .write_buffer(&dst.buf, (offset * self.precision().size()) as u64, &bytes);
        Ok(())
    }

    pub fn write_u32(&self, dst: &DBuf, offset: usize, v: &[u32]) -> Result<()> {
        if dst.elem != Elem::U32 || offset + v.len() > dst.len {
            bail!(
                "write of {} values at {offset} does not fit a buffer of {}",
                v.len(),
                dst.len
            );
        }
        self.queue
            .write_buffer(&dst.buf, (offset * 4) as u64, bytemuck::cast_slice(v));
        Ok(())
    }

    /// Copy `bytes[i]` leading bytes of each buffer into one staging buffer, map it once (one submit, one
    /// wait: one host round trip) and return the bytes of each.
    fn read_raw(&self, srcs: &[(&DBuf, u64)]) -> Result<Vec<Vec<u8>>> {
        let sizes: Vec<u64> = srcs.iter().map(|(_, b)| b.next_multiple_of(4)).collect();
        let total: u64 = sizes.iter().sum::<u64>().max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut off = 0;
        for ((b, _), &sz) in srcs.iter().zip(&sizes) {
            if sz > 0 {
                enc.copy_buffer_to_buffer(&b.buf, 0, &staging, off, sz);
            }
            off += sz;
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        pollster::block_on(rx)
            .map_err(|_| anyhow!("readback was cancelled (device lost?)"))?
            .map_err(|e| anyhow!("readback failed: {e}"))?;
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| anyhow!("readback failed: {e:?}"))?;
        let mut out = vec![];
        let mut off = 0usize;
        for ((_, bytes), &sz) in srcs.iter().zip(&sizes) {
            out.push(data[off..off + *bytes as usize].to_vec());
            off += sz as usize;
        }
        drop(data);
        staging.unmap();
        Ok(out)
    }

    /// Read several Real buffers back in one round trip (one submit, one wait).
    pub fn read_many(&self, srcs: &[&DBuf]) -> Result<Vec<Vec<f64>>> {
        let p = self.precision();
        if srcs.iter().any(|b| b.elem != Elem::Real) {
            bail!("read_many: buffer is not a Real buffer");
        }
        let req: Vec<(&DBuf, u64)> = srcs
            .iter()
            .map(|b| (*b, (b.len * p.size()) as u64))
            .collect();
        Ok(self
            .read_raw(&req)?
            .iter()
            .map(|bytes| p.decode(bytes))
            .collect())
    }

    /// The bytes of several buffers (Real or u32, in the device's encoding) in one round trip: for saving a
    /// device state exactly ([`Context::write_bytes`] puts them back).
    pub fn read_bytes(&self, srcs: &[&DBuf]) -> Result<Vec<Vec<u8>>> {
        let req: Vec<(&DBuf, u64)> = srcs.iter().map(|b| (*b, self.byte_len(b))).collect();
        self.read_raw(&req)
    }

    /// Overwrite a whole buffer with bytes [`Context::read_bytes`] returned (queued; takes effect before the
    /// next submit).
    pub fn write_bytes(&self, dst: &DBuf, bytes: &[u8]) -> Result<()> {
        let want = self.byte_len(dst);
        if bytes.len() as u64 != want {
            bail!(
                "write_bytes: {} bytes for a buffer of {want} ({} elements)",
                bytes.len(),
                dst.len
            );
        }
        if !bytes.is_empty() {
            self.queue.write_buffer(&dst.buf, 0, bytes);
        }
        Ok(())
    }

    fn byte_len(&self, b: &DBuf) -> u64 {
        (b.len * self.elem_size(b.elem)) as u64
    }

    /// Bytes per element of `elem` on this device.
    fn elem_size(&self, elem: Elem) -> usize {
        match elem {
            Elem::Real => self.precision().size(),
            Elem::U32 => 4,
        }
    }

    /// Wrap a buffer the host program owns (usage must include STORAGE; COPY_SRC/COPY_DST for reads/writes)
    /// holding `len` elements of `elem`, so l2o kernels can bind it directly.
    pub fn wrap(&self, buf: wgpu::Buffer, len: usize, elem: Elem) -> Result<DBuf> {
        let size = self.elem_size(elem) * len;
        if (buf.size() as usize) < size {
            bail!(
                "wrap: the buffer has {} bytes, {len} elements need {size}",
                buf.size()
            );
        }
        if !buf.usage().contains(wgpu::BufferUsages::STORAGE) {
            bail!("wrap: the buffer was created without BufferUsages::STORAGE");
        }
        Ok(DBuf {
            buf,
            len,
            elem,
            id: self.next_id(),
        })
    }

    /// Copy `len` elements between Real buffers (different buffers; offsets in elements), queued in order.
    pub fn copy(
        &self,
        src: &DBuf,
        src_off: usize,
        dst: &DBuf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        if src.id == dst.id || src_off + len > src.len || dst_off + len > dst.len {
            bail!(
                "copy of {len} elements from {src_off} to {dst_off}: out of range or same buffer"
            );
        }
        let s = self.precision().size() as u64;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(
            &src.buf,
            src_off as u64 * s,
            &dst.buf,
            dst_off as u64 * s,
            len as u64 * s,
        );
        self.queue.submit([enc.finish()]);
        self.check()
    }

    /// Read a Real buffer back to the host as f64 (waits for all queued work; one round trip).
    pub fn read(&self, src: &DBuf) -> Result<Vec<f64>> {
        if src.elem != Elem::Real {
            bail!("read: buffer is not a Real buffer");
        }
        Ok(self.read_many(&[src])?.pop().expect("one buffer"))
    }

    pub fn read_u32(&self, src: &DBuf) -> Result<Vec<u32>> {
        if src.elem != Elem::U32 {
            bail!("read_u32: buffer is not a u32 buffer");
        }
        let bytes = self
            .read_raw(&[(src, (src.len * 4) as u64)])?
            .pop()
            .expect("one buffer");
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// A small buffer of u32 kernel parameters, bound as a read-only storage buffer (binding 0 of every family).
    ///
    /// Not a uniform buffer: lavapipe specialises a kernel on the values of uniforms that steer its control flow
    /// (loop bounds, branch conditions) and recompiles it whenever the bound uniform buffer changes — measured
    /// 7 ms per dispatch when two dispatches of one small kernel alternate, against 0.2 ms with the same
    /// parameters in a storage buffer. Every recorded step alternates bind groups, so this is the difference
    /// between a dispatch-bound and a compute-bound engine on the software adapter.
    pub fn params_of<T: bytemuck::Pod>(&self, p: &T) -> wgpu::Buffer {
        self.params(bytemuck::cast_slice(std::slice::from_ref(p)))
    }

    /// [`Context::params_of`] from raw words.
    pub fn params(&self, words: &[u32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE,
            })
    }

    /// Record a dispatch of `entry` with `bindings` in layout order.
    pub fn dispatch(
        &self,
        family: &ShaderFamily,
        entry: &'static str,
        bindings: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_with(family, entry, family.default_defines, bindings, groups)
    }

    /// [`Context::dispatch`] of a family specialised by compile-time constants (`defines`).
    pub fn dispatch_with(
        &self,
        family: &ShaderFamily,
        entry: &'static str,
        defines: &str,
        bindings: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        if bindings.len() != family.layout.len() {
            bail!(
                "{}::{entry}: {} bindings given, {} expected",
                family.name,
                bindings.len(),
                family.layout.len()
            );
        }
        for (axis, &g) in groups.iter().enumerate() {
            if g > self.limits.max_compute_workgroups_per_dimension {
                bail!(
                    "{}::{entry}: {g} workgroups along axis {axis} exceed the device limit {} (batch too large?)",
                    family.name,
                    self.limits.max_compute_workgroups_per_dimension
                );
            }
        }
        let pipeline = self.pipeline(family, entry, defines)?;
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.layout,
            entries: &entries,
        });
        Ok(Dispatch {
            op: Op::Kernel {
                pipeline,
                bind_group,
                groups,
            },
            label: entry,
        })
    }

    /// Record `dispatches` into one compute pass of one command encoder and submit it. Does not wait — unless
    /// the list holds host steps ([`Dispatch::host`]): then the kernels between them are submitted in order and
    /// each host step runs where it stands.
    pub fn submit(&self, dispatches: &[Dispatch]) -> Result<()> {
        self.submit_after_clear(&[], dispatches)
    }

    /// Zero `clear` (e.g. a counter), then run `dispatches`, in one submit (one per run of kernels between host
    /// steps). Does not wait (but for host steps).
    pub fn submit_after_clear(&self, clear: &[&DBuf], dispatches: &[Dispatch]) -> Result<()> {
        if dispatches.is_empty() {
            let mut enc = self.device.create_command_encoder(&Default::default());
            for b in clear {
                enc.clear_buffer(&b.buf, 0, None);
            }
            self.queue.submit([enc.finish()]);
            return self.check();
        }
        let mut first = true;
        for part in dispatches.split_inclusive(Dispatch::is_host) {
            let (kernels, host) = match part.split_last() {
                Some((last, rest)) if last.is_host() => (rest, Some(last)),
                _ => (part, None),
            };
            if !kernels.is_empty() || first {
                let mut enc = self.device.create_command_encoder(&Default::default());
                if first {
                    for b in clear {
                        enc.clear_buffer(&b.buf, 0, None);
                    }
                }
                if self.profile.is_some() {
                    self.queue.submit([enc.finish()]);
                    self.profile_kernels(kernels)?;
                } else {
                    self.encode_kernels(&mut enc, kernels);
                    self.queue.submit([enc.finish()]);
                }
                self.check()?;
            }
            first = false;
            if let Some(Dispatch {
                op: Op::Host(f), ..
            }) = host
            {
                f(self)?;
            }
        }
        Ok(())
    }

    /// Record `dispatches` into an encoder the caller owns (to batch several steps in one submit). Host steps
    /// cannot run inside one encoder: a list with any is refused (use [`Context::submit`]).
    pub fn encode(&self, enc: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) -> Result<()> {
        if let Some(d) = dispatches.iter().find(|d| d.is_host()) {
            bail!(
                "encode: {} is a host step, which cannot be recorded into one command encoder; submit the list with \
                 Context::submit",
                d.label
            );
        }
        self.encode_kernels(enc, dispatches);
        Ok(())
    }

    /// `L2O_PROFILE`: each kernel in its own submit, waited for and timed ([`Context::profile_report`]).
    fn profile_kernels(&self, kernels: &[Dispatch]) -> Result<()> {
        self.wait()?;
        for d in kernels {
            if let Op::Kernel { pipeline, .. } = &d.op {
                let t0 = std::time::Instant::now();
                let mut enc = self.device.create_command_encoder(&Default::default());
                self.encode_kernels(&mut enc, std::slice::from_ref(d));
                self.queue.submit([enc.finish()]);
                self.wait()?;
                let dt = t0.elapsed().as_secs_f64();
                if let Some(p) = &self.profile {
                    let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
                    let e = p.entry(pipeline.name.clone()).or_default();
                    e.0 += 1;
                    e.1 += dt;
                }
            }
        }
        Ok(())
    }

    fn encode_kernels(&self, enc: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
        if dispatches.is_empty() {
            return;
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("l2o"),
            timestamp_writes: None,
        });
        for d in dispatches {
            if let Op::Kernel {
                pipeline,
                bind_group,
                groups,
            } = &d.op
            {
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                self.count_dispatch();
            }
        }
    }
}
