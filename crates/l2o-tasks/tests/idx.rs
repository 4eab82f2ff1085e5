//! IDX reader tests: generated files (gzip and raw) in `CARGO_TARGET_TMPDIR`, malformed inputs, a tiny
//! generated MNIST, and the real MNIST when present (skipped otherwise).

use flate2::Compression;
use flate2::write::GzEncoder;
use l2o_tasks::idx::{
    DataSetId, Idx, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, data_dir, load_mnist,
    read_idx, test_data_dir,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh directory for one test.
fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("idx-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The bytes of an IDX file: magic (0, 0, ty, dims.len()), dims big-endian, data.
fn idx_bytes(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, ty, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes `bytes` to `dir/name`, gzip-compressed if `gz`.
fn write(dir: &Path, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, if gz { gzip(bytes) } else { bytes.to_vec() }).unwrap();
    p
}

/// The error message (with its context chain) of reading `p`; panics if it reads.
fn err(p: &Path) -> String {
    match read_idx(p) {
        Ok(i) => panic!("{} read unexpectedly: dims {:?}", p.display(), i.dims),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
    }
}

#[test]
fn round_trip_gz_and_raw() {
    let d = tmp("round_trip");
    let img: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 7 % 256) as u8).collect();
    let lab = [3u8, 9];
    for gz in [false, true] {
        let ip = write(&d, &format!("img{gz}"), &idx_bytes(8, &[2, 3, 4], &img), gz);
        let lp = write(&d, &format!("lab{gz}"), &idx_bytes(8, &[2], &lab), gz);
        assert_eq!(
            read_idx(&ip).unwrap(),
            Idx {
                dims: vec![2, 3, 4],
                data: img.clone()
            }
        );
        assert_eq!(
            read_idx(&lp).unwrap(),
            Idx {
                dims: vec![2],
                data: lab.to_vec()
            }
        );
    }
    // 4 dimensions is the maximum and is accepted.
    let p = write(
        &d,
        "four",
        &idx_bytes(8, &[1, 2, 1, 2], &[1, 2, 3, 4]),
        true,
    );
    assert_eq!(read_idx(&p).unwrap().dims, vec![1, 2, 1, 2]);
}

#[test]
fn bad_magic_and_type() {
    let d = tmp("bad_magic");
    let mut b = idx_bytes(8, &[2], &[1, 2]);
    b[0] = 1;
    let p = write(&d, "magic", &b, false);
    assert_has(&err(&p), &[&p.display().to_string(), "bad magic"]);
    for (ty, name) in [(0x0Du8, "f32"), (0x09, "signed byte"), (0x0C, "i32")] {
        let p = write(
            &d,
            &format!("type{ty}"),
            &idx_bytes(ty, &[2], &[0; 8]),
            true,
        );
        let m = err(&p);
        assert_has(
            &m,
            &[
                &p.display().to_string(),
                "unsupported",
                &format!("0x{ty:02x}"),
                name,
            ],
        );
    }
    let p = write(&d, "type_unknown", &idx_bytes(0x42, &[2], &[0; 2]), false);
    assert_has(
        &err(&p),
        &[&p.display().to_string(), "unknown data type 0x42"],
    );
}

#[test]
fn dimension_counts() {
    let d = tmp("dims");
    let p = write(&d, "zero", &idx_bytes(8, &[], &[]), false);
    assert_has(&err(&p), &[&p.display().to_string(), "0 dimensions"]);
    let p = write(&d, "five", &idx_bytes(8, &[1, 1, 1, 1, 1], &[7]), true);
    assert_has(&err(&p), &[&p.display().to_string(), "5 dimensions"]);
    let p = write(&d, "zero_dim", &idx_bytes(8, &[3, 0, 2], &[]), false);
    assert_has(
        &err(&p),
        &[&p.display().to_string(), "dimension 1", "is zero"],
    );
    // A header cut inside the dimension list.
    let p = write(&d, "short_header", &idx_bytes(8, &[3, 4], &[])[..9], false);
    assert_has(&err(&p), &[&p.display().to_string(), "truncated header"]);
    // Fewer than 4 bytes.
    let p = write(&d, "tiny", &[0, 0], false);
    assert_has(&err(&p), &[&p.display().to_string(), "not an IDX file"]);
}

#[test]
fn truncated_and_trailing() {
    let d = tmp("truncated");
    for gz in [false, true] {
        let p = write(
            &d,
            &format!("short{gz}"),
            &idx_bytes(8, &[2, 3], &[1; 5]),
            gz,
        );
        assert_has(
            &err(&p),
            &[
                &p.display().to_string(),
                "truncated: expected 6 bytes of data",
                "found 5",
            ],
        );
        let p = write(
            &d,
            &format!("long{gz}"),
            &idx_bytes(8, &[2, 3], &[1; 9]),
            gz,
        );
        assert_has(&err(&p), &[&p.display().to_string(), "3 trailing bytes"]);
    }
}

#[test]
fn corrupt_gzip_and_garbage() {
    let d = tmp("corrupt");
    let data: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 251) as u8).collect();
    let z = gzip(&idx_bytes(8, &[40, 100], &data));
    let p = d.join("half.gz");
    std::fs::write(&p, &z[..z.len() / 2]).unwrap();
    assert_has(&err(&p), &[&p.display().to_string(), "corrupt gzip"]);
    // Flipped bytes in the middle of the deflate stream (or its CRC) must be reported, not panic.
    let mut bad = z.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let p = d.join("flipped.gz");
    std::fs::write(&p, &bad).unwrap();
    assert_has(&err(&p), &[&p.display().to_string()]);
    // Neither gzip nor IDX.
    let p = d.join("text.txt");
    std::fs::write(&p, b"hello, this is not an IDX file\n").unwrap();
    assert_has(&err(&p), &[&p.display().to_string(), "not an IDX file"]);
    // Empty file.
    let p = d.join("empty");
    std::fs::write(&p, b"").unwrap();
    assert_has(&err(&p), &[&p.display().to_string(), "not an IDX file"]);
}

#[test]
fn missing_file_names_path() {
    let d = tmp("missing");
    let p = d.join("nope-idx3-ubyte.gz");
    assert_has(&err(&p), &[&p.display().to_string(), "not found"]);
}

/// Writes a tiny MNIST (train: n_train images, test: n_test, rows × cols) with the given labels.
fn tiny_mnist(dir: &Path, train_labels: &[u8], test_labels: &[u8], n_train: u32, n_test: u32) {
    let (r, c) = (4u32, 4u32);
    let img =
        |n: u32, off: u32| -> Vec<u8> { (0..n * r * c).map(|i| ((i + off) % 256) as u8).collect() };
    write(
        dir,
        TRAIN_IMAGES,
        &idx_bytes(8, &[n_train, r, c], &img(n_train, 0)),
        true,
    );
    write(
        dir,
        TEST_IMAGES,
        &idx_bytes(8, &[n_test, r, c], &img(n_test, 100)),
        true,
    );
    write(
        dir,
        TRAIN_LABELS,
        &idx_bytes(8, &[train_labels.len() as u32], train_labels),
        true,
    );
    write(
        dir,
        TEST_LABELS,
        &idx_bytes(8, &[test_labels.len() as u32], test_labels),
        true,
    );
}

#[test]
fn load_tiny_mnist() {
    let d = tmp("tiny_ok");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    let m = load_mnist(&d).unwrap();
    assert_eq!(
        (m.n_train(), m.n_test(), m.rows, m.cols, m.pixels()),
        (5, 3, 4, 4, 16)
    );
    assert_eq!(m.train_labels, vec![5, 0, 4, 1, 9]);
    assert_eq!(m.test_labels, vec![7, 2, 1]);
    assert_eq!(m.train_images.len(), 5 * 16);
    assert_eq!(m.test_images.len(), 3 * 16);
    assert_eq!(m.train_images[17], 17);
    assert_eq!(m.test_images[0], 100);
    // The flag wins over everything.
    assert_eq!(data_dir(Some(&d)).unwrap(), d);
}

#[test]
fn load_tiny_mnist_uncompressed() {
    // The same files without `.gz` (as unpacked by `gunzip`) are accepted.
    let d = tmp("tiny_raw");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let gz = d.join(name);
        let raw = read_idx(&gz).unwrap();
        let dims: Vec<u32> = raw.dims.iter().map(|&x| x as u32).collect();
        write(
            &d,
            name.trim_end_matches(".gz"),
            &idx_bytes(8, &dims, &raw.data),
            false,
        );
        std::fs::remove_file(gz).unwrap();
    }
    let m = load_mnist(&d).unwrap();
    assert_eq!((m.n_train(), m.n_test(), m.pixels()), (5, 3, 16));
}

#[test]
fn load_tiny_mnist_errors() {
    let d = tmp("tiny_count");
    tiny_mnist(&d, &[5, 0, 4, 1], &[7, 2, 1], 5, 3);
    let m = format!("{:#}", load_mnist(&d).unwrap_err());
    assert_has(
        &m,
        &["count mismatch", "5 images", "4 labels", TRAIN_LABELS],
    );

    let d = tmp("tiny_label10");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 10, 1], 5, 3);
    let m = format!("{:#}", load_mnist(&d).unwrap_err());
    assert_has(&m, &["label 10 at index 1", "out of range", TEST_LABELS]);

    let d = tmp("tiny_missing");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    std::fs::remove_file(d.join(TEST_IMAGES)).unwrap();
    let m = format!("{:#}", load_mnist(&d).unwrap_err());
    let missing = d.join(TEST_IMAGES).display().to_string();
    assert_has(
        &m,
        &["MNIST file", &missing, "not found", "L2O_DATA", "--data"],
    );

    // Labels given as a 3-d file.
    let d = tmp("tiny_rank");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    write(
        &d,
        TRAIN_LABELS,
        &idx_bytes(8, &[5, 1, 1], &[5, 0, 4, 1, 9]),
        true,
    );
    let m = format!("{:#}", load_mnist(&d).unwrap_err());
    assert_has(&m, &["labels must be 1-d", TRAIN_LABELS]);

    // Test images of another size.
    let d = tmp("tiny_size");
    tiny_mnist(&d, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    write(&d, TEST_IMAGES, &idx_bytes(8, &[3, 2, 8], &[0; 48]), true);
    let m = format!("{:#}", load_mnist(&d).unwrap_err());
    assert_has(&m, &["4×4", "2×8"]);
}

#[test]
fn real_mnist() {
    let Some(dir) = test_data_dir() else {
        println!("SKIPPED: MNIST data not found (set L2O_DATA)");
        return;
    };
    let t = std::time::Instant::now();
    let m = load_mnist(&dir).unwrap();
    assert_eq!(
        (m.n_train(), m.n_test(), m.rows, m.cols, m.pixels()),
        (60000, 10000, 28, 28, 784)
    );
    assert_eq!(m.train_images.len(), 60000 * 784);
    assert_eq!(m.test_images.len(), 10000 * 784);
    let hist = |l: &[u8]| {
        let mut h = [0usize; 10];
        for &x in l {
            h[x as usize] += 1;
        }
        h
    };
    let (htr, hte) = (hist(&m.train_labels), hist(&m.test_labels));
    assert_eq!(htr.iter().sum::<usize>(), 60000);
    assert_eq!(hte.iter().sum::<usize>(), 10000);
    // The published class counts of MNIST.
    assert_eq!(
        htr,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(hte, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(&m.train_labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&m.test_labels[..3], &[7, 2, 1]);
    // Images are 0..=255 ink on a zero background: the corner pixel of every image is 0.
    assert!(m.train_images.chunks(784).all(|im| im[0] == 0));
    assert_eq!(*m.train_images.iter().max().unwrap(), 255);
    println!(
        "real MNIST from {} loaded in {:.2?}",
        dir.display(),
        t.elapsed()
    );
}

/// A data set is identified by its files' names and SHA-256, wherever it lies: the same files in two folders
/// are the same data set; one changed byte is a difference naming the file; the identity serializes without
/// any folder in it.
#[test]
fn dataset_identity_is_by_content_not_folder() {
    let a = tmp("id_a");
    let b = tmp("id_b");
    tiny_mnist(&a, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    tiny_mnist(&b, &[5, 0, 4, 1, 9], &[7, 2, 1], 5, 3);
    let ia = DataSetId::of_mnist(&a).unwrap();
    let ib = DataSetId::of_mnist(&b).unwrap();
    assert_eq!(ia, ib);
    assert!(ia.differences(&ib).is_empty());
    assert_eq!(ia.files.len(), 4);
    assert_eq!(ia.files[0].name, TRAIN_IMAGES);
    assert!(ia.files.iter().all(|f| f.sha256.len() == 64));
    let json = serde_json::to_string(&ia).unwrap();
    assert!(
        !json.contains(&a.display().to_string()) && !json.contains('/'),
        "{json}"
    );
    // other test labels: one difference, naming the test-labels file
    tiny_mnist(&b, &[5, 0, 4, 1, 9], &[7, 2, 2], 5, 3);
    let ib = DataSetId::of_mnist(&b).unwrap();
    let d = ia.differences(&ib);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains(TEST_LABELS), "{d:?}");
    // a folder without the files: the error says how to point l2o at them
    let e = format!("{:#}", DataSetId::of_mnist(&tmp("id_none")).unwrap_err());
    assert_has(&e, &["not found", "--data", "L2O_DATA"]);
}
