//! `tollgate-ceiling`: the upper bound of Tollgate's transport stack on this machine.
//!
//! The same hyper 1 + tokio-tungstenite stack as Tollgate (HTTP/1.1 keep-alive, WebSocket upgrade on
//! any path, a 4 KiB WebSocket read buffer), answering every request with a fixed envelope-shaped JSON
//! reply: no parsing of the request beyond extracting `requestId`, no routing, no storage.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

const BODY: &str = r#"{"action":"now","controller":"server","error":null,"headers":{},"node":"knode-ceiling","requestId":"00000000-0000-4000-8000-000000000000","result":{"now":1795782600000},"status":200,"volatile":null}"#;

fn request_id(text: &str) -> &str {
    let Some(start) = text.find(r#""requestId":""#).map(|i| i + 13) else {
        return "";
    };
    text[start..]
        .find('"')
        .map_or("", |end| &text[start..start + end])
}

async fn serve_ws(upgraded: hyper::upgrade::Upgraded) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(message)) = rx.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let id = request_id(&text);
        let reply = format!(
            r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"knode-ceiling","requestId":"{id}","result":{{"now":1795782600000}},"status":200,"volatile":null,"room":"{id}"}}"#
        );
        if tx.send(Message::text(reply)).await.is_err() {
            break;
        }
    }
}

async fn handle(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                serve_ws(upgraded).await;
            }
        });
        let mut res = hyper::Response::new(Full::new(Bytes::new()));
        *res.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(
            "upgrade",
            hyper::header::HeaderValue::from_static("websocket"),
        );
        h.insert(
            "connection",
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert("sec-websocket-accept", v);
        }
        return Ok(res);
    }
    let mut res = hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    res.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7600)));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate-ceiling: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tollgate-ceiling listening on {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            let _ = conn.await;
        });
    }
}
