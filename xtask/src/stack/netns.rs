//! `--netns`: the native stack across hosts, as far as one machine can show it. PostgreSQL,
//! each replica and nginx run each in a network namespace of its own, joined by veth pairs to
//! a bridge in one more namespace (the switch), which a last veth pair joins to the host: the
//! load still enters from the host, at nginx's address. Every address is in 10.231.0.0/24, on
//! links this module makes, so no packet leaves the machine. A replica can be cut off from
//! PostgreSQL (blackhole routes both ways: a packet sent across is dropped, as a partitioned
//! network drops it); the database link is slowed by a relay (`relay.rs`).

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// Every namespace and link of the stack is named with it.
const PREFIX: &str = "rinha-";
/// The first three bytes of every address of the stack.
const SUBNET: [u8; 3] = [10, 231, 0];
/// Each namespace's end of its link.
const INNER_LINK: &str = "eth0";
/// The last bytes of the host's addresses: the load connects from each in turn, since one
/// address runs out of ports at about 470 new connections a second beyond loopback (see the
/// replay's `--source-address`). The services take those from 2 up to the first of these.
const HOST_ADDRESSES: [u8; 5] = [1, 250, 251, 252, 253];

/// The namespaces of a running stack, in the services' start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Of every namespace's and link's name.
    prefix: String,
    /// A /24: the host is .1, the services .2 onwards.
    subnet: [u8; 3],
    services: Vec<String>,
}

impl Network {
    /// Makes a namespace for each of `services` and joins them, removing first whatever an
    /// earlier stack left behind; removes what it made if a step fails.
    pub fn create(services: &[&str]) -> Result<Network> {
        Network::create_named(PREFIX, SUBNET, services)
    }

    fn create_named(prefix: &str, subnet: [u8; 3], services: &[&str]) -> Result<Network> {
        let room = usize::from(HOST_ADDRESSES[1] - 2);
        ensure!(services.len() <= room, "{} services: more than {room}", services.len());
        let services = services.iter().map(|&service| service.to_owned()).collect();
        let network = Network { prefix: prefix.to_owned(), subnet, services };
        network.remove();
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
        let (switch, host_link) = (&self.namespace("switch"), &self.link_name("host"));
        ip(&["netns", "add", switch])?;
        in_namespace(switch, &["ip", "link", "add", "bridge", "type", "bridge"])?;
        in_namespace(switch, &["ip", "link", "set", "bridge", "up"])?;
        ip(&["link", "add", host_link, "type", "veth", "peer", "name", "host", "netns", switch])?;
        in_namespace(switch, &["ip", "link", "set", "host", "master", "bridge", "up"])?;
        for address in self.host_addresses() {
            ip(&["addr", "add", &format!("{address}/24"), "dev", host_link])?;
        }
        ip(&["link", "set", host_link, "up"])?;
        for (index, service) in self.services.iter().enumerate() {
            let namespace = self.namespace(service);
            ip(&["netns", "add", &namespace])?;
            in_namespace(&namespace, &["ip", "link", "set", "lo", "up"])?;
            // The switch's end is named after the service, for whoever looks at the bridge.
            let outer = self.link_name(service);
            in_namespace(
                switch,
                &[
                    "ip", "link", "add", &outer, "type", "veth", "peer", "name", INNER_LINK,
                    "netns", &namespace,
                ],
            )?;
            in_namespace(switch, &["ip", "link", "set", &outer, "master", "bridge", "up"])?;
            let address = format!("{}/24", self.service_address(index));
            in_namespace(&namespace, &["ip", "addr", "add", &address, "dev", INNER_LINK])?;
            in_namespace(&namespace, &["ip", "link", "set", INNER_LINK, "up"])?;
        }
        Ok(())
    }

    /// Removes every namespace named with the prefix, this stack's or one left behind, and the
    /// host's link (its peer goes with the switch, but a link whose namespace went another way
    /// may remain).
    pub fn remove(&self) {
        let listed = Command::new("ip").args(["netns", "list"]).output();
        let listed = listed.map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
        for line in listed.unwrap_or_default().lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with(&self.prefix) {
                let _ = ip(&["netns", "del", name]);
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.link_name("host")]).output();
    }

    /// The services' network, as PostgreSQL's `pg_hba.conf` writes it.
    pub fn subnet(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.0/24")
    }

    /// Service `name`'s address.
    pub fn address(&self, name: &str) -> Result<Ipv4Addr> {
        let index = self.services.iter().position(|service| service == name);
        Ok(self.service_address(index.with_context(|| format!("no namespace for {name}"))?))
    }

    /// `command`, run in service `name`'s namespace: `ip netns exec` execs it in place, so its
    /// pid is the program's.
    pub fn enter(&self, name: &str, command: &Command) -> Command {
        let mut entered = Command::new("ip");
        entered.args(["netns", "exec", &self.namespace(name)]).arg(command.get_program());
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
            in_namespace(&self.namespace(from), &["ip", "route", verb, "blackhole", &to])?;
        }
        Ok(())
    }

    fn namespace(&self, service: &str) -> String {
        format!("{}{service}", self.prefix)
    }

    fn link_name(&self, service: &str) -> String {
        // Interface names hold 15 bytes.
        self.namespace(service).chars().take(15).collect()
    }

    /// The host's addresses on the services' network.
    pub fn host_addresses(&self) -> Vec<Ipv4Addr> {
        let [a, b, c] = self.subnet;
        HOST_ADDRESSES.iter().map(|&d| Ipv4Addr::new(a, b, c, d)).collect()
    }

    fn service_address(&self, index: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 2 + index as u8)
    }
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
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn addresses_follow_the_start_order_inside_the_private_subnet() {
        let services = vec!["db".into(), "api1".into()];
        let network = Network { prefix: PREFIX.into(), subnet: SUBNET, services };
        assert_eq!(network.address("db").unwrap(), Ipv4Addr::new(10, 231, 0, 2));
        assert_eq!(network.address("api1").unwrap(), Ipv4Addr::new(10, 231, 0, 3));
        assert!(network.address("nginx").is_err());
        assert!(network.host_addresses().iter().all(Ipv4Addr::is_private));
        assert_eq!(network.host_addresses()[0], Ipv4Addr::new(10, 231, 0, 1));
        assert_eq!(network.subnet(), "10.231.0.0/24");
        assert_eq!(network.link_name("a-very-long-service-name").len(), 15);
        let mut command = Command::new("rinha");
        command.arg("healthcheck").env("PORT", "1");
        let entered = network.enter("api1", &command);
        let args: Vec<_> = entered.get_args().collect();
        assert_eq!(args, ["netns", "exec", "rinha-api1", "rinha", "healthcheck"]);
        assert_eq!(entered.get_envs().count(), 1);
    }

    /// Runs `work` on a thread inside `namespace`: sockets it makes belong there.
    fn inside<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{namespace}");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).unwrap();
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    work()
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn services_reach_each_other_and_the_host_reaches_them_until_cut_off() {
        // Apart from a stack's own namespaces and subnet, so that one may run meanwhile.
        let made = Network::create_named("rinhatest-", [10, 231, 1], &["a", "b"]);
        let network = match made {
            Ok(network) => network,
            Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipped: network namespaces cannot be made here: {error:#}");
                return;
            }
            Err(error) => panic!("{error:#}"),
        };
        let b = network.address("b").unwrap();
        let listener = inside("rinhatest-b", || TcpListener::bind((b, 0)).unwrap());
        let port = listener.local_addr().unwrap().port();
        let connect = |from: &str| {
            inside(from, || {
                let target = SocketAddr::from((b, port));
                TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok()
            })
        };
        let from_host = TcpStream::connect_timeout(&(b, port).into(), Duration::from_secs(2));
        from_host.unwrap().write_all(b"x").unwrap();
        let mut byte = [0];
        listener.accept().unwrap().0.read_exact(&mut byte).unwrap();
        assert!(connect("rinhatest-a"), "a reaches b");
        network.set_cut("a", "b", true).unwrap();
        assert!(!connect("rinhatest-a"), "a no longer reaches b");
        network.set_cut("a", "b", false).unwrap();
        assert!(connect("rinhatest-a"), "a reaches b again");
        network.remove();
        let listed = Command::new("ip").args(["netns", "list"]).output().unwrap().stdout;
        assert!(!String::from_utf8_lossy(&listed).contains("rinhatest-"), "all removed");
    }
}
