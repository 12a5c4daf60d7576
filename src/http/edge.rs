//! Answers for requests refused below the router. hyper answers an HTTP/1 request it cannot
//! parse by itself (400 malformed, 414 URI too long, 431 header fields too large) with a bare
//! head — no security headers, no `X-Request-Id`, an empty body — and offers no hook to shape
//! it (hardening issue, finding 8). [`EdgeIo`] wraps a connection's socket and, when hyper
//! writes such a head, writes a complete answer instead: the contract's JSON error, the
//! headers every response carries, a request id (also in the log line and counted in
//! `boltlink_http_edge_errors_total`) and `Connection: close` (hyper closes after it anyway).
//!
//! Only that exact shape is replaced: a response head starting `HTTP/1.x 400|414|431`,
//! written alone, with no `x-request-id` header — every response of the router carries one,
//! so nothing the application wrote is ever touched. HTTP/2 has no such answers (protocol
//! errors are frames), and its bytes never start with `HTTP/1.`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Called once per replaced answer with its status and request id.
pub type OnEdgeError = Arc<dyn Fn(u16, &str) + Send + Sync>;

/// A connection's socket, with hyper's bare error answers replaced (see the module doc).
pub struct EdgeIo<T> {
    inner: T,
    /// The replacement being written, how much of it is out, and what to report to hyper.
    replacing: Option<(Vec<u8>, usize, usize)>,
    on_error: OnEdgeError,
}

impl<T> EdgeIo<T> {
    pub fn new(inner: T, on_error: OnEdgeError) -> Self {
        Self {
            inner,
            replacing: None,
            on_error,
        }
    }
}

/// The status of a bare error head hyper wrote by itself, or `None` for anything else.
fn bare_error_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status = match rest.get(..3)? {
        b"400" => 400,
        b"414" => 414,
        b"431" => 431,
        _ => return None,
    };
    // The whole head, alone in this write, and none of ours.
    if !buf.ends_with(b"\r\n\r\n") || buf.len() > 1024 {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    if head
        .split("\r\n")
        .any(|line| line.to_ascii_lowercase().starts_with("x-request-id:"))
    {
        return None;
    }
    Some(status)
}

/// The complete answer for a bare error head: its status line, and hyper's `date`.
fn replacement(head: &[u8], status: u16, request_id: &str) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.1 400 Bad Request");
    let date = lines.find(|l| l.to_ascii_lowercase().starts_with("date:"));
    let message = match status {
        414 => "URI too long",
        431 => "Request header fields too large",
        _ => "Bad request: the request could not be parsed as HTTP",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut out = String::with_capacity(512 + body.len());
    out.push_str(status_line);
    out.push_str("\r\ncontent-type: application/json; charset=utf-8");
    out.push_str(&format!("\r\ncontent-length: {}", body.len()));
    for (name, value) in super::SECURITY_HEADERS {
        out.push_str(&format!("\r\n{name}: {value}"));
    }
    out.push_str(&format!("\r\nx-request-id: {request_id}"));
    out.push_str("\r\nconnection: close");
    if let Some(date) = date {
        out.push_str("\r\n");
        out.push_str(date);
    }
    out.push_str("\r\n\r\n");
    out.push_str(&body);
    out.into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> EdgeIo<T> {
    /// Starts replacing `buf` if it is a bare error head; then writes the replacement out.
    /// `None`: not a replacement, write `buf` as it is.
    fn poll_replace(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if self.replacing.is_none() {
            let status = bare_error_status(buf)?;
            let request_id = super::new_request_id();
            let request_id = request_id.to_str().unwrap_or("0");
            (self.on_error)(status, request_id);
            self.replacing = Some((replacement(buf, status, request_id), 0, buf.len()));
        }
        Some(self.poll_drain_replacement(cx))
    }

    fn poll_drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Some((bytes, written, report)) = &mut self.replacing else {
                return Poll::Ready(Ok(0));
            };
            if *written == bytes.len() {
                let report = *report;
                self.replacing = None;
                return Poll::Ready(Ok(report));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(p) = self.poll_replace(cx, buf) {
            return p;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's bare answers are one head with no body: one non-empty slice.
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            if self.replacing.is_some() || bare_error_status(only).is_some() {
                if let Some(p) = self.poll_replace(cx, only) {
                    return p;
                }
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.poll_drain_replacement(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.poll_drain_replacement(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_error_heads_are_recognised() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 18:00:00 GMT\r\n\r\n";
        assert_eq!(bare_error_status(bare), Some(431));
        assert_eq!(
            bare_error_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        // Ours carry a request id; other statuses and bodies are never touched.
        assert_eq!(
            bare_error_status(b"HTTP/1.1 400 Bad Request\r\nx-request-id: a-1\r\n\r\n"),
            None
        );
        assert_eq!(bare_error_status(b"HTTP/1.1 404 Not Found\r\n\r\n"), None);
        assert_eq!(
            bare_error_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(bare_error_status(b"HTTP/1.1 400 Bad Req"), None);
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer_with_the_edge_headers() {
        let out = replacement(
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 18:00:00 GMT\r\n\r\n",
            414,
            "abc-1",
        );
        let text = String::from_utf8(out).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains("\r\nx-request-id: abc-1"));
        assert!(head.contains("\r\nx-content-type-options: nosniff"));
        assert!(head.contains("\r\ndate: Fri, 04 Dec 2026 18:00:00 GMT"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert_eq!(body, r#"{"error":"URI too long"}"#);
    }
}
