//! Per-epoch training metrics and their CSV file (`metrics.csv`).
//!
//! The whole file is rewritten atomically after every epoch, so it is always
//! complete; on `--resume` the earlier rows are read back and extended.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::write_bytes_atomic;

/// The CSV header line, also the field order of [`EpochMetrics`].
pub const CSV_HEADER: &str = "epoch,train_loss,train_acc,test_acc,seconds,images_per_sec,val_acc,lr";
/// The header of files written before the validation accuracy and learning rate were kept.
const CSV_HEADER_6: &str = "epoch,train_loss,train_acc,test_acc,seconds,images_per_sec";

/// One epoch's summary. Accuracies are fractions in 0..=1; a value not measured (the test
/// accuracy of a run with a validation split, the validation accuracy of one without) is NaN,
/// an empty field in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// The epoch, counting from 1.
    pub epoch: usize,
    /// Mean loss per training image over the epoch: the loss minimised, label smoothing
    /// included.
    pub train_loss: f64,
    /// Accuracy on the epoch's training images as they were trained on (dropout on; augmented
    /// with `--augment`).
    pub train_acc: f64,
    /// Accuracy on the test set after the epoch.
    pub test_acc: f64,
    /// Seconds the epoch took, its evaluation included.
    pub seconds: f64,
    /// Training images per second of the epoch's training time (evaluation excluded).
    pub images_per_sec: f64,
    /// Accuracy on the validation images held out of the training set, after the epoch.
    pub val_acc: f64,
    /// The learning rate at the epoch's last step.
    pub lr: f64,
}

impl Default for EpochMetrics {
    fn default() -> Self {
        EpochMetrics {
            epoch: 0,
            train_loss: f64::NAN,
            train_acc: f64::NAN,
            test_acc: f64::NAN,
            seconds: f64::NAN,
            images_per_sec: f64::NAN,
            val_acc: f64::NAN,
            lr: f64::NAN,
        }
    }
}

/// A value as a field: shortest round-trip form, empty when not measured.
fn field(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        v.to_string()
    }
}

/// Writes the header and one row per epoch, atomically (temp file + rename).
/// Floats are written in Rust's shortest round-trip form, so [`read_csv`]
/// gives back exactly the same values.
pub fn write_csv(path: &Path, rows: &[EpochMetrics]) -> io::Result<()> {
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [r.train_loss, r.train_acc, r.test_acc, r.seconds, r.images_per_sec, r.val_acc, r.lr];
        out.push_str(&format!("{},{}\n", r.epoch, fields.map(field).join(",")));
    }
    write_bytes_atomic(path, out.as_bytes())
}

/// Why a metrics file could not be read; names the file and line.
#[derive(Debug)]
pub struct MetricsError {
    /// The metrics file.
    pub path: PathBuf,
    /// 1-based line number, when the problem is on a particular line.
    pub line: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for MetricsError {}

/// Reads a file written by [`write_csv`], or by a version that wrote the first six columns
/// only (their validation accuracy and learning rate read as NaN). Blank lines (e.g. a trailing
/// one) are skipped; anything else that is not a row as wide as the header is an error rather
/// than silently dropped, since the rows feed the resumed run's history.
pub fn read_csv(path: &Path) -> Result<Vec<EpochMetrics>, MetricsError> {
    let err = |line: Option<usize>, message: String| MetricsError { path: path.to_path_buf(), line, message };
    let text = fs::read_to_string(path).map_err(|e| err(None, format!("cannot read: {e}")))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let width = match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => 8,
        Some((_, h)) if h.trim() == CSV_HEADER_6 => 6,
        Some((i, h)) => return Err(err(Some(i + 1), format!("expected header {CSV_HEADER:?}, found {h:?}"))),
        None => return Err(err(None, "empty file, expected a header line".into())),
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.trim().split(',').map(str::trim).collect();
        if fields.len() != width {
            return Err(err(Some(i + 1), format!("expected {width} fields, found {}", fields.len())));
        }
        let float = |k: usize| match fields.get(k) {
            None | Some(&"") => Ok(f64::NAN),
            Some(f) => f.parse::<f64>().map_err(|e| err(Some(i + 1), format!("field {} {f:?}: {e}", k + 1))),
        };
        let epoch = fields[0]
            .parse::<usize>()
            .map_err(|e| err(Some(i + 1), format!("epoch {:?}: {e}", fields[0])))?;
        rows.push(EpochMetrics {
            epoch,
            train_loss: float(1)?,
            train_acc: float(2)?,
            test_acc: float(3)?,
            seconds: float(4)?,
            images_per_sec: float(5)?,
            val_acc: float(6)?,
            lr: float(7)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("metrics-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn rows() -> Vec<EpochMetrics> {
        vec![
            EpochMetrics {
                epoch: 1,
                train_loss: 2.3026517124,
                train_acc: 0.1,
                test_acc: 1.0 / 3.0,
                seconds: 12.5,
                images_per_sec: 4800.123456789,
                val_acc: f64::NAN,
                lr: 0.1,
            },
            EpochMetrics {
                epoch: 2,
                train_loss: 0.000123,
                train_acc: 0.987654321,
                test_acc: 0.9,
                seconds: 1e-9,
                images_per_sec: 1.5e7,
                val_acc: 0.925,
                lr: 1e-5,
            },
        ]
    }

    #[test]
    fn round_trip_is_exact() {
        let d = tmp_dir("rt");
        let p = d.join("sub/metrics.csv");
        write_csv(&p, &rows()).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(&format!("{CSV_HEADER}\n1,")), "{text}");
        let same = |a: &[EpochMetrics], b: &[EpochMetrics]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| format!("{x:?}") == format!("{y:?}"))
        };
        assert!(same(&read_csv(&p).unwrap(), &rows()), "{:?}", read_csv(&p).unwrap());
        // Rewriting replaces the file and leaves only it in the directory.
        write_csv(&p, &rows()[..1]).unwrap();
        assert!(same(&read_csv(&p).unwrap(), &rows()[..1]));
        // A file of the six-column format still reads, without the new values.
        fs::write(&p, format!("{CSV_HEADER_6}\n1,0.5,0.25,0.75,2,100\n")).unwrap();
        let old = read_csv(&p).unwrap();
        assert_eq!((old[0].test_acc, old[0].images_per_sec), (0.75, 100.0));
        assert!(old[0].val_acc.is_nan() && old[0].lr.is_nan());
        let names: Vec<_> = fs::read_dir(d.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("metrics.csv")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_history_round_trips() {
        let d = tmp_dir("empty");
        let p = d.join("metrics.csv");
        write_csv(&p, &[]).unwrap();
        assert_eq!(read_csv(&p).unwrap(), vec![]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_are_errors_naming_file_and_line() {
        let d = tmp_dir("bad");
        let p = d.join("metrics.csv");
        let e = read_csv(&p).unwrap_err();
        assert!(e.to_string().contains("metrics.csv"), "{e}");

        fs::write(&p, format!("{CSV_HEADER}\n1,0.5,0.5,0.5,1,100,,0.1\n2,0.4,oops,0.5,1,100,,0.1\n"))
            .unwrap();
        let e = read_csv(&p).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("oops"), "{e}");

        fs::write(&p, "a,b\n").unwrap();
        assert_eq!(read_csv(&p).unwrap_err().line, Some(1));
        fs::write(&p, format!("{CSV_HEADER}\n1,2,3\n")).unwrap();
        assert!(read_csv(&p).unwrap_err().message.contains("8 fields"));
        fs::remove_dir_all(&d).unwrap();
    }
}
