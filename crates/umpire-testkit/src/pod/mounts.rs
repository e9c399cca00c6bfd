//! How a pod's volumes appear at their mount paths inside its private mount namespace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the image keeps its entrypoint (the Dockerfile's `/usr/local/bin/umpire`): the
/// binary under test is bind-mounted there, so volumes over the folder it was built in (an
/// emptyDir `/tmp` over a checkout in `/tmp`) cannot hide it.
pub(super) const IMAGE_ENTRYPOINT: &str = "/usr/local/bin/umpire";

/// Overlays the top folders that need new mount points (so the host's `/etc` stays as it
/// is), then bind-mounts each volume at its path.
pub(super) fn mount_script(
    root: &Path,
    entrypoint: &Path,
    mounts: &[(PathBuf, PathBuf)],
) -> String {
    let mut overlays = BTreeSet::new();
    let mut targets = Vec::new();
    let image_entrypoint = Path::new(IMAGE_ENTRYPOINT);
    if !image_entrypoint.exists() {
        overlays.insert(PathBuf::from("/usr"));
    }
    for (source, target) in mounts {
        let resolved = resolve(target);
        if !resolved.is_dir()
            && let Some(top) = resolved.components().nth(1)
        {
            overlays.insert(PathBuf::from("/").join(top));
        }
        targets.push((source.clone(), resolved));
    }
    let mut script = String::from("set -e\n");
    for (i, top) in overlays.iter().enumerate() {
        let upper = root.join(format!("overlay/{i}/upper"));
        let work = root.join(format!("overlay/{i}/work"));
        let _ = std::fs::create_dir_all(&upper);
        let _ = std::fs::create_dir_all(&work);
        script.push_str(&format!(
            "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}\n",
            top.display(),
            upper.display(),
            work.display(),
            top.display()
        ));
    }
    script.push_str(&format!(
        "mkdir -p {dir}\ntouch {target}\nmount --bind {source} {target}\n",
        dir = image_entrypoint
            .parent()
            .unwrap_or(Path::new("/"))
            .display(),
        target = image_entrypoint.display(),
        source = entrypoint.display()
    ));
    // A volume over a folder that holds the pod's own files (`/tmp`) goes last, or it would
    // hide the sources of the mounts after it.
    targets.sort_by_key(|(_, target)| root.starts_with(target));
    for (source, target) in targets {
        script.push_str(&format!(
            "mkdir -p {t}\nmount --bind {s} {t}\n",
            s = source.display(),
            t = target.display()
        ));
    }
    script
}

/// The path with its longest existing prefix resolved (`/var/run/x` → `/run/x`).
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for part in rest.iter().rev() {
        resolved.push(part);
    }
    resolved
}
