//! Webhook targets: parsing a subscription URL ([`WebhookUrl`]) and resolving it to addresses
//! a delivery may connect to ([`resolve_checked`], [`GuardedResolver`]).
//!
//! A URL is accepted when it is `http` or `https`, at most 2048 bytes, names a host, and has
//! no credentials and no fragment. Hosts are parsed the WHATWG way (`url` crate), so numeric
//! spellings such as `http://2130706433/` or `http://0x7f.1/` become the IP address they
//! stand for and are classified as such.
//!
//! The address check runs twice: when a subscription is created (every address the host
//! resolves to must be allowed) and again for every connection a delivery opens, inside the
//! HTTP client's DNS resolver ([`GuardedResolver`]). The client connects only to the addresses
//! that resolver returned, so a name that re-resolves to a private address after creation
//! (DNS rebinding) is refused at delivery time: the checked address is the one connected to.
//! IP-literal hosts never reach a resolver; [`check_literal`] covers them before each send.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::address::{classify, AddressClass};
use events::subscription::MAX_URL_BYTES;

/// How long one DNS resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a target was refused. Messages never echo the URL (it may carry tokens).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url is invalid: {0}")]
    Invalid(&'static str),
    #[error("the target host does not resolve")]
    Unresolvable,
    #[error("the target resolves to a {} address, which webhooks may not reach", .0.as_str())]
    Forbidden(AddressClass),
}

/// A syntactically valid webhook URL (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Parses and checks a subscription URL.
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        if raw.len() > MAX_URL_BYTES {
            return Err(TargetError::Invalid("longer than 2048 bytes"));
        }
        let url = Url::parse(raw).map_err(|_| TargetError::Invalid("not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Invalid("the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Invalid(
                "credentials in the URL are not allowed",
            ));
        }
        if url.fragment().is_some() {
            return Err(TargetError::Invalid("a fragment is not allowed"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::Invalid("a host is required"));
        }
        Ok(Self(url))
    }

    /// The normalised URL string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The host's IP address when the URL names one literally.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        // The parser has normalised IP hosts (IPv6 in brackets); a domain never parses as one.
        let host = self.0.host_str()?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        bare.parse().ok()
    }
}

/// Refuses an IP-literal host whose address is not allowed (domain names pass: the
/// resolver checks them).
pub fn check_literal(url: &WebhookUrl, allow_private: bool) -> Result<(), TargetError> {
    match url.literal_ip() {
        Some(ip) => check_address(ip, allow_private),
        None => Ok(()),
    }
}

fn check_address(ip: IpAddr, allow_private: bool) -> Result<(), TargetError> {
    let class = classify(ip);
    if class.is_allowed(allow_private) {
        Ok(())
    } else {
        Err(TargetError::Forbidden(class))
    }
}

/// Resolves the URL's host and checks every address; the creation-time check.
pub async fn resolve_checked(
    url: &WebhookUrl,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let port = url.0.port_or_known_default().unwrap_or(443);
    if let Some(ip) = url.literal_ip() {
        check_address(ip, allow_private)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = url
        .0
        .host_str()
        .ok_or(TargetError::Invalid("a host is required"))?;
    lookup(host, port, allow_private).await
}

/// Resolves `host` and refuses the whole answer if any address is not allowed: a name that
/// mixes public and private addresses is treated as hostile, not filtered.
async fn lookup(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| TargetError::Unresolvable)?
        .map_err(|_| TargetError::Unresolvable)?;
    let addrs: Vec<SocketAddr> = resolved.collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    for addr in &addrs {
        check_address(addr.ip(), allow_private)?;
    }
    Ok(addrs)
}

/// The HTTP client's DNS resolver for deliveries: resolves, then refuses forbidden addresses,
/// so every connection goes to an address checked at that moment.
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            // Port 0: the client substitutes the URL's port.
            let addrs = lookup(name.as_str(), 0, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client deliveries are sent with: the guarded resolver, no proxy (a proxy would
/// connect on our behalf to unchecked addresses), no redirects (a redirect could point
/// anywhere), bounded connect time; the per-request timeout is set by the sender.
pub fn delivery_client(allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent("file-engine-webhooks/1")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(raw: &str) -> bool {
        matches!(WebhookUrl::parse(raw), Err(TargetError::Invalid(_)))
    }

    #[test]
    fn accepts_http_and_https_urls() {
        for ok in [
            "https://hooks.example.com/x?y=1",
            "http://example.com:8080/",
            "http://127.0.0.1:9000/hook",
            "https://[2606:4700::1111]/",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://example.com/#frag",
            "http://",
            "https://:443/",
            long.as_str(),
        ] {
            assert!(invalid(bad), "{bad}");
        }
    }

    #[test]
    fn numeric_host_spellings_are_classified_as_the_address() {
        for raw in ["http://2130706433/", "http://0x7f.1/", "http://127.1/"] {
            let url = WebhookUrl::parse(raw).unwrap();
            assert_eq!(
                check_literal(&url, false),
                Err(TargetError::Forbidden(AddressClass::Loopback)),
                "{raw}"
            );
        }
    }

    #[test]
    fn literal_targets_are_checked() {
        let forbidden = |raw: &str| check_literal(&WebhookUrl::parse(raw).unwrap(), false);
        assert!(forbidden("http://10.0.0.1/").is_err());
        assert!(forbidden("http://[::1]/").is_err());
        assert!(forbidden("http://[::ffff:127.0.0.1]/").is_err());
        assert!(forbidden("http://169.254.169.254/latest/meta-data").is_err());
        assert!(forbidden("http://8.8.8.8/").is_ok());
        assert!(forbidden("http://example.com/").is_ok());
        let metadata = WebhookUrl::parse("http://169.254.169.254/").unwrap();
        assert!(check_literal(&metadata, true).is_err());
        assert!(check_literal(&WebhookUrl::parse("http://127.0.0.1/").unwrap(), true).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let url = WebhookUrl::parse("http://localhost:9/").unwrap();
        assert!(matches!(
            resolve_checked(&url, false).await,
            Err(TargetError::Forbidden(AddressClass::Loopback))
        ));
        assert!(resolve_checked(&url, true).await.is_ok());
    }

    #[tokio::test]
    async fn the_delivery_resolver_refuses_rebound_names() {
        let resolver = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());
    }
}
