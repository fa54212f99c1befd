//! `attune-bench smtp-sink` and `attune-bench smtp-load`: the SMTP side of the delivery
//! benchmark. The sink accepts every message (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//! counts messages and distinct `Message-ID`s, and prints the counts as JSON once idle.
//! The load client measures the sink's ceiling: `--connections` sessions, each sending
//! one small message after another for `--seconds`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

#[derive(Debug, Args)]
pub struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Print the counts and stop after this many idle seconds following the first message.
    #[arg(long, default_value_t = 3.0)]
    pub idle_secs: f64,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub server: SocketAddr,
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

#[derive(Default)]
struct Counts {
    messages: u64,
    ids: HashSet<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

pub async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("SMTP sink on {}", args.listen);
    let counts: Arc<Mutex<Counts>> = Default::default();
    let c = counts.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let _ = session(sock, c).await;
            });
        }
    });
    let idle = Duration::from_secs_f64(args.idle_secs);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let g = counts.lock().unwrap();
        if g.last.is_some_and(|t| t.elapsed() >= idle) {
            break;
        }
    }
    server.abort();
    let g = counts.lock().unwrap();
    let span = match (g.first, g.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "{}",
        serde_json::json!({
            "messages": g.messages,
            "distinct_message_ids": g.ids.len(),
            "first_to_last_secs": span,
            "messages_per_sec": if span > 0.0 { g.messages as f64 / span } else { 0.0 },
        })
    );
    Ok(())
}

async fn session(sock: tokio::net::TcpStream, counts: Arc<Mutex<Counts>>) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                .await?;
        } else if upper == "DATA" {
            w.write_all(b"354 go on\r\n").await?;
            let mut id = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                if id.is_empty() && line.to_ascii_lowercase().starts_with("message-id:") {
                    id = line[11..].trim().to_owned();
                }
            }
            {
                let mut g = counts.lock().unwrap();
                let now = Instant::now();
                g.first.get_or_insert(now);
                g.last = Some(now);
                g.messages += 1;
                g.ids.insert(id);
            }
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"250 OK\r\n").await?;
        }
    }
}

pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let server = args.server;
        tasks.push(tokio::spawn(async move {
            let sock = tokio::net::TcpStream::connect(server).await?;
            sock.set_nodelay(true)?;
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            // Reads one reply (its last line has a space after the code).
            macro_rules! reply {
                () => {{
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await? == 0 {
                            anyhow::bail!("the server closed the connection");
                        }
                        if line.as_bytes().get(3) == Some(&b' ') {
                            break;
                        }
                    }
                }};
            }
            reply!();
            w.write_all(b"EHLO load\r\n").await?;
            reply!();
            let mut sent = 0u64;
            while Instant::now() < until {
                let msg = format!(
                    "MAIL FROM:<load@bench>\r\nRCPT TO:<c{c}@example.com>\r\nDATA\r\n"
                );
                w.write_all(msg.as_bytes()).await?;
                reply!();
                reply!();
                reply!();
                let body = format!(
                    "Message-ID: <load_{c}_{sent}@bench>\r\nSubject: load\r\n\r\nA note about your account.\r\n.\r\n"
                );
                w.write_all(body.as_bytes()).await?;
                reply!();
                sent += 1;
            }
            w.write_all(b"QUIT\r\n").await?;
            Ok::<u64, anyhow::Error>(sent)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"messages": total, "seconds": secs, "messages_per_sec": total as f64 / secs, "connections": args.connections})
    );
    Ok(())
}
