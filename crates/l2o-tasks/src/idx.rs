//! # IDX reader (MNIST)
//!
//! The IDX format of LeCun's MNIST distribution: a 4-byte big-endian magic number — two zero bytes, a data
//! type code (only `0x08`, unsigned byte, is supported here) and the number of dimensions — then one
//! big-endian u32 per dimension, then the data, row-major, `∏ dims` bytes for unsigned bytes. Images are
//! `0x00000803` (count × rows × cols), labels `0x00000801` (count).
//!
//! [`read_idx`] reads one file, gzip-compressed (detected by the gzip magic `1f 8b`, decompressed with
//! `flate2`) or raw, and validates it strictly: every error names the file and says what is wrong, and
//! malformed input never panics. [`load_mnist`] reads and cross-checks the four MNIST files of a directory;
//! [`data_dir`] finds that directory (`--data` flag, `L2O_DATA`, or the user's data folder
//! `$XDG_DATA_HOME/l2o/mnist`, i.e. `~/.local/share/l2o/mnist`); [`test_data_dir`] is `L2O_DATA` only (the test
//! command sets it; tests skip with a message without it). [`DataSetId`] identifies the files by name and
//! SHA-256, so a checkpoint can record *which* MNIST it was trained on without storing a folder of one machine.

use anyhow::{Context as _, Result, bail};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One IDX array of unsigned bytes: its dimensions (outermost first) and its data, row-major,
/// `data.len() == dims.iter().product()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first (1 to 4 of them, none zero).
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// The IDX data type codes, for error messages.
fn type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => return None,
    })
}

/// Reads one IDX file of unsigned bytes, gzip-compressed (starting with `1f 8b`) or raw.
///
/// Checks: the first two bytes are zero, the type byte is `0x08` (unsigned byte; another type is an error
/// naming it), 1 to 4 dimensions, none of them zero, and the data holds exactly `∏ dims` bytes (fewer:
/// "truncated", more: "trailing bytes"). A missing file, an unreadable file and a corrupt gzip stream are
/// errors too; each error names `path`. Never panics.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let p = path.display();
    let raw = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("IDX file {p} not found"),
        Err(e) => return Err(e).with_context(|| format!("cannot read IDX file {p}")),
    };
    let mut bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("{p}: corrupt gzip stream: {e}"))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 {
        bail!(
            "{p}: not an IDX file: {} bytes, shorter than the 4-byte magic number",
            bytes.len()
        );
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!(
            "{p}: not an IDX file: bad magic number 0x{magic:08x} (the first two bytes must be zero)"
        );
    }
    let ty = bytes[2];
    if ty != 0x08 {
        match type_name(ty) {
            Some(name) => bail!(
                "{p}: unsupported IDX data type 0x{ty:02x} ({name}); only 0x08 (unsigned byte) is supported"
            ),
            None => bail!(
                "{p}: not an IDX file: unknown data type 0x{ty:02x} in magic number 0x{magic:08x}"
            ),
        }
    }
    let ndims = bytes[3] as usize;
    if !(1..=4).contains(&ndims) {
        bail!("{p}: IDX file with {ndims} dimensions; 1 to 4 are supported");
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        bail!(
            "{p}: truncated header: {ndims} dimensions need {header} header bytes, found {}",
            bytes.len()
        );
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        bail!("{p}: dimension {i} of {dims:?} is zero");
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{p}: dimensions {dims:?} overflow the address space"))?;
    let found = bytes.len() - header;
    if found < expected {
        bail!(
            "{p}: truncated: expected {expected} bytes of data, found {found} (dimensions {dims:?})"
        );
    }
    if found > expected {
        bail!(
            "{p}: {} trailing bytes after the {expected} bytes of data for dimensions {dims:?}",
            found - expected
        );
    }
    bytes.drain(..header);
    Ok(Idx { dims, data: bytes })
}

/// The MNIST data set: images row-major (n × rows × cols bytes, 0 = background, 255 = ink), labels 0..=9.
#[derive(Clone, Debug)]
pub struct MnistData {
    /// Training images, `n_train() × rows × cols` bytes.
    pub train_images: Vec<u8>,
    /// Training labels, `n_train()` values in 0..=9.
    pub train_labels: Vec<u8>,
    /// Test images, `n_test() × rows × cols` bytes.
    pub test_images: Vec<u8>,
    /// Test labels, `n_test()` values in 0..=9.
    pub test_labels: Vec<u8>,
    /// Image height (28 for MNIST).
    pub rows: usize,
    /// Image width (28 for MNIST).
    pub cols: usize,
}

impl MnistData {
    /// Number of training examples (60000 for MNIST).
    pub fn n_train(&self) -> usize {
        self.train_labels.len()
    }
    /// Number of test examples (10000 for MNIST).
    pub fn n_test(&self) -> usize {
        self.test_labels.len()
    }
    /// Pixels per image, rows × cols (784 for MNIST).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }
}

/// The training images file name.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// The training labels file name.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// The test images file name.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// The test labels file name.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";

/// The path of MNIST file `name` (one of the `*.gz` constants) in `dir`: `dir/name` if it exists, else the
/// uncompressed `dir/name-without-.gz` if that exists; an error with setup instructions if neither does.
fn mnist_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(name);
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name.trim_end_matches(".gz"));
    if plain.is_file() {
        return Ok(plain);
    }
    bail!(
        "MNIST file {} not found: put the four IDX files of MNIST ({TRAIN_IMAGES}, {TRAIN_LABELS}, \
         {TEST_IMAGES}, {TEST_LABELS}) in {}, or point --data / L2O_DATA at them",
        gz.display(),
        dir.display()
    )
}

/// Reads one split (images, labels) and checks shapes, counts and label range; returns (images, labels,
/// rows, cols).
fn load_split(dir: &Path, images: &str, labels: &str) -> Result<(Vec<u8>, Vec<u8>, usize, usize)> {
    let ip = mnist_file(dir, images)?;
    let lp = mnist_file(dir, labels)?;
    let img = read_idx(&ip)?;
    let lab = read_idx(&lp)?;
    if img.dims.len() != 3 {
        bail!(
            "{}: MNIST images must be 3-d (count × rows × cols), found dimensions {:?}",
            ip.display(),
            img.dims
        );
    }
    if lab.dims.len() != 1 {
        bail!(
            "{}: MNIST labels must be 1-d (count), found dimensions {:?}",
            lp.display(),
            lab.dims
        );
    }
    if img.dims[0] != lab.dims[0] {
        bail!(
            "MNIST count mismatch: {} holds {} images but {} holds {} labels",
            ip.display(),
            img.dims[0],
            lp.display(),
            lab.dims[0]
        );
    }
    if let Some(i) = lab.data.iter().position(|&l| l >= 10) {
        bail!(
            "{}: label {} at index {i} is out of range (MNIST labels are 0..=9)",
            lp.display(),
            lab.data[i]
        );
    }
    Ok((img.data, lab.data, img.dims[1], img.dims[2]))
}

/// Reads the four MNIST files ([`TRAIN_IMAGES`], [`TRAIN_LABELS`], [`TEST_IMAGES`], [`TEST_LABELS`], or
/// their uncompressed versions without `.gz`) from `dir` and checks them: images 3-d, labels 1-d, as many
/// labels as images in each split, the same image size in both splits, labels below 10.
pub fn load_mnist(dir: &Path) -> Result<MnistData> {
    let (train_images, train_labels, rows, cols) = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
    let (test_images, test_labels, trows, tcols) = load_split(dir, TEST_IMAGES, TEST_LABELS)?;
    if (rows, cols) != (trows, tcols) {
        bail!(
            "MNIST in {}: training images are {rows}×{cols} but test images are {trows}×{tcols}",
            dir.display()
        );
    }
    Ok(MnistData {
        train_images,
        train_labels,
        test_images,
        test_labels,
        rows,
        cols,
    })
}

/// `dir/mnist` if it holds the training images, else `dir` (so `L2O_DATA` may name either the MNIST folder
/// or its parent data folder).
fn resolve_env_dir(dir: PathBuf) -> PathBuf {
    let sub = dir.join("mnist");
    if has_train_images(&sub) { sub } else { dir }
}

fn has_train_images(dir: &Path) -> bool {
    dir.join(TRAIN_IMAGES).is_file() || dir.join(TRAIN_IMAGES.trim_end_matches(".gz")).is_file()
}

/// `L2O_DATA`, resolved with [`resolve_env_dir`], if set and non-empty.
fn env_data_dir() -> Option<PathBuf> {
    std::env::var_os("L2O_DATA")
        .filter(|v| !v.is_empty())
        .map(|v| resolve_env_dir(PathBuf::from(v)))
}

/// The user's own default MNIST folder: `$XDG_DATA_HOME/l2o/mnist`, else `$HOME/.local/share/l2o/mnist`
/// (None without either variable).
pub fn user_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })?;
    Some(base.join("l2o").join("mnist"))
}

/// The MNIST directory: `flag` (a `--data` option) if given; else the environment variable `L2O_DATA` (the
/// directory holding the MNIST files, or one holding a `mnist/` subdirectory with them); else the user's data
/// folder ([`user_data_dir`]) when it holds the files. There is no other default: without any of these the
/// error says how to point l2o at the four IDX files.
pub fn data_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(f) = flag {
        return Ok(f.to_path_buf());
    }
    if let Some(d) = env_data_dir() {
        return Ok(d);
    }
    let user = user_data_dir();
    if let Some(u) = user.as_ref().filter(|u| has_train_images(u)) {
        return Ok(u.clone());
    }
    bail!(
        "no MNIST folder: pass --data <folder> or set L2O_DATA=<folder>, the folder holding the four IDX files of \
         MNIST ({TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES}, {TEST_LABELS}, gzipped or not){}",
        match user {
            Some(u) => format!(", or put them in {}", u.display()),
            None => String::new(),
        }
    )
}

/// The MNIST directory for tests: `L2O_DATA` (same rule as [`data_dir`]); `None` when it is unset or does not
/// hold the training images (tests then skip, saying so).
pub fn test_data_dir() -> Option<PathBuf> {
    env_data_dir().filter(|d| has_train_images(d))
}

/// One file of a data set: its name (as found in the folder: gzipped or not) and its SHA-256 (hex).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataFile {
    /// The file name, without any folder.
    pub name: String,
    /// SHA-256 of the file's bytes as stored (lower-case hex).
    pub sha256: String,
}

/// What identifies a data set independently of where it lies: the four MNIST files' names and SHA-256.
/// Stored in training checkpoints (task options) instead of a folder; `l2o eval` compares it with the files it
/// is given ([`DataSetId::differences`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataSetId {
    /// Training images, training labels, test images, test labels, in that order.
    pub files: Vec<DataFile>,
}

impl DataSetId {
    /// The identity of the MNIST files in `dir` (the files [`load_mnist`] would read).
    pub fn of_mnist(dir: &Path) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let mut files = Vec::new();
        for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
            let path = mnist_file(dir, name)?;
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read MNIST file {}", path.display()))?;
            let digest = Sha256::digest(&bytes);
            files.push(DataFile {
                name: path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        Ok(Self { files })
    }

    /// Human-readable differences of `other` from `self` (empty when they hold the same bytes). A file stored
    /// gzipped in one and raw in the other differs by name and hash, and is reported as such.
    pub fn differences(&self, other: &DataSetId) -> Vec<String> {
        let mut out = Vec::new();
        for (i, (a, b)) in self.files.iter().zip(&other.files).enumerate() {
            if a != b {
                out.push(format!(
                    "file {} : {} (sha256 {}…) vs {} (sha256 {}…)",
                    i + 1,
                    a.name,
                    &a.sha256[..a.sha256.len().min(12)],
                    b.name,
                    &b.sha256[..b.sha256.len().min(12)]
                ));
            }
        }
        if self.files.len() != other.files.len() {
            out.push(format!(
                "{} files vs {}",
                self.files.len(),
                other.files.len()
            ));
        }
        out
    }
}
