//! One control group per service of the native stack: it holds the CPU and memory limits the
//! compose file gives the service, and counts the CPU time and peak memory the service used.
//! Works on cgroup v1 (separate or co-mounted `cpu`, `cpuacct`, `memory` hierarchies) and v2,
//! mounted where Linux distributions and container engines put them, under /sys/fs/cgroup.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::topology::Limits;

const ROOT: &str = "/sys/fs/cgroup";
/// The directory, beside or below this process's own group, that holds the stack's groups.
const STACK_GROUP: &str = "rinha-stack";
/// The CFS period; the quota is this times the CPU limit.
const CPU_PERIOD_MICROS: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum Cgroup {
    V1 { cpu: PathBuf, cpuacct: PathBuf, memory: PathBuf },
    V2 { dir: PathBuf },
}

/// CPU time and CFS bandwidth counters (scheduling periods, those in which the group ran out of
/// quota, and the time it then waited), since the group was created.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub seconds: f64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
}

impl std::ops::Sub for CpuUsage {
    type Output = CpuUsage;

    fn sub(self, earlier: CpuUsage) -> CpuUsage {
        CpuUsage {
            seconds: self.seconds - earlier.seconds,
            periods: self.periods - earlier.periods,
            throttled_periods: self.throttled_periods - earlier.throttled_periods,
            throttled_seconds: self.throttled_seconds - earlier.throttled_seconds,
        }
    }
}

impl Cgroup {
    /// Creates the group for `service` and applies `limits` to it. On v1 the stack's groups go
    /// below this process's own, so they stay inside whatever limits the caller runs under. A
    /// v2 group that holds processes cannot hand controllers to children, so there the stack's
    /// group is a sibling of this process's own (or sits at the root, exempt from that rule).
    pub fn create(service: &str, limits: &Limits) -> Result<Cgroup> {
        let cgroup = match Cgroup::of_process(&read("/proc/self/cgroup")?, Path::new(ROOT)) {
            Cgroup::V1 { cpu, cpuacct, memory } => {
                let below = |own: PathBuf| own.join(STACK_GROUP).join(service);
                Cgroup::V1 { cpu: below(cpu), cpuacct: below(cpuacct), memory: below(memory) }
            }
            Cgroup::V2 { dir } => {
                let base = if dir == Path::new(ROOT) { dir } else { dir.parent().unwrap().into() };
                let stack = base.join(STACK_GROUP);
                enable_v2_controllers(&base)?;
                make_dir(&stack)?;
                enable_v2_controllers(&stack)?;
                Cgroup::V2 { dir: stack.join(service) }
            }
        };
        for dir in cgroup.dirs() {
            make_dir(dir)?;
        }
        cgroup.limit_cpus(Some(limits.cpus))?;
        let memory = limits.memory_bytes.to_string();
        match &cgroup {
            Cgroup::V1 { memory: mem, .. } => {
                write(&mem.join("memory.limit_in_bytes"), &memory)?;
                // With swap accounting on, the same number caps memory plus swap, so the
                // service cannot swap its way past its limit.
                let memory_and_swap = mem.join("memory.memsw.limit_in_bytes");
                if memory_and_swap.exists() {
                    write(&memory_and_swap, &memory)?;
                }
            }
            Cgroup::V2 { dir } => {
                write(&dir.join("memory.max"), &memory)?;
                if dir.join("memory.swap.max").exists() {
                    write(&dir.join("memory.swap.max"), "0")?;
                }
            }
        }
        Ok(cgroup)
    }

    /// Caps the group's CPU at `cpus`, or lifts the cap (None).
    pub fn limit_cpus(&self, cpus: Option<f64>) -> Result<()> {
        let quota = cpus.map(|cpus| (cpus * CPU_PERIOD_MICROS as f64).round() as u64);
        match self {
            Cgroup::V1 { cpu, .. } => {
                write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_MICROS.to_string())?;
                let quota = quota.map_or("-1".to_owned(), |quota| quota.to_string());
                write(&cpu.join("cpu.cfs_quota_us"), &quota)
            }
            Cgroup::V2 { dir } => {
                let quota = quota.map_or("max".to_owned(), |quota| quota.to_string());
                write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_MICROS}"))
            }
        }
    }

    /// Makes `command`'s process join this group between fork and exec, so that everything it
    /// starts (PostgreSQL's backends, nginx's workers) is counted and limited too.
    pub fn attach_on_exec(&self, command: &mut Command) -> Result<()> {
        let procs = self
            .dirs()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                let file = OpenOptions::new().write(true).open(&path);
                file.with_context(|| format!("cannot open {}", path.display()))
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

    pub fn cpu_usage(&self) -> Result<CpuUsage> {
        let (path, usage) = match self {
            Cgroup::V1 { cpu, cpuacct, .. } => {
                let nanos = read(cpuacct.join("cpuacct.usage"))?;
                (cpu.join("cpu.stat"), format!("\nusage {}", nanos.trim()))
            }
            Cgroup::V2 { dir } => (dir.join("cpu.stat"), String::new()),
        };
        let stat = read(&path)? + &usage;
        parse_cpu_stat(&stat).with_context(|| format!("{}: no CPU usage counters", path.display()))
    }

    /// The most memory (resident and page cache, as the limit counts it) the group has held.
    pub fn peak_memory_bytes(&self) -> Result<u64> {
        let path = match self {
            Cgroup::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
            Cgroup::V2 { dir } => dir.join("memory.peak"),
        };
        let text = read(&path)?;
        text.trim().parse().with_context(|| format!("{}: {text:?} is not a number", path.display()))
    }

    /// The processes in the group.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let (Cgroup::V1 { memory: dir, .. } | Cgroup::V2 { dir }) = self;
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let path = dir.join("cgroup.procs");
        let procs = read(&path)?;
        let pids = procs.lines().map(|line| line.trim().parse());
        pids.collect::<Result<_, _>>().with_context(|| format!("{}: not pids", path.display()))
    }

    /// Removes the group (it must hold no process), and the stack's directory once empty.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            match std::fs::remove_dir(dir) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("cannot remove {}", dir.display()));
                }
                // Other services may still have their groups there: then it stays.
                _ => {
                    let _ = dir.parent().map(std::fs::remove_dir);
                }
            }
        }
        Ok(())
    }

    /// The group of a process, from its /proc/PID/cgroup, which names it relative to each
    /// hierarchy's root: those are mounted at `root`/CONTROLLERS (v1) or `root` (v2).
    pub fn of_process(membership: &str, root: &Path) -> Cgroup {
        let v1 = |controller: &str| {
            membership.lines().find_map(|line| {
                let [_, controllers, path] = line.splitn(3, ':').collect::<Vec<_>>()[..] else {
                    return None;
                };
                let found = controllers.split(',').any(|name| name == controller);
                found.then(|| root.join(controllers).join(path.trim_start_matches('/')))
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
        let (cpu_max, memory) = match self {
            Cgroup::V1 { cpu, memory, .. } => (
                read(cpu.join("cpu.cfs_quota_us"))? + " " + &read(cpu.join("cpu.cfs_period_us"))?,
                read(memory.join("memory.limit_in_bytes"))?,
            ),
            Cgroup::V2 { dir } => (read(dir.join("cpu.max"))?, read(dir.join("memory.max"))?),
        };
        let numbers: Vec<f64> =
            cpu_max.split_whitespace().filter_map(|number| number.parse().ok()).collect();
        // The quota is whole microseconds of the period, so the ratio is within one of them.
        let cpus_match = match numbers[..] {
            [quota, period] if quota > 0.0 && period > 0.0 => {
                (quota / period - limits.cpus).abs() <= 1.0 / period
            }
            _ => false,
        };
        let (cpu_max, memory) = (cpu_max.split_whitespace().collect::<Vec<_>>(), memory.trim());
        ensure!(
            cpus_match && memory.parse::<u64>().ok() == Some(limits.memory_bytes),
            "the cgroup has CPU quota {} and memory limit {memory}, but the compose file gives {} CPUs and {} bytes",
            cpu_max.join("/"),
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

/// Reads `cpu.stat`: v2 counts in microseconds (`usage_usec`, `throttled_usec`), v1 in
/// nanoseconds (`usage`, from `cpuacct.usage`, and `throttled_time`).
fn parse_cpu_stat(stat: &str) -> Option<CpuUsage> {
    let fields: BTreeMap<&str, u64> = stat
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect();
    let per_second = if fields.contains_key("usage_usec") { 1e6 } else { 1e9 };
    let field = |names: &[&str]| names.iter().find_map(|name| fields.get(name).copied());
    Some(CpuUsage {
        seconds: field(&["usage_usec", "usage"])? as f64 / per_second,
        periods: field(&["nr_periods"])?,
        throttled_periods: field(&["nr_throttled"])?,
        throttled_seconds: field(&["throttled_usec", "throttled_time"])? as f64 / per_second,
    })
}

fn enable_v2_controllers(dir: &Path) -> Result<()> {
    let available = read(dir.join("cgroup.controllers"))?;
    for controller in ["cpu", "memory"] {
        ensure!(
            available.split_whitespace().any(|name| name == controller),
            "{UNAVAILABLE}: the {controller} controller is not available in {}",
            dir.display()
        );
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

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_each_controllers_hierarchy() {
        let membership = "\
9:name=systemd:/libpod_parent/libpod-abc
4:memory:/jobs/42
2:cpu,cpuacct:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc
";
        let root = Path::new(ROOT);
        let Cgroup::V1 { cpu, cpuacct, memory } = Cgroup::of_process(membership, root) else {
            panic!("a v1 membership");
        };
        assert_eq!(cpu, root.join("cpu,cpuacct/libpod_parent/libpod-abc"));
        assert_eq!((&cpuacct, memory), (&cpu, root.join("memory/jobs/42")));
        assert_eq!(
            Cgroup::of_process("0::/system.slice/docker-abc.scope\n", root),
            Cgroup::V2 { dir: root.join("system.slice/docker-abc.scope") }
        );
    }

    #[test]
    fn cpu_counters_in_either_version() {
        let v1 = "nr_periods 1944\nnr_throttled 13\nthrottled_time 693949951\nusage 2500000000";
        assert_eq!(
            parse_cpu_stat(v1).unwrap(),
            CpuUsage {
                seconds: 2.5,
                periods: 1944,
                throttled_periods: 13,
                throttled_seconds: 0.693949951
            }
        );
        let v2 =
            "usage_usec 90\nuser_usec 60\nnr_periods 20\nnr_throttled 2\nthrottled_usec 1500000\n";
        let v2 = parse_cpu_stat(v2).unwrap();
        assert_eq!((v2.seconds, v2.periods, v2.throttled_periods), (9e-5, 20, 2));
        assert_eq!(v2.throttled_seconds, 1.5);
        assert_eq!(parse_cpu_stat("usage_usec 90\n"), None);
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
