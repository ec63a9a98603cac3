//! Where a webhook may post: its URL, and the hosts the administrator allows
//! (`AISC_WEBHOOK_ALLOWED_HOSTS`). Nothing is sent to a host off the list, so a webhook cannot
//! make the service call an arbitrary internal address.

/// Longest webhook URL.
pub const MAX_URL_CHARS: usize = 2_000;

/// A webhook's URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub tls: bool,
    /// Host to connect to: a name (lower case), or an IP address without brackets.
    pub connect_host: String,
    /// The host as written in URLs (brackets around IPv6), lower case: what the allow-list names.
    pub host: String,
    pub port: u16,
    /// The `Host` header.
    pub host_header: String,
    /// Path and query.
    pub path: String,
}

impl Destination {
    /// An `http://` or `https://` URL without credentials or fragment; the refusal says why.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > MAX_URL_CHARS {
            return Err(format!("at most {MAX_URL_CHARS} characters"));
        }
        let url =
            url::Url::parse(text).map_err(|error| format!("not a URL ({error}); write e.g. https://host/path"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("the scheme {other} is not supported; write http:// or https://")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not supported; the signature authenticates the service".into());
        }
        if url.fragment().is_some() {
            return Err("a fragment is not sent to a server; remove it".into());
        }
        let connect_host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Ipv6(address)) => address.to_string(),
            None => return Err("no host".into()),
        };
        let host = url.host_str().unwrap_or(&connect_host).to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Self { tls, connect_host, host, port, host_header, path })
    }

    pub fn target(&self) -> crate::http_client::Target<'_> {
        crate::http_client::Target {
            connect_host: &self.connect_host,
            port: self.port,
            host_header: &self.host_header,
            path: &self.path,
            tls: self.tls,
        }
    }
}

/// The hosts webhooks may post to: `host[:port]` entries. An entry without a port allows the
/// scheme's default port (80 for http, 443 for https) only. Empty: no webhook at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<(String, Option<u16>)>);

impl AllowedHosts {
    /// A comma-separated list, e.g. `hooks.example.org,10.0.0.5:8443,[::1]:9000`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            entries.push(parse_entry(entry)?);
        }
        Ok(Self(entries))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, destination: &Destination) -> bool {
        let default_port = if destination.tls { 443 } else { 80 };
        self.0.iter().any(|(host, port)| *host == destination.host && port.unwrap_or(default_port) == destination.port)
    }
}

fn parse_entry(entry: &str) -> Result<(String, Option<u16>), String> {
    let refused = || format!("{entry:?} is not host or host:port (IPv6 in brackets: [::1]:8080)");
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(refused)?;
        address.parse::<std::net::Ipv6Addr>().map_err(|_| refused())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(refused)?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (entry.to_ascii_lowercase(), None),
        }
    };
    let valid_host = host.starts_with('[')
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !valid_host {
        return Err(refused());
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok().filter(|port| *port > 0).ok_or_else(refused)?),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_without_credentials() {
        let destination = Destination::parse("https://Hooks.Example.org/aisc?x=1").expect("valid");
        assert_eq!((destination.host.as_str(), destination.port, destination.tls), ("hooks.example.org", 443, true));
        assert_eq!(destination.path, "/aisc?x=1");
        assert!(Destination::parse("ftp://example.org/").is_err());
        assert!(Destination::parse("http://user:pw@example.org/").is_err());
        assert!(Destination::parse("http://example.org/#part").is_err());
        assert!(Destination::parse("not a url").is_err());
    }

    #[test]
    fn the_allow_list_names_hosts_and_ports() {
        let allowed = AllowedHosts::parse(" hooks.example.org , 127.0.0.1:9000,[::1]:8080").expect("valid");
        let allows = |url: &str| allowed.allows(&Destination::parse(url).expect("url"));
        assert!(allows("https://hooks.example.org/x"));
        assert!(allows("http://hooks.example.org/x"));
        assert!(!allows("https://hooks.example.org:8443/x"), "no port listed: the default port only");
        assert!(allows("http://127.0.0.1:9000/"));
        assert!(!allows("http://127.0.0.1:9001/"));
        assert!(!allows("http://localhost:9000/"));
        assert!(allows("http://[::1]:8080/"));
        assert!(!allows("http://evil.example.org/"));
        assert!(AllowedHosts::parse("").expect("empty").is_empty());
        assert!(AllowedHosts::parse("host:port").is_err());
        assert!(AllowedHosts::parse("http://host").is_err());
        assert!(AllowedHosts::parse("host:0").is_err());
    }
}
