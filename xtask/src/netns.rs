//! `--netns`: the native stack across hosts, as far as one machine can show it. PostgreSQL,
//! each replica and nginx run each in a network namespace of its own, joined by veth pairs to
//! a bridge in one more namespace (the switch), which a last veth pair joins to the host: the
//! load still enters from the host, at nginx's address. Every address is in 10.231.0.0/24, on
//! links this module makes, so no packet leaves the machine. The links can be slowed
//! (`tc netem`) and a replica cut off from PostgreSQL (blackhole routes both ways: a packet
//! sent across is dropped, as a partitioned network drops it).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// Every namespace and link of the stack is named with it.
const PREFIX: &str = "rinha-";
/// The namespace holding the bridge.
const SWITCH: &str = "rinha-switch";
/// The host's end of its link to the switch.
const HOST_LINK: &str = "rinha-host";
/// Every address: the host is .1, the services .2 onwards.
pub const SUBNET: &str = "10.231.0.0/24";
const SUBNET_BYTES: [u8; 3] = [10, 231, 0];
/// Each namespace's end of its link.
const INNER_LINK: &str = "eth0";

/// The namespaces of a running stack, in the services' start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    services: Vec<String>,
    /// Added by each link, in each direction, when asked for.
    latency: Option<Duration>,
}

impl Network {
    /// Makes a namespace for each of `services` and joins them, removing first whatever an
    /// earlier stack left behind; removes what it made if a step fails.
    pub fn create(services: &[&str], latency: Option<Duration>) -> Result<Network> {
        ensure!(services.len() < 250, "{} services: more than the subnet holds", services.len());
        remove_leftovers();
        let network =
            Network { services: services.iter().map(|&s| s.to_owned()).collect(), latency };
        if let Err(error) = network.build() {
            network.remove();
            return Err(error.context(
                "cannot make the network namespaces (`ip netns add` needs root, and the \
                 kernel veth and bridge support)",
            ));
        }
        Ok(network)
    }

    fn build(&self) -> Result<()> {
        ip(&["netns", "add", SWITCH])?;
        in_namespace(SWITCH, &["ip", "link", "add", "bridge", "type", "bridge"])?;
        in_namespace(SWITCH, &["ip", "link", "set", "bridge", "up"])?;
        ip(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", "host", "netns", SWITCH])?;
        in_namespace(SWITCH, &["ip", "link", "set", "host", "master", "bridge", "up"])?;
        ip(&["addr", "add", &format!("{}/24", host_address()), "dev", HOST_LINK])?;
        ip(&["link", "set", HOST_LINK, "up"])?;
        for (index, service) in self.services.iter().enumerate() {
            let namespace = namespace(service);
            ip(&["netns", "add", &namespace])?;
            in_namespace(&namespace, &["ip", "link", "set", "lo", "up"])?;
            // The switch's end is named after the service, for whoever looks at the bridge.
            let outer = link_name(service);
            in_namespace(
                SWITCH,
                &[
                    "ip", "link", "add", &outer, "type", "veth", "peer", "name", INNER_LINK,
                    "netns", &namespace,
                ],
            )?;
            in_namespace(SWITCH, &["ip", "link", "set", &outer, "master", "bridge", "up"])?;
            let address = format!("{}/24", service_address(index));
            in_namespace(&namespace, &["ip", "addr", "add", &address, "dev", INNER_LINK])?;
            in_namespace(&namespace, &["ip", "link", "set", INNER_LINK, "up"])?;
            if let Some(latency) = self.latency {
                self.set_delay(service, Some(latency))?;
            }
        }
        Ok(())
    }

    /// Removes every namespace and link of the stack.
    pub fn remove(&self) {
        remove_leftovers();
    }

    /// Service `name`'s address.
    pub fn address(&self, name: &str) -> Result<Ipv4Addr> {
        let index = self.services.iter().position(|service| service == name);
        Ok(service_address(index.with_context(|| format!("no namespace for {name}"))?))
    }

    /// `command`, run in service `name`'s namespace: `ip netns exec` execs it in place, so its
    /// pid is the program's.
    pub fn enter(&self, name: &str, command: &Command) -> Command {
        let mut entered = Command::new("ip");
        entered.args(["netns", "exec", &namespace(name)]).arg(command.get_program());
        entered.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => entered.env(key, value),
                None => entered.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            entered.current_dir(dir);
        }
        entered
    }

    /// Cuts services `a` and `b` off from each other, or joins them again: each drops what it
    /// would send the other.
    pub fn set_cut(&self, a: &str, b: &str, cut: bool) -> Result<()> {
        let verb = if cut { "add" } else { "del" };
        for (from, to) in [(a, b), (b, a)] {
            let to = format!("{}/32", self.address(to)?);
            in_namespace(&namespace(from), &["ip", "route", verb, "blackhole", &to])?;
        }
        Ok(())
    }

    /// Delays what service `name` sends by `delay`, on top of the link's latency, or restores
    /// the link's latency.
    pub fn set_delay(&self, name: &str, delay: Option<Duration>) -> Result<()> {
        let namespace = namespace(name);
        let total = delay.unwrap_or_default() + self.latency.unwrap_or_default();
        let _ = in_namespace(&namespace, &["tc", "qdisc", "del", "dev", INNER_LINK, "root"]);
        if total.is_zero() {
            return Ok(());
        }
        let delay = format!("{}us", total.as_micros());
        in_namespace(
            &namespace,
            &["tc", "qdisc", "add", "dev", INNER_LINK, "root", "netem", "delay", &delay],
        )
        .context("no tc netem here (iproute2's tc and the kernel's sch_netem are needed)")
    }
}

pub fn namespace(service: &str) -> String {
    format!("{PREFIX}{service}")
}

fn link_name(service: &str) -> String {
    // Interface names hold 15 bytes.
    format!("{PREFIX}{service}").chars().take(15).collect()
}

fn host_address() -> Ipv4Addr {
    Ipv4Addr::new(SUBNET_BYTES[0], SUBNET_BYTES[1], SUBNET_BYTES[2], 1)
}

fn service_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET_BYTES[0], SUBNET_BYTES[1], SUBNET_BYTES[2], 2 + index as u8)
}

/// Removes every namespace named with the prefix, and the host's link (its peer goes with the
/// switch, but a link whose namespace is gone by another way may remain).
fn remove_leftovers() {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let listed = listed.map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
    for line in listed.unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(PREFIX) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    let _ = Command::new("ip").args(["link", "del", HOST_LINK]).output();
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

fn in_namespace(namespace: &str, command: &[&str]) -> Result<()> {
    run(Command::new("ip").args(["netns", "exec", namespace]).args(command))
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_start_order_inside_the_private_subnet() {
        let network = Network { services: vec!["db".into(), "api1".into()], latency: None };
        assert_eq!(network.address("db").unwrap(), Ipv4Addr::new(10, 231, 0, 2));
        assert_eq!(network.address("api1").unwrap(), Ipv4Addr::new(10, 231, 0, 3));
        assert!(network.address("nginx").is_err());
        assert!(host_address().is_private() && network.address("db").unwrap().is_private());
        assert_eq!(link_name("a-very-long-service-name").len(), 15);
        let entered =
            network.enter("api1", Command::new("rinha").arg("healthcheck").env("PORT", "1"));
        let args: Vec<_> = entered.get_args().collect();
        assert_eq!(args, ["netns", "exec", "rinha-api1", "rinha", "healthcheck"]);
        assert_eq!(entered.get_envs().count(), 1);
    }
}
