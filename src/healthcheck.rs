//! `rinha healthcheck`: a probe for container healthchecks, which have no HTTP client to call.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// True when this host's replica, listening on `host` and `port`, answers
/// `GET /contagem-pessoas` with `200`, which needs both the HTTP server and the database. A
/// replica on every interface is probed on loopback.
pub fn probe(host: IpAddr, port: u16) -> Result<(), String> {
    let host = match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        specific => specific,
    };
    let address = SocketAddr::from((host, port));
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)))
        .and_then(|()| {
            stream.write_all(
                b"GET /contagem-pessoas HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
        })
        .map_err(|e| format!("cannot send the probe: {e}"))?;
    let mut status_line = [0u8; 12];
    stream
        .read_exact(&mut status_line)
        .map_err(|e| format!("no answer: {e}"))?;
    match &status_line {
        b"HTTP/1.1 200" => Ok(()),
        other => Err(format!("answered {}", String::from_utf8_lossy(other))),
    }
}
