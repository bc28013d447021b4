//! How much memory the machine can still give this process: the kernel's estimate of what can be
//! allocated without swapping (`MemAvailable`), lowered to the cgroup's limit where one is set
//! (containers), plus what the buffer pool keeps for reuse.
use std::path::Path;

/// Bytes available, or `None` off Linux or when `/proc/meminfo` cannot be read.
pub fn available_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut available = mem_available(&meminfo)?;
    if let Some(room) = cgroup_room(Path::new("/sys/fs/cgroup")) {
        available = available.min(room);
    }
    Some(available + super::buffer::pooled_bytes())
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What the cgroup (v2) lets this process still allocate: `memory.max - memory.current`, or
/// `None` without a limit.
fn cgroup_room(root: &Path) -> Option<usize> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).ok();
    let max: usize = read("memory.max")?.trim().parse().ok()?; // "max" (no limit) does not parse
    let current: usize = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_and_cgroup_limits() {
        let text = "MemTotal:       24000000 kB\nMemFree:  1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        let dir = std::env::temp_dir().join(format!("cgroup-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.join("memory.current"), "1000\n").unwrap();
        assert_eq!(cgroup_room(&dir), None);
        std::fs::write(dir.join("memory.max"), "5000\n").unwrap();
        assert_eq!(cgroup_room(&dir), Some(4000));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(available_bytes().is_some_and(|b| b > 0) || !cfg!(target_os = "linux"));
    }
}
