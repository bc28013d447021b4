//! Tests of `train::data` on small files written here, a loopback HTTP server, and (if present)
//! the real Fashion-MNIST files. Nothing here reads or sets environment variables other tests
//! could race on, touches the user's cache, or reaches beyond 127.0.0.1.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};
use train::data::*;

// ---------------------------------------------------------------- helpers

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("train-data-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = 0x0803u32.to_be_bytes().to_vec();
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend(pixels);
    v
}

fn idx_labels(count: u32, labels: &[u8]) -> Vec<u8> {
    let mut v = 0x0801u32.to_be_bytes().to_vec();
    v.extend(count.to_be_bytes());
    v.extend(labels);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A small valid split: `n` images of 2x3 with distinct pixels, labels `i % 10`.
fn small_split(n: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (pixels, labels)
}

fn assert_err_contains<T: std::fmt::Debug>(result: Result<T, DataError>, needles: &[&str]) -> String {
    let msg = result.expect_err("expected an error").to_string();
    for needle in needles {
        assert!(msg.contains(needle), "error {msg:?} should contain {needle:?}");
    }
    msg
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------- IDX reader

#[test]
fn good_files_load_exactly_gzip_or_raw() {
    let (pixels, labels) = small_split(5);
    let images_raw = idx_images(5, 2, 3, &pixels);
    let labels_raw = idx_labels(5, &labels);
    let want = Dataset { images: pixels.clone(), labels: labels.clone(), rows: 2, cols: 3 };

    let gz = TempDir::new("good-gz");
    fs::write(gz.0.join("t10k-images-idx3-ubyte.gz"), gzip(&images_raw)).unwrap();
    fs::write(gz.0.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels_raw)).unwrap();
    assert_eq!(load_split(&gz.0, Split::Test).unwrap(), want);

    // Uncompressed files under the names without .gz (as after gunzip).
    let raw = TempDir::new("good-raw");
    fs::write(raw.0.join("t10k-images-idx3-ubyte"), &images_raw).unwrap();
    fs::write(raw.0.join("t10k-labels-idx1-ubyte"), &labels_raw).unwrap();
    assert_eq!(load_split(&raw.0, Split::Test).unwrap(), want);

    // Compression is detected by content, not by name.
    let odd = TempDir::new("good-odd-names");
    fs::write(odd.0.join("raw.gz"), &images_raw).unwrap();
    fs::write(odd.0.join("packed.bin"), gzip(&labels_raw)).unwrap();
    assert_eq!(read_images(&odd.0.join("raw.gz")).unwrap(), (pixels, 5, 2, 3));
    assert_eq!(read_labels(&odd.0.join("packed.bin")).unwrap(), labels);
}

#[test]
fn any_image_size_is_accepted_and_reported() {
    let dir = TempDir::new("size");
    let path = dir.0.join("imgs");
    fs::write(&path, idx_images(2, 5, 7, &[9; 70])).unwrap();
    let (_, count, rows, cols) = read_images(&path).unwrap();
    assert_eq!((count, rows, cols), (2, 5, 7));
}

#[test]
fn truncated_and_trailing_payloads_are_errors() {
    let dir = TempDir::new("payload");
    let path = dir.0.join("train-images-idx3-ubyte.gz");
    let pixels = vec![0u8; 7840];
    fs::write(&path, gzip(&idx_images(10, 28, 28, &pixels[..7839]))).unwrap();
    assert_err_contains(
        read_images(&path),
        &["train-images-idx3-ubyte.gz", "7839 payload bytes", "10 images of 28x28 = 7840"],
    );

    let mut long = idx_images(10, 28, 28, &pixels);
    long.push(0);
    fs::write(&path, gzip(&long)).unwrap();
    assert_err_contains(read_images(&path), &["train-images-idx3-ubyte.gz", "7841", "7840"]);

    // Labels: header count disagreeing with the payload.
    let labels = dir.0.join("train-labels-idx1-ubyte");
    fs::write(&labels, idx_labels(10, &[1; 9])).unwrap();
    assert_err_contains(read_labels(&labels), &["train-labels-idx1-ubyte", "9 payload bytes", "10 labels"]);
}

#[test]
fn wrong_magic_is_an_error() {
    let dir = TempDir::new("magic");
    let path = dir.0.join("t10k-labels-idx1-ubyte.gz");
    fs::write(&path, gzip(&idx_images(1, 1, 1, &[0]))).unwrap();
    assert_err_contains(
        read_labels(&path),
        &["t10k-labels-idx1-ubyte.gz: magic number 0x00000803, expected 0x00000801 (labels)"],
    );
    fs::write(&path, idx_labels(1, &[0])).unwrap();
    assert_err_contains(read_images(&path), &["t10k-labels-idx1-ubyte.gz", "0x00000801", "0x00000803"]);
}

#[test]
fn bad_header_values_are_errors() {
    let dir = TempDir::new("header");
    let path = dir.0.join("imgs.idx");
    fs::write(&path, idx_images(0, 0, 28, &[])).unwrap();
    assert_err_contains(read_images(&path), &["imgs.idx", "0 rows"]);
    fs::write(&path, [0, 0, 8]).unwrap();
    assert_err_contains(read_images(&path), &["imgs.idx", "3 bytes long"]);
    fs::write(&path, [0, 0, 8, 3, 0, 0]).unwrap();
    assert_err_contains(read_images(&path), &["imgs.idx", "6 bytes long", "16-byte"]);
    // Dimensions whose product overflows must be an error, not a panic.
    fs::write(&path, idx_images(u32::MAX, u32::MAX, u32::MAX, &[])).unwrap();
    assert_err_contains(read_images(&path), &["imgs.idx", "overflows"]);
}

#[test]
fn label_out_of_range_is_an_error() {
    let dir = TempDir::new("label");
    let path = dir.0.join("train-labels-idx1-ubyte.gz");
    fs::write(&path, gzip(&idx_labels(4, &[1, 9, 10, 2]))).unwrap();
    assert_err_contains(read_labels(&path), &["train-labels-idx1-ubyte.gz", "label 10 at index 2"]);
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = TempDir::new("count");
    let (pixels, labels) = small_split(3);
    fs::write(dir.0.join("train-images-idx3-ubyte.gz"), gzip(&idx_images(3, 2, 3, &pixels))).unwrap();
    fs::write(dir.0.join("train-labels-idx1-ubyte.gz"), gzip(&idx_labels(2, &labels[..2]))).unwrap();
    assert_err_contains(
        load_split(&dir.0, Split::Train),
        &["train-images-idx3-ubyte.gz says 3 images", "train-labels-idx1-ubyte.gz says 2 labels"],
    );
}

#[test]
fn missing_or_unreadable_files_are_errors() {
    let dir = TempDir::new("missing");
    assert_err_contains(load_split(&dir.0, Split::Train), &["train-images-idx3-ubyte.gz", "no "]);
    assert_err_contains(read_labels(&dir.0.join("nope")), &["nope", "reading"]);
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let dir = TempDir::new("prefixes");
    let path = dir.0.join("f");
    let (pixels, _) = small_split(3);
    let raw = idx_images(3, 2, 3, &pixels);
    let gz = gzip(&raw);
    for full in [&raw, &gz] {
        for len in 0..full.len() {
            fs::write(&path, &full[..len]).unwrap();
            assert!(read_images(&path).is_err(), "prefix of {len} bytes should fail");
        }
    }
    // Garbage after a complete gzip member is not silently ignored.
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"junk");
    fs::write(&path, &trailing).unwrap();
    assert_err_contains(read_images(&path), &["gzip"]);
}

#[test]
fn errors_work_with_anyhow() {
    fn takes<E: std::error::Error + Send + Sync + 'static>(_: E) {}
    takes(DataError::NoCacheDir);
}

// ---------------------------------------------------------------- real data

#[test]
fn real_fashion_mnist_loads() {
    let dir = std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fashion-mnist"));
    if !dir.is_dir() {
        // Straight to stderr: libtest would swallow println! and the skip would look like a pass.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping real_fashion_mnist_loads: Fashion-MNIST not found (set FASHION_MNIST_DIR)"
        );
        return;
    }
    for (split, n) in [(Split::Train, 60000), (Split::Test, 10000)] {
        let ds = load_split(&dir, split).unwrap();
        assert_eq!((ds.len(), ds.rows, ds.cols, ds.images.len()), (n, 28, 28, n * 784));
        // Fashion-MNIST is balanced: every class has a tenth of each split.
        let mut per_class = [0usize; 10];
        ds.labels.iter().for_each(|&l| per_class[l as usize] += 1);
        assert_eq!(per_class, [n / 10; 10]);
    }
}

// ---------------------------------------------------------------- locate

/// A directory holding the four files (empty: `search` only checks they exist).
fn dir_with_files(name: &str, gz: bool, skip: Option<&str>) -> TempDir {
    let dir = TempDir::new(name);
    for f in FILES.iter().filter(|f| Some(**f) != skip) {
        let f = if gz { f } else { f.trim_end_matches(".gz") };
        fs::write(dir.0.join(f), b"").unwrap();
    }
    dir
}

#[test]
fn search_order_and_explicit_dirs_must_be_complete() {
    let full = dir_with_files("loc-full", true, None);
    let raw = dir_with_files("loc-raw", false, None);
    let partial = dir_with_files("loc-partial", true, Some(FILES[3]));
    let empty = TempDir::new("loc-empty");
    let nowhere = empty.0.join("absent");
    let present = |d: &TempDir| Location::Present(d.0.clone());

    // --data wins, and is not allowed to fall through when incomplete.
    assert_eq!(search(Some(&full.0), Some(&partial.0), &raw.0, None, &FILES).unwrap(), present(&full));
    let msg = assert_err_contains(
        search(Some(&partial.0), Some(&full.0), &full.0, Some(&full.0), &FILES),
        &["--data", "t10k-labels-idx1-ubyte.gz"],
    );
    assert!(msg.contains(&partial.0.display().to_string()));
    // Then FASHION_MNIST_DIR, same rule; an empty value counts as unset.
    assert_eq!(search(None, Some(&raw.0), &full.0, None, &FILES).unwrap(), present(&raw));
    assert_err_contains(
        search(None, Some(&partial.0), &full.0, None, &FILES),
        &["FASHION_MNIST_DIR", "t10k-labels"],
    );
    assert_eq!(search(None, Some(Path::new("")), &full.0, None, &FILES).unwrap(), present(&full));
    // Then the system (Debian) dir, then a complete cache, else download into the cache.
    assert_eq!(search(None, None, &raw.0, Some(&full.0), &FILES).unwrap(), present(&raw));
    assert_eq!(search(None, None, &nowhere, Some(&full.0), &FILES).unwrap(), present(&full));
    assert_eq!(
        search(None, None, &partial.0, Some(&nowhere), &FILES).unwrap(),
        Location::Download(nowhere.clone())
    );
    assert_eq!(
        search(None, None, &nowhere, Some(&partial.0), &FILES).unwrap(),
        Location::Download(partial.0.clone())
    );
    assert_err_contains(search(None, None, &nowhere, None, &FILES), &["XDG_CACHE_HOME", "HOME", "--data"]);
}

/// Evaluation needs the two test files only: a directory without the training files serves it,
/// and a cache holding the test files is not downloaded into.
#[test]
fn evaluation_needs_only_the_test_files() {
    let test_only = TempDir::new("loc-test-only");
    for f in files_of(&[Split::Test]) {
        fs::write(test_only.0.join(f), b"").unwrap();
    }
    assert_eq!(files_of(&[Split::Test]), [FILES[2], FILES[3]]);
    let nowhere = test_only.0.join("absent");
    let test = files_of(&[Split::Test]);
    assert_eq!(
        search(Some(&test_only.0), None, &nowhere, None, &test).unwrap(),
        Location::Present(test_only.0.clone())
    );
    assert_eq!(
        search(None, None, &nowhere, Some(&test_only.0), &test).unwrap(),
        Location::Present(test_only.0.clone())
    );
    assert_err_contains(search(Some(&test_only.0), None, &nowhere, None, &FILES), &["--data", FILES[0]]);
    assert_eq!(
        search(None, None, &nowhere, Some(&test_only.0), &FILES).unwrap(),
        Location::Download(test_only.0.clone())
    );
}

// ---------------------------------------------------------------- download

struct Route {
    name: String,
    body: Vec<u8>,
    /// The Content-Length to announce; larger than the body simulates a cut connection.
    content_length: usize,
}

/// Serves at most `max_requests` connections (or until 20 s pass) on 127.0.0.1, then stops.
fn serve(routes: Vec<Route>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    let _ = respond(stream, &routes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        }
    });
    format!("http://{addr}/")
}

fn respond(mut stream: TcpStream, routes: &[Route]) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Read the whole request head, so closing early does not reset the connection.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    match routes.iter().find(|r| path == format!("/{}", r.name)) {
        Some(r) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                r.content_length
            )?;
            stream.write_all(&r.body)?;
        }
        None => {
            stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?
        }
    }
    stream.flush()
}

/// The four canonical files holding tiny splits (6 train, 4 test images of 2x3), gzipped.
fn tiny_archive() -> Vec<(String, Vec<u8>)> {
    let (train_px, train_lb) = small_split(6);
    let (test_px, test_lb) = small_split(4);
    let raw = [
        idx_images(6, 2, 3, &train_px),
        idx_labels(6, &train_lb),
        idx_images(4, 2, 3, &test_px),
        idx_labels(4, &test_lb),
    ];
    FILES.iter().zip(raw).map(|(name, data)| (name.to_string(), gzip(&data))).collect()
}

fn routes_and_sums(files: &[(String, Vec<u8>)]) -> (Vec<Route>, Vec<(&str, String)>) {
    let routes = files
        .iter()
        .map(|(name, body)| Route { name: name.clone(), body: body.clone(), content_length: body.len() })
        .collect();
    let sums = files.iter().map(|(name, body)| (name.as_str(), md5_hex(body))).collect();
    (routes, sums)
}

fn as_refs<'a>(sums: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    sums.iter().map(|(n, s)| (*n, s.as_str())).collect()
}

/// A URL on a loopback port nothing listens on.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

#[test]
fn download_good_files_then_load() {
    let tmp = TempDir::new("dl-good");
    let files = tiny_archive();
    let (routes, sums) = routes_and_sums(&files);
    let base = serve(routes, 4);
    // A not-yet-existing nested directory is created.
    let dir = tmp.0.join("cache/convnet/fashion-mnist");
    fetch_into(&dir, &base, &as_refs(&sums), false).unwrap();
    let mut want: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(file_names(&dir), want, "exactly the four files, no temporaries");
    for (name, body) in &files {
        assert_eq!(&fs::read(dir.join(name)).unwrap(), body);
    }
    let train = load_split(&dir, Split::Train).unwrap();
    let test = load_split(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len(), train.rows, train.cols), (6, 4, 2, 3));
    assert_eq!(train.images, small_split(6).0);

    // Complete: a second call needs no network at all.
    fetch_into(&dir, &dead_url(), &as_refs(&sums), false).unwrap();
}

#[test]
fn truncated_download_is_an_error_and_leaves_nothing() {
    let tmp = TempDir::new("dl-truncated");
    let files = tiny_archive();
    let (mut routes, sums) = routes_and_sums(&files);
    let body_len = routes[0].body.len();
    routes[0].content_length = body_len + 100;
    let base = serve(routes, 4);
    let expected = (body_len + 100).to_string();
    assert_err_contains(
        fetch_into(&tmp.0, &base, &as_refs(&sums), false),
        &[FILES[0], &base, &format!("got {body_len} of {expected} bytes"), "cut short"],
    );
    assert!(file_names(&tmp.0).is_empty(), "left behind: {:?}", file_names(&tmp.0));
}

#[test]
fn wrong_checksum_is_an_error_and_leaves_nothing() {
    let tmp = TempDir::new("dl-checksum");
    let files = tiny_archive();
    let (routes, mut sums) = routes_and_sums(&files);
    let actual = sums[0].1.clone();
    let bogus = "0123456789abcdef0123456789abcdef".to_string();
    sums[0].1 = bogus.clone();
    let base = serve(routes, 4);
    assert_err_contains(fetch_into(&tmp.0, &base, &as_refs(&sums), false), &[FILES[0], &bogus, &actual]);
    assert!(file_names(&tmp.0).is_empty(), "left behind: {:?}", file_names(&tmp.0));
}

#[test]
fn http_failures_name_the_url_and_the_alternatives() {
    let hints = ["--data DIR", "FASHION_MNIST_DIR", "apt-get install dataset-fashion-mnist"];
    let sums = [(FILES[1], "25c81989df183df01b3e8a0aad5dffbe")];

    let tmp = TempDir::new("dl-404");
    let base = serve(Vec::new(), 1);
    let url = format!("{base}{}", FILES[1]);
    let msg = assert_err_contains(fetch_into(&tmp.0, &base, &sums, false), &[&url, "404"]);
    assert!(hints.iter().all(|h| msg.contains(h)), "{msg}");
    assert!(file_names(&tmp.0).is_empty());

    let dead = dead_url();
    let msg = assert_err_contains(fetch_into(&tmp.0, &dead, &sums, false), &[&format!("{dead}{}", FILES[1])]);
    assert!(hints.iter().all(|h| msg.contains(h)), "{msg}");
    assert!(file_names(&tmp.0).is_empty());
}

#[test]
fn uncreatable_download_dir_is_an_error() {
    let tmp = TempDir::new("dl-mkdir");
    let blocker = tmp.0.join("a-file");
    fs::write(&blocker, b"").unwrap();
    let dir = blocker.join("sub");
    assert_err_contains(
        fetch_into(&dir, &dead_url(), &[], false),
        &["cannot create download directory", &dir.display().to_string()],
    );
}

// ---------------------------------------------------------------- loader

/// `n` 2x2 images whose pixels all equal their index (so a batch reveals its order).
fn indexed_dataset(n: usize) -> Arc<Dataset> {
    assert!(n <= 256);
    let images = (0..n).flat_map(|i| [i as u8; 4]).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Arc::new(Dataset { images, labels, rows: 2, cols: 2 })
}

/// The sample indices of one epoch, in order, checking each batch's layout on the way.
fn epoch_order(ds: &Arc<Dataset>, batch: usize, shuffle: Option<u64>, limit: Option<usize>) -> Vec<usize> {
    let mut order = Vec::new();
    for b in batches(ds.clone(), batch, 2, shuffle, limit) {
        assert_eq!((b.images.len(), b.labels.len()), (b.len * 4, b.len));
        for (img, &label) in b.images.chunks(4).zip(&b.labels) {
            let i = (img[0] * 255.0).round() as usize;
            assert!(img.iter().all(|&v| v == img[0]));
            assert_eq!(label, i % 10);
            order.push(i);
        }
    }
    order
}

#[test]
fn batch_count_and_sizes_keep_the_last_partial_batch() {
    let ds = indexed_dataset(10);
    let iter = batches(ds.clone(), 4, 2, None, None);
    assert_eq!(iter.len(), 3);
    let sizes: Vec<usize> = iter.map(|b| b.len).collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(epoch_order(&ds, 4, None, None), (0..10).collect::<Vec<_>>());

    let sizes: Vec<usize> = batches(ds.clone(), 4, 2, None, Some(7)).map(|b| b.len).collect();
    assert_eq!(sizes, [4, 3]);
    assert_eq!(epoch_order(&ds, 4, Some(3), Some(7)).len(), 7);
    assert_eq!(batches(ds.clone(), 5, 2, None, Some(100)).count(), 2);
    assert_eq!(batches(ds.clone(), 4, 2, None, Some(0)).count(), 0);

    // Resizing changes the image size, not the count: 2x2 -> 6x6.
    let b = batches(ds, 3, 6, None, None).next().unwrap();
    assert_eq!((b.len, b.images.len()), (3, 3 * 36));
}

#[test]
fn shuffle_is_a_seeded_permutation() {
    let ds = indexed_dataset(200);
    let a = epoch_order(&ds, 16, Some(1), None);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<_>>(), "every index exactly once");
    assert_ne!(a, sorted, "shuffled");
    assert_eq!(a, epoch_order(&ds, 16, Some(1), None), "same seed, same order");
    assert_ne!(a, epoch_order(&ds, 16, Some(2), None), "different seed, different order");
    assert_ne!(
        epoch_order(&ds, 16, Some(epoch_seed(5, 0)), None),
        epoch_order(&ds, 16, Some(epoch_seed(5, 1)), None)
    );
}

#[test]
fn dropping_the_iterator_early_does_not_hang() {
    // Big batches at 224x224 fill the bounded channel, so the producer is blocked in send.
    let ds = Arc::new(Dataset { images: vec![7; 1000 * 784], labels: vec![3; 1000], rows: 28, cols: 28 });
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut iter = batches(ds, 8, 224, Some(9), None);
        let first = iter.next().unwrap();
        assert_eq!(first.images.len(), 8 * 224 * 224);
        thread::sleep(Duration::from_millis(100));
        drop(iter);
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(Duration::from_secs(60)).expect("dropping the iterator hung");
}
