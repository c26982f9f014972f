//! A minimal HTTP/1.1 client for the ingest benchmark's closed loops: one keep-alive
//! connection per loop, requests written as bytes, answers read by `Content-Length`.
//!
//! Why not reqwest: on two cores the load generator shares the CPU with the server it
//! measures, and reqwest's per-request machinery (header maps, pool checkout, body
//! plumbing) made the generator use more CPU than the ingest itself. pgbench, the
//! benchmark's yardstick, likewise speaks its protocol directly. Only what the benchmark
//! needs: `POST` with a body, a `Content-Length` answer; anything else (chunked answers, a
//! malformed status line) is an error the run reports.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where to post: `http://host:port/path` split once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for connecting and for the `Host` header.
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("no host in {url}"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            path: path.to_owned(),
        })
    }
}

/// One keep-alive connection, opened on first use and again after an error or a
/// `Connection: close`.
pub struct Connection {
    target: Target,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn new(target: Target) -> Connection {
        Connection {
            target,
            stream: None,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Posts `body` with `headers` (name, value) and returns the answer's status code.
    pub async fn post(&mut self, headers: &[(&str, &str)], body: &[u8]) -> io::Result<u16> {
        let result = self.exchange(headers, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, headers: &[(&str, &str)], body: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.target.authority).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("no connection"));
        };
        let mut request = Vec::with_capacity(256 + body.len());
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(self.target.path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(self.target.authority.as_bytes());
        for (name, value) in headers {
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
        }
        request.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        stream.write_all(&request).await?;
        // Read the head, then exactly Content-Length bytes of body.
        self.buffer.clear();
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if self.buffer.len() > 64 * 1024 {
                return Err(io::Error::other("answer head over 64 KiB"));
            }
            read_some(stream, &mut self.buffer, "before the answer").await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
            .map_err(|_| io::Error::other("answer head is not UTF-8"))?;
        let (status, length, close) = parse_head(head)?;
        while self.buffer.len() - head_end < length {
            read_some(stream, &mut self.buffer, "inside the answer's body").await?;
        }
        if self.buffer.len() - head_end > length {
            return Err(io::Error::other(
                "more bytes than the answer's Content-Length",
            ));
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

/// Appends what the socket has to `buffer`; the end of the stream is an error `while`.
async fn read_some(stream: &mut TcpStream, buffer: &mut Vec<u8>, while_: &str) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed {while_}"),
        ));
    }
    buffer.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Status code, Content-Length and whether the server closes the connection.
fn parse_head(head: &str) -> io::Result<(u16, usize, bool)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {status_line:?}")))?;
    let mut length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| io::Error::other("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other("chunked answers are not supported"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok((status, length.unwrap_or(0), close))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8081/webhooks/whatsapp"),
            Ok(Target {
                authority: "127.0.0.1:8081".into(),
                path: "/webhooks/whatsapp".into()
            })
        );
        assert_eq!(
            Target::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(Target::parse("https://x/").is_err());
    }

    #[test]
    fn heads_parse_and_chunked_is_refused() {
        assert_eq!(
            parse_head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n").unwrap(),
            (200, 12, false)
        );
        assert_eq!(
            parse_head("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n").unwrap(),
            (503, 0, true)
        );
        assert!(parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head("garbage\r\n\r\n").is_err());
    }

    /// Two posts on one connection, each answer read whole (the second status proves the
    /// first body was consumed exactly).
    #[tokio::test]
    async fn two_posts_reuse_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            for status in ["200 OK", "409 Conflict"] {
                let mut buffer = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buffer).await.unwrap();
                    received.extend_from_slice(&buffer[..n]);
                    if received.ends_with(b"{\"a\":1}") {
                        break;
                    }
                }
                received.clear();
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\nhello");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            // A third accept would mean a reconnection: there is none.
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept())
                .await
                .is_err()
        });
        let target = Target::parse(&format!("http://{address}/hook")).unwrap();
        let mut connection = Connection::new(target);
        let headers = [("Content-Type", "application/json")];
        assert_eq!(connection.post(&headers, b"{\"a\":1}").await.unwrap(), 200);
        assert_eq!(connection.post(&headers, b"{\"a\":1}").await.unwrap(), 409);
        assert!(server.await.unwrap(), "the client reconnected");
    }
}
