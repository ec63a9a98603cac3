//! A minimal HTTP/1.1 client for the service's own outgoing POSTs (trace export, webhook
//! deliveries): one request per connection, no redirects followed, only the status code of the
//! answer read. Plain HTTP over a Tokio socket; `https` destinations go through rustls (the
//! ring provider and the webpki roots sqlx already links) — see [`post`].

use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The answer's status line must come within this many bytes.
const MAX_STATUS_LINE_BYTES: usize = 1024;

/// Where a POST goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Host to connect to: a name, or an IP address without brackets.
    pub connect_host: &'a str,
    pub port: u16,
    /// The `Host` header: the host as written (brackets around IPv6) and an explicit port.
    pub host_header: &'a str,
    /// The request target: path and query.
    pub path: &'a str,
    /// TLS (https) rather than plain HTTP.
    pub tls: bool,
}

/// One `POST` of `body` as `content_type`, with `headers` added, over a connection of its own;
/// the status code of the answer. The caller bounds the time it may take.
pub async fn post(
    target: Target<'_>,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<u16> {
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         User-Agent: aisc/{}\r\nConnection: close\r\n",
        target.path,
        target.host_header,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        if [name, value].iter().any(|text| text.contains(['\r', '\n'])) {
            return Err(std::io::Error::other("a header holds a line break"));
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let stream = tokio::net::TcpStream::connect((target.connect_host, target.port)).await?;
    if target.tls {
        let server_name = rustls::pki_types::ServerName::try_from(target.connect_host.to_string())
            .map_err(|error| std::io::Error::other(format!("not a TLS server name: {error}")))?;
        let connection = rustls::ClientConnection::new(tls_config()?, server_name).map_err(std::io::Error::other)?;
        let mut stream = tls::TlsStream::new(stream, connection);
        stream.write_all(&request).await?;
        read_status(&mut stream).await
    } else {
        let mut stream = stream;
        stream.write_all(&request).await?;
        read_status(&mut stream).await
    }
}

/// Reads up to the end of the status line and answers its code; the rest is not read.
async fn read_status(stream: &mut impl ReadSome) -> std::io::Result<u16> {
    let mut answer = Vec::with_capacity(128);
    let mut chunk = [0_u8; 512];
    let status_line = loop {
        if let Some(end) = answer.windows(2).position(|pair| pair == b"\r\n") {
            break &answer[..end];
        }
        if answer.len() > MAX_STATUS_LINE_BYTES {
            return Err(std::io::Error::other("the answer is not HTTP"));
        }
        let read = stream.read_some(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::other("the connection was closed without an answer"));
        }
        answer.extend_from_slice(&chunk[..read]);
    };
    status_code(status_line).ok_or_else(|| std::io::Error::other("the answer is not HTTP"))
}

/// Reads what the peer has sent, plain or through TLS; 0 at the end of the stream.
trait ReadSome {
    async fn read_some(&mut self, buffer: &mut [u8]) -> std::io::Result<usize>;
}

impl ReadSome for tokio::net::TcpStream {
    async fn read_some(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.read(buffer).await
    }
}

/// The code of an `HTTP/1.x NNN reason` line.
pub fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|version| version.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// TLS as sqlx does it: rustls with ring, trusting the webpki roots (Mozilla's list).
fn tls_config() -> std::io::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(std::io::Error::other)
}

mod tls {
    //! rustls' connection driven over a Tokio socket: what `tokio-rustls` does, for the one
    //! write-then-read exchange of a POST (no crate for ~60 lines).

    use std::io::{Read, Write};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct TlsStream {
        socket: TcpStream,
        connection: rustls::ClientConnection,
    }

    impl TlsStream {
        pub fn new(socket: TcpStream, connection: rustls::ClientConnection) -> Self {
            Self { socket, connection }
        }

        /// Sends what rustls has queued for the peer.
        async fn flush_tls(&mut self) -> std::io::Result<()> {
            while self.connection.wants_write() {
                let mut out = Vec::new();
                self.connection.write_tls(&mut out)?;
                self.socket.write_all(&out).await?;
            }
            Ok(())
        }

        /// Reads records from the peer into rustls; false at the end of the stream.
        async fn fill_tls(&mut self) -> std::io::Result<bool> {
            let mut buffer = [0_u8; 4096];
            let read = self.socket.read(&mut buffer).await?;
            if read == 0 {
                return Ok(false);
            }
            let mut slice = &buffer[..read];
            while !slice.is_empty() {
                self.connection.read_tls(&mut slice)?;
                self.connection.process_new_packets().map_err(std::io::Error::other)?;
            }
            Ok(true)
        }

        pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
            while self.connection.is_handshaking() {
                self.flush_tls().await?;
                if self.connection.is_handshaking() && !self.fill_tls().await? {
                    return Err(std::io::Error::other("the connection was closed during the TLS handshake"));
                }
            }
            self.connection.writer().write_all(data)?;
            self.flush_tls().await
        }

        /// Plain text the peer sent, at most `buffer.len()` bytes; 0 at its end.
        pub async fn read_plain(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            loop {
                match self.connection.reader().read(buffer) {
                    Ok(read) => return Ok(read),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
                self.flush_tls().await?;
                if !self.fill_tls().await? {
                    return Ok(0);
                }
            }
        }
    }

    impl super::ReadSome for TlsStream {
        async fn read_some(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.read_plain(buffer).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every connection with a plain-text HTTP status line.
    async fn plain_server(answer: &'static [u8]) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0_u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer).await;
            }
        });
        port
    }

    fn target(port: u16, tls: bool) -> Target<'static> {
        Target { connect_host: "127.0.0.1", port, host_header: "127.0.0.1", path: "/hook", tls }
    }

    #[tokio::test]
    async fn a_post_answers_the_status_code() {
        let port = plain_server(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").await;
        let status = post(target(port, false), "application/json", &[("X-Test", "1")], b"{}").await.expect("posted");
        assert_eq!(status, 202);
    }

    #[tokio::test]
    async fn headers_with_line_breaks_and_plain_text_answers_to_tls_are_errors() {
        let port = plain_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let injected = post(target(port, false), "application/json", &[("X-Test", "1\r\nX-Evil: 1")], b"{}").await;
        assert!(injected.is_err());
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            post(target(port, true), "application/json", &[], b"{}"),
        )
        .await
        .expect("no hang");
        assert!(answered.is_err(), "a server that does not speak TLS is not an answer");
    }
}
