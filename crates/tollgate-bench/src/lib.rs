//! Client code shared by the load tools (`tollgate-bench`, `tollgate-idle`, `tollgate-soak`):
//! request templates and ids, answer matching, connections, and the server's resident memory.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket connection to the server.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An HTTP/1.1 keep-alive connection to the server (its driver runs on its own task).
pub type HttpSender = SendRequest<Full<Bytes>>;

/// `{conn}` in a request template replaced by the connection number.
pub fn template(request: &str, conn: usize) -> String {
    request.replace("{conn}", &conn.to_string())
}

/// `{"requestId":"<id>",` + the rest of the template object.
pub fn with_request_id(template: &str, id: &str) -> String {
    let rest = template.trim_start().strip_prefix('{').unwrap_or(template);
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!(r#"{{"requestId":"{id}"{sep}{rest}"#)
}

/// The `room` of a WebSocket answer (it is always the last key).
pub fn room(text: &str) -> Option<&str> {
    let start = text.rfind(r#""room":""#)? + 8;
    let end = text[start..].find('"')? + start;
    Some(&text[start..end])
}

/// Whether an answer envelope reports success.
pub fn succeeded(text: &str) -> bool {
    text.contains(r#""status":200"#)
}

/// VmRSS of a process, in KiB (`/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Opens a WebSocket to `ws://<addr>/`.
pub async fn ws_connect(addr: SocketAddr) -> Result<WsStream, String> {
    let url = format!("ws://{addr}/");
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Opens an HTTP/1.1 connection (`TCP_NODELAY`) and spawns its driver.
pub async fn http_connect(addr: SocketAddr) -> Result<HttpSender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_and_rooms() {
        assert_eq!(
            with_request_id(r#"{"controller":"a"}"#, "1-2"),
            r#"{"requestId":"1-2","controller":"a"}"#
        );
        assert_eq!(with_request_id("{}", "x"), r#"{"requestId":"x"}"#);
        assert_eq!(room(r#"{"a":1,"room":"7-9"}"#), Some("7-9"));
        assert_eq!(template(r#"{"_id":"p-{conn}"}"#, 3), r#"{"_id":"p-3"}"#);
    }

    #[test]
    fn rss_of_this_process() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
