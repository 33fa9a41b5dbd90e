//! A minimal WebSocket client: sends one request envelope to a Tollgate server and prints the answer.
//!
//! ```sh
//! cargo run -p tollgate-examples --example ws_client -- ws://127.0.0.1:7512 '{"controller":"server","action":"now"}'
//! ```
//!
//! Both arguments are optional; they default to the values above.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:7512".to_owned());
    let request = args.next().unwrap_or_else(|| {
        r#"{"controller":"server","action":"now","requestId":"example-1"}"#.to_owned()
    });
    // Validate locally so a typo is reported before anything is sent.
    let envelope: serde_json::Value = serde_json::from_str(&request)?;

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::text(envelope.to_string())).await?;
    while let Some(message) = ws.next().await {
        match message? {
            Message::Text(text) => {
                println!("{text}");
                break;
            }
            Message::Close(frame) => {
                eprintln!("server closed the socket: {frame:?}");
                break;
            }
            _ => continue,
        }
    }
    ws.close(None).await?;
    Ok(())
}
