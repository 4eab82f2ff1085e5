//! The processes of one `l2o` run: this one alone, or the ranks of an MPI job — `mpirun -np P l2o train …` or
//! Slurm's `srun`, with l2o built `--features mpi` (rsmpi on the system's MPI). Each rank opens its own device
//! (its local rank spreads the ranks of a host over its GPUs), [`l2o_meta::group`] gives it whole shards of
//! every meta-batch, validation set and held-out set, and rank 0 writes and reports.
//!
//! Faults: an error on any rank prints that rank's message and then aborts the whole job (`MPI_Abort`), as does
//! a panic — a rank never waits forever in a collective for a rank that has already failed.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;
use l2o_meta::group::{Group, Solo};

thread_local! {
    static GROUP: RefCell<Option<Rc<dyn Group>>> = const { RefCell::new(None) };
}

/// Where this process stands in an MPI job, once MPI is up (readable from any thread, e.g. the panic hook;
/// the collectives go through the main thread's [`group`]).
#[derive(Clone, Copy, Debug)]
struct Place {
    rank: usize,
    size: usize,
    /// Its rank among the ranks of its host.
    local: usize,
}

static PLACE: std::sync::OnceLock<Place> = std::sync::OnceLock::new();

/// Whether this process runs under MPI (`mpirun -np 1` included).
pub fn is_mpi() -> bool {
    PLACE.get().is_some()
}

/// Whether this process is one of several MPI ranks: errors and panics then abort the job.
fn distributed() -> bool {
    PLACE.get().is_some_and(|p| p.size > 1)
}

/// The local rank of a distributed run (picks this rank's GPU: [`l2o_engine::ContextOptions::local_rank`]).
pub fn local_rank() -> Option<usize> {
    PLACE.get().map(|p| p.local)
}

/// The ranks a launcher started, by the variables OpenMPI, MPICH/Hydra and Slurm set (None: not launched).
fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Whether a launcher (mpirun, mpiexec, srun) started this process.
#[cfg(feature = "mpi")]
fn launched() -> bool {
    launched_size().is_some()
        || ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
}

/// Error when a launcher started `launched` processes (more than one) and this process cannot join them
/// (no MPI in this build, or none initialised): each would train alone and overwrite the others' output.
fn refuse_without_mpi(launched: Option<usize>) -> Result<()> {
    if let Some(p) = launched.filter(|&p| p > 1) {
        anyhow::bail!(
            "started as one of {p} processes by mpirun/srun, but this l2o was built without MPI: each process \
             would train alone and overwrite the others' output. Build it with `cargo build --release -p l2o-cli \
             --features mpi` (docs/distributed.md), or run one process"
        );
    }
    Ok(())
}

/// This run's processes; keeps MPI initialised while it lives (MPI is finalised when it drops).
pub struct Cluster {
    group: Rc<dyn Group>,
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl Cluster {
    /// MPI's world when a launcher started this process (and l2o was built with MPI), else one process.
    pub fn init() -> Result<Self> {
        #[cfg(feature = "mpi")]
        if launched() {
            use mpi::traits::Communicator;
            let universe = mpi::initialize().ok_or_else(|| {
                anyhow::anyhow!(
                    "MPI could not be initialised (is it already initialised by a host program?)"
                )
            })?;
            let world = universe.world();
            let local = world.split_shared(world.rank());
            let _ = PLACE.set(Place {
                rank: world.rank() as usize,
                size: world.size() as usize,
                local: local.rank() as usize,
            });
            return Ok(Self::with(Rc::new(World { comm: world }), Some(universe)));
        }
        refuse_without_mpi(launched_size())?;
        Ok(Self::with(
            Rc::new(Solo),
            #[cfg(feature = "mpi")]
            None,
        ))
    }

    fn with(
        group: Rc<dyn Group>,
        #[cfg(feature = "mpi")] universe: Option<mpi::environment::Universe>,
    ) -> Self {
        GROUP.with(|g| *g.borrow_mut() = Some(group.clone()));
        Self {
            group,
            #[cfg(feature = "mpi")]
            _universe: universe,
        }
    }

    pub fn group(&self) -> &dyn Group {
        self.group.as_ref()
    }
}

/// The group of this run (one process until [`Cluster::init`]).
pub fn group() -> Rc<dyn Group> {
    GROUP.with(|g| g.borrow().clone().unwrap_or_else(|| Rc::new(Solo)))
}

/// Whether this process is rank 0 (or alone): the one that writes files and shows progress.
pub fn is_root() -> bool {
    group().is_root()
}

/// "rank r of P: " in a distributed run, else "" (from any thread).
pub fn prefix() -> String {
    match PLACE.get() {
        Some(p) if p.size > 1 => format!("rank {} of {}: ", p.rank, p.size),
        _ => String::new(),
    }
}

/// End the job after this rank printed its error: `MPI_Abort` when distributed (every rank stops, mpirun
/// returns non-zero), else exit with `code`.
pub fn fail(code: i32) -> ! {
    #[cfg(feature = "mpi")]
    if distributed() {
        // SAFETY: MPI is initialised (PLACE is set after MPI_Init and never cleared); MPI_Abort may be called
        // from any state of this process and does not return.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
        }
    }
    std::process::exit(code)
}

/// After the default panic message, abort the whole job when distributed (a panicking rank must not leave the
/// others waiting in a collective).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if distributed() {
            eprintln!("{}panicked: aborting every rank", prefix());
            fail(101);
        }
    }));
}

/// MPI's world communicator as a [`Group`]: the all-gather is `MPI_Allgather` of the counts, then
/// `MPI_Allgatherv` of the values (rank order, no arithmetic: the fixed-order sums happen in l2o-meta).
#[cfg(feature = "mpi")]
struct World {
    comm: mpi::topology::SimpleCommunicator,
}

#[cfg(feature = "mpi")]
impl Group for World {
    fn rank(&self) -> usize {
        use mpi::traits::Communicator;
        self.comm.rank() as usize
    }
    fn size(&self) -> usize {
        use mpi::traits::Communicator;
        self.comm.size() as usize
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        use mpi::datatype::PartitionMut;
        use mpi::traits::CommunicatorCollectives;
        let n = i32::try_from(local.len()).map_err(|_| {
            anyhow::anyhow!("{} values are too many for one MPI message", local.len())
        })?;
        let mut counts = vec![0i32; self.size()];
        self.comm.all_gather_into(&n, &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut buf = vec![0f64; total];
        {
            let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            self.comm.all_gather_varcount_into(local, &mut part);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| buf[d as usize..(d + c) as usize].to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_of_several_launched_processes_without_mpi_is_refused() {
        let e = super::refuse_without_mpi(Some(4)).unwrap_err().to_string();
        assert!(
            e.contains("one of 4 processes") && e.contains("--features mpi"),
            "{e}"
        );
        assert!(super::refuse_without_mpi(Some(1)).is_ok());
        assert!(super::refuse_without_mpi(None).is_ok());
    }
}
