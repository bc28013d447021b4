//! Stopping a run cleanly: the first SIGINT (Ctrl-C), SIGTERM or SIGHUP asks the training loop
//! to finish its step and save a checkpoint; a second one exits at once. A save is atomic, so
//! exiting in the middle of one leaves the previous checkpoint whole.
use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// The exit status of a run stopped by a signal (the shell's 128 + SIGINT).
pub const EXIT_STATUS: u8 = 130;

/// Routes the signals here (once per process; the library's callers that never call it are not
/// stoppable this way).
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!(
                "\nstopping: finishing this step and saving a checkpoint (interrupt again to quit at once; the \
                 last complete checkpoint stays loadable)"
            );
        } else {
            eprintln!("\nstopped at once; the last complete checkpoint stays loadable");
            std::process::exit(EXIT_STATUS.into());
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// The error a stopped run returns: the caller prints it and exits with [`EXIT_STATUS`].
#[derive(Debug)]
pub struct Stopped {
    /// The command that continues the run.
    pub resume: String,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped; the checkpoint is saved. Continue with:\n  {}", self.resume)
    }
}

impl std::error::Error for Stopped {}

/// `args` (the program's, the program first) as a shell command line that continues the run from
/// `checkpoint`: any `--resume` given is replaced, every other flag kept (the stored settings
/// agree with themselves).
pub fn resume_command(args: &[String], checkpoint: &std::path::Path) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--resume" {
            skip = true;
            continue;
        }
        if a.starts_with("--resume=") {
            continue;
        }
        out.push(a.clone());
    }
    out.push("--resume".into());
    out.push(checkpoint.display().to_string());
    out.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// `s` quoted for a POSIX shell where it needs to be.
fn quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_command_replaces_resume_and_quotes() {
        let args: Vec<String> =
            ["train", "nin", "--resume", "old/c.safetensors", "--lr", "0.1", "--data", "my data"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(
            resume_command(&args, std::path::Path::new("runs/x/checkpoint.safetensors")),
            "train nin --lr 0.1 --data 'my data' --resume runs/x/checkpoint.safetensors"
        );
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
