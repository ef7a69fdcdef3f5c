//! HTTP/1.1 as Gatling's virtual users speak it: each user opens its own connection on its first request,
//! keeps it alive for the rest of its session, and closes it when the session ends. Every request has a
//! 60-second deadline (Gatling's default `requestTimeout`) that includes connecting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpSocket, TcpStream};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const AGENT: &str = "Agente do Caos - 2023";

/// A private IPv4 network (`10.231.0.0/24`) whose addresses a target may have besides loopback:
/// the native stack's network namespaces, on links of this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivateNetwork {
    first: Ipv4Addr,
    prefix_length: u32,
}

impl std::str::FromStr for PrivateNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(address, length)| {
            Some((
                address.parse::<Ipv4Addr>().ok()?,
                length.parse::<u32>().ok()?,
            ))
        });
        match parsed {
            Some((first, prefix_length))
                if first.is_private() && (8..=32).contains(&prefix_length) =>
            {
                Ok(Self {
                    first,
                    prefix_length,
                })
            }
            _ => Err(format!(
                "{text:?} is not a private IPv4 network such as 10.231.0.0/24"
            )),
        }
    }
}

impl PrivateNetwork {
    fn contains(&self, address: IpAddr) -> bool {
        let IpAddr::V4(address) = address else {
            return false;
        };
        let mask = u32::MAX << (32 - self.prefix_length);
        u32::from(address) & mask == u32::from(self.first) & mask
    }
}

/// Where the requests go: a loopback address and the base path the simulation's paths hang from.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    authority: String,
    base_path: String,
    /// The local addresses connections are made from, in turn; none, the system's choice.
    sources: Arc<[IpAddr]>,
    turn: Arc<AtomicUsize>,
}

impl Target {
    /// Resolves `http://host[:port][/base]`. Only loopback addresses are accepted, or those of
    /// `also` when given: the replay opens thousands of connections a second and is meant for a
    /// stack on the same machine.
    pub async fn resolve(base_url: &str, also: Option<PrivateNetwork>) -> Result<Self, String> {
        let uri: Uri = base_url
            .parse()
            .map_err(|error| format!("{base_url}: {error}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{base_url}: only http:// base URLs are supported"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{base_url}: no host"))?;
        let host_and_port = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let loopback: Vec<SocketAddr> = tokio::net::lookup_host(host_and_port)
            .await
            .map_err(|error| format!("{base_url}: {error}"))?
            .filter(|address| {
                address.ip().is_loopback() || also.is_some_and(|also| also.contains(address.ip()))
            })
            .collect();
        // `localhost` may list ::1 first while the stack listens on IPv4 only.
        let address = loopback
            .iter()
            .find(|address| address.is_ipv4())
            .or(loopback.first())
            .copied()
            .ok_or_else(|| match also {
                None => format!("{base_url}: does not resolve to a loopback address"),
                Some(_) => format!("{base_url}: not on loopback or the network allowed"),
            })?;
        Ok(Self {
            address,
            authority: authority.to_string(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            sources: Arc::new([]),
            turn: Arc::default(),
        })
    }

    /// This target, connected to from each of `sources` in turn. Whoever closes a TCP
    /// connection first keeps its address and port a minute (TIME_WAIT), and Linux reuses
    /// them early on loopback only: beyond it, one source address runs out of ports at about
    /// 470 new connections a second.
    pub fn connected_from(self, sources: &[IpAddr]) -> Self {
        Self {
            sources: sources.into(),
            ..self
        }
    }

    /// A path of the simulation (`/pessoas`) under the base URL.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    /// Turns a `Location` header into a path on this target, the way Gatling resolves it against the base
    /// URL. An absolute URL naming another host is refused rather than followed.
    pub fn location_path(&self, location: &str) -> Option<String> {
        let uri: Uri = location.parse().ok()?;
        let on_this_target = match uri.authority() {
            None => location.starts_with('/'),
            Some(authority) => uri.scheme_str() == Some("http") && *authority == self.authority,
        };
        on_this_target.then(|| {
            uri.path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned()
        })
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

/// Why a request produced no response; each is a KO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect(String),
    Exchange(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => write!(
                formatter,
                "request timeout after {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
            Self::Connect(error) => write!(formatter, "connect: {error}"),
            Self::Exchange(error) => write!(formatter, "http: {error}"),
        }
    }
}

/// One virtual user's connection, opened on first use.
pub struct UserConnection<'a> {
    target: &'a Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl<'a> UserConnection<'a> {
    pub fn new(target: &'a Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<Response, Failure> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post_json(&mut self, path: &str, body: Bytes) -> Result<Response, Failure> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, Failure> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection is in an unknown state; the next request gets a fresh one.
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, Failure> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.target.authority)
            .header(USER_AGENT, AGENT);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|error| Failure::Exchange(error.to_string()))?;

        let sender = self.ready_sender().await?;
        let response = sender.send_request(request).await.map_err(|error| {
            self.sender = None;
            Failure::Exchange(error.to_string())
        })?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| {
                self.sender = None;
                Failure::Exchange(error.to_string())
            })?
            .to_bytes();
        Ok(Response {
            status,
            location,
            body,
        })
    }

    /// The kept-alive connection if the server left it open, else a new one.
    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Failure> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.sender = Some(connect(self.target).await?);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let failed = |error: std::io::Error| Failure::Connect(error.to_string());
    let stream = match target.sources.len() {
        0 => TcpStream::connect(target.address).await.map_err(failed)?,
        sources => {
            let source = target.sources[target.turn.fetch_add(1, Ordering::Relaxed) % sources];
            let socket = match source {
                IpAddr::V4(_) => TcpSocket::new_v4(),
                IpAddr::V6(_) => TcpSocket::new_v6(),
            };
            let socket = socket.map_err(failed)?;
            socket.bind(SocketAddr::new(source, 0)).map_err(failed)?;
            socket.connect(target.address).await.map_err(failed)?
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|error| Failure::Connect(error.to_string()))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| Failure::Connect(error.to_string()))?;
    // The connection task ends by itself once the user drops its sender or the server closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// Everything but unreserved characters (RFC 3986) is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value the way Gatling encodes the search term it interpolates into
/// `/pessoas?t=...`: everything but unreserved characters becomes `%XX`.
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn base_urls_resolve_to_loopback_only() {
        let target = Target::resolve("http://127.0.0.1:9999", None)
            .await
            .unwrap();
        assert_eq!(target.address, "127.0.0.1:9999".parse().unwrap());
        let named = Target::resolve("http://localhost:9999", None)
            .await
            .unwrap();
        assert_eq!(named.address, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(target.path("/pessoas"), "/pessoas");
        let prefixed = Target::resolve("http://127.0.0.1:9999/api/", None)
            .await
            .unwrap();
        assert_eq!(prefixed.path("/pessoas"), "/api/pessoas");
        assert!(Target::resolve("http://10.0.0.1:9999", None).await.is_err());
        let namespaces: PrivateNetwork = "10.231.0.0/24".parse().unwrap();
        let inside = Target::resolve("http://10.231.0.5:9999", Some(namespaces)).await;
        assert_eq!(inside.unwrap().address, "10.231.0.5:9999".parse().unwrap());
        assert!(
            Target::resolve("http://10.231.1.5:9999", Some(namespaces))
                .await
                .is_err()
        );
        assert!(
            Target::resolve("http://127.0.0.1:9999", Some(namespaces))
                .await
                .is_ok()
        );
        for public in ["8.8.8.0/24", "10.0.0.0/4", "10.231.0.0", "nonsense/8"] {
            assert!(public.parse::<PrivateNetwork>().is_err(), "{public}");
        }
        assert!(Target::resolve("https://127.0.0.1", None).await.is_err());
        assert!(Target::resolve("127.0.0.1:9999", None).await.is_err());
        let bracketed = Target::resolve("http://[::1]:9999", None).await.unwrap();
        assert_eq!(bracketed.address, "[::1]:9999".parse().unwrap());
    }

    #[tokio::test]
    async fn locations_resolve_against_the_base_url() {
        let target = Target::resolve("http://127.0.0.1:9999", None)
            .await
            .unwrap();
        assert_eq!(
            target.location_path("/pessoas/1").as_deref(),
            Some("/pessoas/1")
        );
        assert_eq!(
            target
                .location_path("http://127.0.0.1:9999/pessoas/1")
                .as_deref(),
            Some("/pessoas/1")
        );
        assert_eq!(target.location_path("http://example.com/pessoas/1"), None);
        assert_eq!(target.location_path("pessoas/1"), None);
        assert_eq!(
            target.location_path("https://127.0.0.1:9999/pessoas/1"),
            None
        );
        assert_eq!(
            target.location_path("http://127.0.0.1:9999").as_deref(),
            Some("/")
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("O biwajh hZu"), "O%20biwajh%20hZu");
        assert_eq!(encode_query_value("C#+é"), "C%23%2B%C3%A9");
    }
}
