//! The replica's memory budget: `MEMORY_LIMIT_MB`, else the memory limit of its cgroup (v2 or
//! v1), else none. The mirror takes a fixed share of it; the rest is left to connections,
//! requests and the allocator's own slack.

use std::path::Path;

/// The mirror's share of the budget, in quarters.
const MIRROR_QUARTERS: u64 = 3;

/// What the mirror may hold, in bytes, under a replica budget of `limit` bytes (none: no bound).
pub(crate) fn mirror_budget(limit: Option<u64>) -> usize {
    limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit / 4 * MIRROR_QUARTERS).unwrap_or(usize::MAX)
    })
}

/// The memory limit of this process's cgroup, if it has one.
pub(crate) fn cgroup_limit() -> Option<u64> {
    let memberships = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    limit_of(&memberships, Path::new("/sys/fs/cgroup"))
}

/// The limit set for the cgroup named in `memberships` (the text of `/proc/PID/cgroup`) under
/// the hierarchy mounted at `root`. Inside a container the cgroup is usually the root of its
/// own namespace, so the root's file is read when the named one is not there.
fn limit_of(memberships: &str, root: &Path) -> Option<u64> {
    let read = |dir: &Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    for line in memberships.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        let limit = if controllers.is_empty() {
            // v2: "max" means no limit, and does not parse.
            read(&root.join(relative), "memory.max").or_else(|| read(root, "memory.max"))
        } else if controllers.split(',').any(|c| c == "memory") {
            let hierarchy = root.join("memory");
            read(&hierarchy.join(relative), "memory.limit_in_bytes")
                .or_else(|| read(&hierarchy, "memory.limit_in_bytes"))
        } else {
            continue;
        };
        // v1 reports "no limit" as a number near 2^63.
        if let Some(limit) = limit.filter(|&limit| limit < 1 << 62) {
            return Some(limit);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_limits() {
        let root = std::env::temp_dir().join(format!("rinha-cgroup-{}", std::process::id()));
        let v1 = root.join("memory/stack/api1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "268435456\n").unwrap();
        let v2 = root.join("stack/api2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "536870912\n").unwrap();
        std::fs::write(root.join("memory.max"), "max\n").unwrap();

        assert_eq!(
            limit_of("4:memory:/stack/api1\n0::/\n", &root),
            Some(256 << 20)
        );
        assert_eq!(limit_of("0::/stack/api2\n", &root), Some(512 << 20));
        assert_eq!(limit_of("0::/\n", &root), None, "max is no limit");
        assert_eq!(limit_of("3:cpu,cpuacct:/x\n", &root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_mirror_takes_three_quarters() {
        assert_eq!(mirror_budget(Some(512 << 20)), 384 << 20);
        assert_eq!(mirror_budget(None), usize::MAX);
    }
}
