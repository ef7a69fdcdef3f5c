//! One control group per service of the native stack: it holds the CPU and memory limits the
//! compose file gives the service, and counts the CPU time and peak memory the service used.
//! Works on cgroup v1 (separate or co-mounted `cpu`, `cpuacct`, `memory` hierarchies) and v2.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::topology::Limits;

/// The directory, under each hierarchy, that holds the stack's groups.
const STACK_GROUP: &str = "rinha-stack";
/// The CFS period; the quota is this times the CPU limit.
const CPU_PERIOD_MICROS: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum Cgroup {
    V1 { cpu: PathBuf, cpuacct: PathBuf, memory: PathBuf },
    V2 { dir: PathBuf },
}

impl Cgroup {
    /// Creates the group for `service` and applies `limits` to it.
    pub fn create(service: &str, limits: &Limits) -> Result<Cgroup> {
        let mountinfo = read("/proc/self/mountinfo")?;
        let membership = read("/proc/self/cgroup")?;
        let cgroup = match (
            v1_base(&mountinfo, &membership, "cpu"),
            v1_base(&mountinfo, &membership, "cpuacct"),
            v1_base(&mountinfo, &membership, "memory"),
        ) {
            (Some(cpu), Some(cpuacct), Some(memory)) => Cgroup::V1 {
                cpu: cpu.join(STACK_GROUP).join(service),
                cpuacct: cpuacct.join(STACK_GROUP).join(service),
                memory: memory.join(STACK_GROUP).join(service),
            },
            _ => {
                let base = v2_base(&mountinfo, &membership)
                    .context("no cgroup v1 cpu, cpuacct and memory hierarchies, nor cgroup v2")
                    .context(UNAVAILABLE)?;
                enable_v2_controllers(&base)?;
                let stack = base.join(STACK_GROUP);
                make_dir(&stack)?;
                enable_v2_controllers(&stack)?;
                Cgroup::V2 { dir: stack.join(service) }
            }
        };
        for dir in cgroup.dirs() {
            make_dir(dir)?;
        }
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        let quota = (limits.cpus * CPU_PERIOD_MICROS as f64).round() as u64;
        let memory = limits.memory_bytes.to_string();
        match self {
            Cgroup::V1 { cpu, memory: mem, .. } => {
                write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_MICROS.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                write(&mem.join("memory.limit_in_bytes"), &memory)?;
                // With swap accounting on, the same number caps memory plus swap, so the
                // service cannot swap its way past its limit.
                let memory_and_swap = mem.join("memory.memsw.limit_in_bytes");
                if memory_and_swap.exists() {
                    write(&memory_and_swap, &memory)?;
                }
            }
            Cgroup::V2 { dir } => {
                write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_MICROS}"))?;
                write(&dir.join("memory.max"), &memory)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            }
        }
        Ok(())
    }

    /// Makes `command`'s process join this group between fork and exec, so that everything it
    /// starts (PostgreSQL's backends, nginx's workers) is counted and limited too.
    pub fn attach_on_exec(&self, command: &mut Command) -> Result<()> {
        let procs = self
            .dirs()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect::<Result<Vec<File>>>()?;
        // SAFETY: the closure runs in the forked child before exec. It only calls write(2) on
        // descriptors opened above ("0" names the writing process), which is async-signal-safe
        // and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for mut file in &procs {
                    file.write_all(b"0")?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// CPU time used by the group's processes since it was created, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        match self {
            Cgroup::V1 { cpuacct, .. } => {
                Ok(read_number(&cpuacct.join("cpuacct.usage"))? as f64 / 1e9)
            }
            Cgroup::V2 { dir } => {
                let path = dir.join("cpu.stat");
                let stat = read(&path)?;
                let micros = stat
                    .lines()
                    .find_map(|line| line.strip_prefix("usage_usec "))
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .with_context(|| format!("no usage_usec in {}", path.display()))?;
                Ok(micros as f64 / 1e6)
            }
        }
    }

    /// How often the CPU quota held the group back, since it was created.
    pub fn throttling(&self) -> Result<Throttling> {
        let (path, throttled_unit) = match self {
            Cgroup::V1 { cpu, .. } => (cpu.join("cpu.stat"), ("throttled_time", 1e9)),
            Cgroup::V2 { dir } => (dir.join("cpu.stat"), ("throttled_usec", 1e6)),
        };
        parse_throttling(&read(&path)?, throttled_unit)
            .with_context(|| format!("{}: no throttling counters", path.display()))
    }

    /// The most memory (resident and page cache, as the limit counts it) the group has held.
    pub fn peak_memory_bytes(&self) -> Result<u64> {
        match self {
            Cgroup::V1 { memory, .. } => read_number(&memory.join("memory.max_usage_in_bytes")),
            Cgroup::V2 { dir } => read_number(&dir.join("memory.peak")),
        }
    }

    /// The processes in the group.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = match self {
            Cgroup::V1 { memory, .. } => memory,
            Cgroup::V2 { dir } => dir,
        };
        let path = dir.join("cgroup.procs");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        read(&path)?
            .lines()
            .map(|line| {
                line.trim()
                    .parse()
                    .with_context(|| format!("{}: unexpected line {line:?}", path.display()))
            })
            .collect()
    }

    /// Removes the group (it must hold no process), and the stack's directory once empty.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            match std::fs::remove_dir(dir) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("cannot remove {}", dir.display()));
                }
                _ => {}
            }
            // Other services may still have their groups there: then it stays.
            if let Some(stack) = dir.parent() {
                let _ = std::fs::remove_dir(stack);
            }
        }
        Ok(())
    }

    /// The group of a container's main process, from its /proc/PID/cgroup, which names it
    /// relative to each hierarchy's root: podman and Docker hosts mount those at
    /// `root`/CONTROLLERS (v1) or `root` (v2).
    pub fn of_process(membership: &str, root: &Path) -> Cgroup {
        let v1 = |controller: &str| {
            v1_membership(membership, controller).map(|(controllers, path)| {
                root.join(controllers).join(path.trim_start_matches('/'))
            })
        };
        match (v1("cpu"), v1("cpuacct"), v1("memory")) {
            (Some(cpu), Some(cpuacct), Some(memory)) => Cgroup::V1 { cpu, cpuacct, memory },
            _ => {
                let own =
                    membership.lines().find_map(|line| line.strip_prefix("0::")).unwrap_or("/");
                Cgroup::V2 { dir: root.join(own.trim_start_matches('/')) }
            }
        }
    }

    /// Fails unless the group's CPU quota and memory limit are `limits`.
    pub fn check_limits(&self, limits: &Limits) -> Result<()> {
        let (quota, period, memory) = match self {
            Cgroup::V1 { cpu, memory, .. } => (
                read(cpu.join("cpu.cfs_quota_us"))?,
                read(cpu.join("cpu.cfs_period_us"))?,
                read(memory.join("memory.limit_in_bytes"))?,
            ),
            Cgroup::V2 { dir } => {
                let cpu_max = read(dir.join("cpu.max"))?;
                let (quota, period) = cpu_max.split_once(' ').unwrap_or((&cpu_max, ""));
                (quota.to_owned(), period.to_owned(), read(dir.join("memory.max"))?)
            }
        };
        let (quota, period, memory) = (quota.trim(), period.trim(), memory.trim());
        // The quota is whole microseconds of the period, so the ratio is within one of them.
        let cpus_match = match (quota.parse::<f64>(), period.parse::<f64>()) {
            (Ok(quota), Ok(period)) if quota > 0.0 && period > 0.0 => {
                (quota / period - limits.cpus).abs() <= 1.0 / period
            }
            _ => false,
        };
        ensure!(
            cpus_match && memory.parse::<u64>().ok() == Some(limits.memory_bytes),
            "the cgroup has CPU quota {quota}/{period} and memory limit {memory}, but the compose file gives {} CPUs and {} bytes",
            limits.cpus,
            limits.memory_bytes
        );
        Ok(())
    }

    /// The group's directories, once each (co-mounted v1 controllers share one).
    fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = match self {
            Cgroup::V1 { cpu, cpuacct, memory } => vec![cpu, cpuacct, memory],
            Cgroup::V2 { dir } => vec![dir],
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// CFS bandwidth counters: scheduling periods, those in which the group ran out of quota, and
/// the time it then waited.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
}

impl std::ops::Sub for Throttling {
    type Output = Throttling;

    fn sub(self, earlier: Throttling) -> Throttling {
        Throttling {
            periods: self.periods - earlier.periods,
            throttled_periods: self.throttled_periods - earlier.throttled_periods,
            throttled_seconds: self.throttled_seconds - earlier.throttled_seconds,
        }
    }
}

/// Reads `cpu.stat`, whose throttled time is the `(name, units per second)` field.
fn parse_throttling(stat: &str, (throttled_name, per_second): (&str, f64)) -> Option<Throttling> {
    let field = |name: &str| {
        stat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<u64>().ok())?
        })
    };
    Some(Throttling {
        periods: field("nr_periods")?,
        throttled_periods: field("nr_throttled")?,
        throttled_seconds: field(throttled_name)? as f64 / per_second,
    })
}

/// Where this process's own group sits in the v1 hierarchy that has `controller`: the stack's
/// groups go below it, so they stay inside whatever limits the caller runs under.
fn v1_base(mountinfo: &str, membership: &str, controller: &str) -> Option<PathBuf> {
    let (mount_root, mount_point) = mountinfo.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        let mut filesystem = filesystem.split(' ');
        if filesystem.next()? != "cgroup" {
            return None;
        }
        let options = filesystem.nth(1)?;
        if !options.split(',').any(|option| option == controller) {
            return None;
        }
        let mut mount = mount.split(' ');
        Some((mount.nth(3)?, mount.next()?))
    })?;
    let (_, own) = v1_membership(membership, controller)?;
    Some(join_below_mount(mount_point, mount_root, own))
}

/// From a process's /proc/PID/cgroup, the v1 hierarchy that has `controller`: its controller
/// list (the name of its directory under /sys/fs/cgroup) and the process's group in it.
fn v1_membership<'a>(membership: &'a str, controller: &str) -> Option<(&'a str, &'a str)> {
    membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _hierarchy = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers.split(',').any(|name| name == controller).then_some((controllers, path))
    })
}

/// Where the stack's groups go on cgroup v2. A v2 group that holds processes cannot hand
/// controllers to children, so the stack's group is a sibling of this process's own group
/// (or sits at the root, which is exempt from that rule).
fn v2_base(mountinfo: &str, membership: &str) -> Option<PathBuf> {
    let (mount_root, mount_point) = mountinfo.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        if filesystem.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut mount = mount.split(' ');
        Some((mount.nth(3)?, mount.next()?))
    })?;
    let own = membership.lines().find_map(|line| line.strip_prefix("0::"))?;
    let own_dir = join_below_mount(mount_point, mount_root, own);
    let mount_point = Path::new(mount_point);
    Some(if own_dir == mount_point { own_dir } else { own_dir.parent()?.to_path_buf() })
}

/// The directory of cgroup `path` in a hierarchy mounted at `mount_point`, whose root is the
/// group `mount_root` (not `/` when a container mounts only its own part of the hierarchy).
fn join_below_mount(mount_point: &str, mount_root: &str, path: &str) -> PathBuf {
    let relative = path.strip_prefix(mount_root).unwrap_or(path).trim_start_matches('/');
    Path::new(mount_point).join(relative)
}

fn enable_v2_controllers(dir: &Path) -> Result<()> {
    let available = read(dir.join("cgroup.controllers"))?;
    for controller in ["cpu", "memory"] {
        if !available.split_whitespace().any(|name| name == controller) {
            bail!(
                "{UNAVAILABLE}: the {controller} controller is not available in {}",
                dir.display()
            );
        }
    }
    write(&dir.join("cgroup.subtree_control"), "+cpu +memory")
}

const UNAVAILABLE: &str = "cannot create the stack's cgroups. The native stack needs root (or a \
    delegated cgroup) on Linux with writable cgroups; without them, run the compose stack \
    (docker/compose.yml) instead";

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{UNAVAILABLE}: cannot create {}", dir.display()))
}

fn read(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_number(path: &Path) -> Result<u64> {
    let text = read(path)?;
    text.trim().parse().with_context(|| format!("{}: {text:?} is not a number", path.display()))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
24 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
25 24 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
26 24 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
27 24 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
28 24 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const MEMBERSHIP_V1: &str = "\
4:memory:/jobs/42
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn v1_groups_go_below_the_callers_own_group() {
        assert_eq!(
            v1_base(MOUNTINFO_V1, MEMBERSHIP_V1, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/jobs/42")
        );
        assert_eq!(
            v1_base(MOUNTINFO_V1, MEMBERSHIP_V1, "cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(v1_base(MOUNTINFO_V1, MEMBERSHIP_V1, "pids"), None);
    }

    #[test]
    fn v1_co_mounted_controllers_and_container_mount_roots() {
        let mountinfo = "25 24 0:23 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n";
        let membership = "3:cpu,cpuacct:/docker/abc/inner\n";
        let expected = Path::new("/sys/fs/cgroup/cpu,cpuacct/inner");
        assert_eq!(v1_base(mountinfo, membership, "cpu").unwrap(), expected);
        assert_eq!(v1_base(mountinfo, membership, "cpuacct").unwrap(), expected);
        let cgroup = Cgroup::V1 {
            cpu: expected.join("db"),
            cpuacct: expected.join("db"),
            memory: PathBuf::from("/sys/fs/cgroup/memory/db"),
        };
        assert_eq!(cgroup.dirs().len(), 2);
    }

    #[test]
    fn v2_groups_are_siblings_of_the_callers_group_except_at_the_root() {
        let mountinfo = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_base(mountinfo, "0::/user.slice/session-1.scope\n").unwrap(),
            Path::new("/sys/fs/cgroup/user.slice")
        );
        assert_eq!(v2_base(mountinfo, "0::/\n").unwrap(), Path::new("/sys/fs/cgroup"));
        assert_eq!(v2_base(MOUNTINFO_V1.lines().next().unwrap(), "0::/\n"), None);
    }

    #[test]
    fn throttling_counters_in_either_version() {
        let v1 = "nr_periods 1944\nnr_throttled 13\nthrottled_time 693949951\nnr_bursts 0\n";
        assert_eq!(
            parse_throttling(v1, ("throttled_time", 1e9)).unwrap(),
            Throttling { periods: 1944, throttled_periods: 13, throttled_seconds: 0.693949951 }
        );
        let v2 = "usage_usec 90\nuser_usec 60\nsystem_usec 30\nnr_periods 20\nnr_throttled 2\n\
                  throttled_usec 1500000\n";
        let v2 = parse_throttling(v2, ("throttled_usec", 1e6)).unwrap();
        assert_eq!((v2.periods, v2.throttled_periods, v2.throttled_seconds), (20, 2, 1.5));
        assert_eq!(parse_throttling("usage_usec 90\n", ("throttled_usec", 1e6)), None);
        let later = Throttling { periods: 30, throttled_periods: 5, throttled_seconds: 2.0 };
        assert_eq!(
            later - v2,
            Throttling { periods: 10, throttled_periods: 3, throttled_seconds: 0.5 }
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let cgroup = Cgroup::V2 { dir: PathBuf::from("/sys/fs/cgroup/rinha-stack/db") };
        let json = serde_json::to_string(&cgroup).unwrap();
        assert!(json.contains(r#""version":"v2""#), "{json}");
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cgroup);
    }

    #[test]
    fn cgroup_v1_paths_follow_each_controller() {
        let membership = "\
9:name=systemd:/libpod_parent/libpod-abc
4:memory:/libpod_parent/libpod-abc
2:cpu,cpuacct:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc
";
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            Cgroup::of_process(membership, root),
            Cgroup::V1 {
                cpu: root.join("cpu,cpuacct/libpod_parent/libpod-abc"),
                cpuacct: root.join("cpu,cpuacct/libpod_parent/libpod-abc"),
                memory: root.join("memory/libpod_parent/libpod-abc"),
            }
        );
        assert_eq!(
            Cgroup::of_process("0::/system.slice/docker-abc.scope\n", root),
            Cgroup::V2 { dir: root.join("system.slice/docker-abc.scope") }
        );
    }

    #[test]
    fn limits_are_read_back_from_cgroup_files() {
        let dir = std::env::temp_dir().join(format!("rinha-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, value: &str| std::fs::write(dir.join(name), value).unwrap();
        write("cpu.cfs_quota_us", "25000\n");
        write("cpu.cfs_period_us", "100000\n");
        write("memory.limit_in_bytes", "268435456\n");
        let cgroup = Cgroup::V1 { cpu: dir.clone(), cpuacct: dir.clone(), memory: dir.clone() };
        let limits = Limits { cpus: 0.25, memory_bytes: 256 << 20 };
        assert!(cgroup.check_limits(&limits).is_ok());
        let error = cgroup.check_limits(&Limits { cpus: 0.5, ..limits }).unwrap_err();
        assert!(error.to_string().contains("25000/100000"), "{error}");
        write("cpu.cfs_quota_us", "-1\n");
        assert!(cgroup.check_limits(&limits).is_err());
        write("cpu.cfs_quota_us", "25000\n");
        write("memory.limit_in_bytes", "9223372036854771712\n");
        assert!(cgroup.check_limits(&limits).is_err());

        write("cpu.max", "85000 100000\n");
        write("memory.max", "max\n");
        let v2 = Cgroup::V2 { dir: dir.clone() };
        let db = Limits { cpus: 0.85, memory_bytes: 2304 << 20 };
        assert!(v2.check_limits(&db).is_err());
        write("memory.max", &(2304u64 << 20).to_string());
        assert!(v2.check_limits(&db).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
