//! What `/proc` says about a process and about this machine (Linux only; `None` elsewhere).

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`. `USER_HZ` is 100 on every
/// mainstream Linux architecture; reading `sysconf(_SC_CLK_TCK)` would need `unsafe` FFI.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Peak resident set size (`VmHWM`) of a process in KiB, over its whole life.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: String,
    /// Logical CPUs available to this process (what `nproc` prints: 1 when the load generator
    /// is pinned to one core).
    pub nproc: usize,
    /// Logical CPUs of the machine (`processor` entries in `/proc/cpuinfo`); 0 in results
    /// written before this field existed.
    #[serde(default)]
    pub cpus_online: usize,
    /// The CPUs the load generator may run on (`Cpus_allowed_list` of `/proc/self/status`,
    /// e.g. `1` under `taskset -c 1`); empty in older results.
    #[serde(default)]
    pub generator_cpus: String,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `/proc/version`.
    pub kernel: String,
}

impl Machine {
    /// Describes this machine; unknown fields are `"unknown"`.
    pub fn detect() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpus_online = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let generator_cpus = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = Some(cpuinfo)
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpus_online,
            generator_cpus,
            cpu_model,
            kernel: read("/proc/version"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (slim relay) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 1000 200";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn parses_vm_hwm() {
        assert_eq!(
            parse_vm_hwm("Name:\tx\nVmPeak:\t 10 kB\nVmHWM:\t   5120 kB\n"),
            Some(5120)
        );
    }

    #[test]
    fn this_process_is_visible() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(peak_rss_kib(pid).unwrap_or(0) > 0);
    }

    #[test]
    fn machine_names_its_cpus() {
        let m = Machine::detect();
        assert!(m.cpus_online >= m.nproc && m.nproc >= 1, "{m:?}");
        assert!(
            !m.generator_cpus.is_empty() && m.generator_cpus != "unknown",
            "{m:?}"
        );
    }
}
