//! `voxbridge healthcheck`: `GET /healthz` on the local bridge (or `--url`), exit 0 on 200.
//! Made for container health checks: no shell, curl or wget needed in the image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URL to check (plain `http://`). Default: `/healthz` of `media.listen` on this host.
    #[arg(long)]
    url: Option<String>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

pub(crate) fn run(config: &Config, args: &Args) -> Result<()> {
    let (addr, host, path) = if let Some(url) = &args.url {
        parse(url)?
    } else {
        let mut addr = config.media.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        (addr, addr.to_string(), "/healthz".to_owned())
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let status =
        get(addr, &host, &path, timeout).with_context(|| format!("GET http://{host}{path}"))?;
    if status != 200 {
        bail!("GET http://{host}{path}: status {status}");
    }
    Ok(())
}

/// `http://host:port/path` -> (address, Host header, path).
fn parse(url: &str) -> Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?}: only http:// URLs are checked"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("--url {url:?}: no address for {authority}"))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// The status code of `GET path` over HTTP/1.1.
fn get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: voxbridge-healthcheck\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = std::str::from_utf8(&head[..len]).unwrap_or_default();
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {line:?}"))
}
