//! Live customer sockets for the scenarios that listen on many (`fanout`, `queue`): opened 256
//! at a time, pings answered, each text frame handed to the scenario.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::fanout::Customer;

pub struct Sockets {
    /// Sockets that could not connect, or closed before [`Sockets::stop`].
    pub closed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Sockets {
    /// A socket for each customer (`/v1/sdk/ws` on `ws_base`); `on_text(i, frame)` sees every
    /// text frame of customer `i`'s socket.
    pub fn open(
        ws_base: &str,
        customers: &[Customer],
        on_text: impl Fn(usize, &str) + Send + Sync + 'static,
    ) -> Sockets {
        let (closed, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        let on_text = Arc::new(on_text);
        let readers = customers
            .iter()
            .enumerate()
            .map(|(i, customer)| {
                let url = format!("{ws_base}/v1/sdk/ws?access_token={}", customer.token);
                let (closed, stop, gate, on_text) = (closed.clone(), stop.clone(), gate.clone(), on_text.clone());
                tokio::spawn(async move {
                    let permit = gate.acquire_owned().await;
                    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                        closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    drop(permit);
                    while let Some(Ok(message)) = ws.next().await {
                        match message {
                            Message::Text(text) => on_text(i, text.as_str()),
                            Message::Ping(payload) => {
                                let _ = ws.send(Message::Pong(payload)).await;
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    if !stop.load(Ordering::Relaxed) {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Sockets { closed, stop, readers }
    }

    /// Waits (up to two minutes) until every socket has either `opened` (as the scenario counts
    /// it) or closed; the seconds it took.
    pub async fn opened(&self, opened: &AtomicU64) -> f64 {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        while opened.load(Ordering::Relaxed) + self.closed.load(Ordering::Relaxed) < self.readers.len() as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed().as_secs_f64()
    }

    /// Stops listening: what closes from here is not counted.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers {
            reader.abort();
        }
    }
}
