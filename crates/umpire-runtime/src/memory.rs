//! The memory this process may use, so that buffers can be sized to fit inside it rather
//! than by counts that mean different sizes for different traffic.

use std::path::Path;

/// Overrides the detected limit (bytes). The controller sets it from the container's
/// `limits.memory` through the downward API; without it the cgroup's limit is read.
pub const MEMORY_LIMIT_ENV: &str = "UMPIRE_MEMORY_LIMIT";

/// The process's memory limit in bytes: `UMPIRE_MEMORY_LIMIT`, else the cgroup v2 or v1
/// limit of the container; `None` when nothing limits it.
pub fn memory_limit() -> Option<u64> {
    if let Some(bytes) = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|bytes| *bytes > 0)
    {
        return Some(bytes);
    }
    cgroup_limit(Path::new("/sys/fs/cgroup"))
}

/// Reads `memory.max` (v2) or `memory/memory.limit_in_bytes` (v1) under `root`. v2 writes
/// `max` when unlimited, v1 a number near `i64::MAX`; both mean no limit.
fn cgroup_limit(root: &Path) -> Option<u64> {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let value = read(&root.join("memory.max"))
        .or_else(|| read(&root.join("memory/memory.limit_in_bytes")))?;
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|bytes| *bytes > 0 && *bytes < 1 << 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limits_are_read_and_unlimited_means_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_limit(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "536870912\n").unwrap();
        assert_eq!(cgroup_limit(dir.path()), Some(512 << 20));

        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        let unlimited = v1.path().join("memory/memory.limit_in_bytes");
        std::fs::write(&unlimited, "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit(v1.path()), None);
        std::fs::write(&unlimited, "1073741824\n").unwrap();
        assert_eq!(cgroup_limit(v1.path()), Some(1 << 30));
    }
}
