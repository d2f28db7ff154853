//! The SSRF policy: webhook URLs must not reach the backend's own network unless the config
//! allows it. A URL is checked when a subscription is created (its host resolved, every
//! address checked) and again at every delivery: IP literals before the request, names by
//! the HTTP client's resolver, so a name that is re-pointed (DNS rebinding) is refused too.
//! Redirects are not followed and proxies are not used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::error::WebhookError;

/// The longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// Why an address is refused by the SSRF policy, or `None` when it is a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "unspecified",
        (10, _, _) => "private",
        (100, 64..=127, _) => "shared (carrier-grade nat)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "reserved (ietf protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let s = ip.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d):
    // judged by the IPv4 address inside.
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return forbidden_v4(embedded_v4(s[6], s[7])).or(if s[5] == 0 {
            Some("reserved (ipv4-compatible)")
        } else {
            None
        });
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 (2002:a.b.c.d::/48): the IPv4 address inside.
    if s[0] == 0x2002 {
        return forbidden_v4(embedded_v4(s[1], s[2]));
    }
    let reason = match s[0] {
        0x0100 if s[1..4] == [0, 0, 0] => "reserved (discard)",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0xfc00..=0xfdff => "private (unique local)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        _ => return None,
    };
    Some(reason)
}

/// Whether a host name is refused without resolving it (`localhost` and its subdomains,
/// RFC 6761).
fn forbidden_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Parses a webhook URL and checks what does not need the network: `http`/`https`, a host,
/// the length, and (unless `allow_private`) an IP literal or `localhost`.
pub(crate) fn check_syntax(url: &str, allow_private: bool) -> Result<Url, WebhookError> {
    if url.len() > MAX_URL_LEN {
        return Err(WebhookError::invalid(
            "url",
            format!("longer than {MAX_URL_LEN} bytes"),
        ));
    }
    let parsed = Url::parse(url).map_err(|e| WebhookError::invalid("url", format!("{e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::invalid(
            "url",
            format!("scheme must be http or https, not {}", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::invalid("url", "the url has no host"));
    }
    if !allow_private {
        check_literal(&parsed)?;
    }
    Ok(parsed)
}

/// A URL's host: an IP literal or a name.
enum UrlHost<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// The host of a parsed URL (the URL parser has already normalised IPv4 forms such as
/// `2130706433` to dotted quads and wrapped IPv6 literals in brackets).
fn url_host(url: &Url) -> Option<UrlHost<'_>> {
    let host = url.host_str()?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| UrlHost::Ip(IpAddr::V6(ip)));
    }
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => Some(UrlHost::Ip(IpAddr::V4(ip))),
        Err(_) => Some(UrlHost::Name(host)),
    }
}

/// Refuses a URL whose host is a forbidden IP literal or `localhost` (names are checked when
/// they are resolved).
pub(crate) fn check_literal(url: &Url) -> Result<(), WebhookError> {
    let ip = match url_host(url) {
        Some(UrlHost::Ip(ip)) => ip,
        Some(UrlHost::Name(name)) => {
            if forbidden_name(name) {
                return Err(WebhookError::UrlNotAllowed(format!("{name} is loopback")));
            }
            return Ok(());
        }
        None => return Ok(()),
    };
    match forbidden_reason(ip) {
        Some(reason) => Err(WebhookError::UrlNotAllowed(format!("{ip} is {reason}"))),
        None => Ok(()),
    }
}

/// Checks a webhook URL fully: [`check_syntax`], then (unless `allow_private`) resolves the
/// host and refuses it if any address is forbidden. A name that does not resolve is
/// [`WebhookError::Unresolvable`].
pub(crate) async fn check_url(url: &str, allow_private: bool) -> Result<Url, WebhookError> {
    let parsed = check_syntax(url, allow_private)?;
    if allow_private {
        return Ok(parsed);
    }
    if let Some(UrlHost::Name(name)) = url_host(&parsed) {
        let addrs = resolve(name).await?;
        check_addrs(name, &addrs)?;
    }
    Ok(parsed)
}

async fn resolve(name: &str) -> Result<Vec<SocketAddr>, WebhookError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|source| WebhookError::Unresolvable {
            host: name.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(WebhookError::Unresolvable {
            host: name.to_owned(),
            source: std::io::Error::other("no address"),
        });
    }
    Ok(addrs)
}

fn check_addrs(name: &str, addrs: &[SocketAddr]) -> Result<(), WebhookError> {
    for addr in addrs {
        if let Some(reason) = forbidden_reason(addr.ip()) {
            return Err(WebhookError::UrlNotAllowed(format!(
                "{name} resolves to {}, which is {reason}",
                addr.ip()
            )));
        }
    }
    Ok(())
}

/// The HTTP client's resolver: resolves with the system resolver and, unless private
/// addresses are allowed, refuses a name with any forbidden address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardedResolver {
    pub(crate) allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if !allow_private && forbidden_name(&host) {
                return Err(WebhookError::UrlNotAllowed(format!("{host} is loopback")).into());
            }
            let addrs = resolve(&host).await?;
            if !allow_private {
                check_addrs(&host, &addrs)?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A URL as logged: scheme, host, port and path; no credentials, query or fragment.
pub(crate) fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(port) => format!("{}://{host}:{port}{}", u.scheme(), u.path()),
                None => format!("{}://{host}{}", u.scheme(), u.path()),
            }
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses_are_named() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade nat)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private (unique local)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("ff02::1", "multicast"),
        ];
        for (ip, reason) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_reason(ip), Some(reason), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "172.32.0.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_reason(ip), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn private_urls_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/hook",
            "http://192.168.0.10/hook",
            "http://[fe80::1]/hook",
            "http://0.0.0.0/hook",
            "http://localhost:9000/hook",
            "http://api.localhost/hook",
            "http://2130706433/hook",
        ] {
            let err = check_url(url, false).await.unwrap_err();
            assert!(
                matches!(err, WebhookError::UrlNotAllowed(_)),
                "{url}: {err}"
            );
            check_url(url, true).await.unwrap();
        }
        // A public literal needs no resolution.
        check_url("https://203.0.114.7/hook", false).await.unwrap();
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses() {
        // `localhost` resolves through the system resolver (/etc/hosts) to loopback.
        let resolver = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());
        let open = GuardedResolver {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = open.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        // A name that resolves to loopback, checked by resolution not by its spelling.
        let err = check_addrs("x.example", &["127.0.0.1:0".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn syntax_is_checked_and_urls_are_redacted() {
        assert!(check_syntax("ftp://example.com/x", true).is_err());
        assert!(check_syntax("not a url", true).is_err());
        assert!(check_syntax("https://hooks.example.vn/ioc", false).is_ok());
        assert_eq!(
            redact_url("https://user:pw@hooks.example.vn:8443/ioc?token=abc#x"),
            "https://hooks.example.vn:8443/ioc"
        );
    }
}
