//! The do-nothing responder: the ceiling for "broker ÷ ceiling".

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use openhqm::config::IoDriver;
use openhqm::shard::runtime;

/// Command-line options.
pub struct Options {
    host: String,
    port: u16,
    cpu: Option<usize>,
}

impl Options {
    /// Parses `--host`, `--port`, `--cpu`.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            host: "127.0.0.1".into(),
            port: 8080,
            cpu: None,
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--host" => o.host = value,
                "--port" => o.port = value.parse().map_err(|_| format!("bad --port {value}"))?,
                "--cpu" => o.cpu = Some(value.parse().map_err(|_| format!("bad --cpu {value}"))?),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(o)
    }
}

/// The response: a 202 with a JSON body of the broker's submit-answer size (121 bytes).
const RESPONSE: &[u8] = b"HTTP/1.1 202 Accepted\r\ndate: Thu, 26 Nov 2026 10:30:00 GMT\r\n\
content-type: application/json\r\ncache-control: no-store\r\ncontent-length: 121\r\n\
location: /api/v1/status/550e8400-e29b-41d4-a716-446655440000\r\n\r\n\
{\"correlation_id\":\"550e8400-e29b-41d4-a716-446655440000\",\"status\":\"PENDING\",\"submitted_at\":\"2026-11-26T10:30:00.123456Z\"}";

/// Serves until killed.
pub fn run(opts: Options) -> io::Result<()> {
    if let Some(cpu) = opts.cpu {
        monoio::utils::bind_to_cpu_set([cpu]).map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port)
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad address"))?;
    // The broker's own runtime set-up (same driver and ring flags), so only the work differs.
    let (mut rt, driver) = runtime::build(IoDriver::Auto)?;
    rt.block_on(async move {
        let listener = TcpListener::bind_with_config(addr, &ListenerOpts::new())?;
        eprintln!(
            "null-server listening on {} ({driver})",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            monoio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut skip = 0usize;
    loop {
        // Answer every complete request in the buffer, then write once.
        loop {
            if skip > 0 {
                let n = skip.min(input.len());
                let _ = input.split_to(n);
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&input) {
                Ok(httparse::Status::Complete(len)) => {
                    let body = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                        .unwrap_or(0usize);
                    let _ = input.split_to(len);
                    skip = body;
                    output.extend_from_slice(RESPONSE);
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Ok(()),
            }
        }
        if !output.is_empty() {
            let (r, buf) = stream.write_all(output).await;
            r?;
            output = buf;
            output.clear();
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        // monoio reads from the buffer's start: give it only the free tail.
        let (len, cap) = (input.len(), input.capacity());
        let (r, buf) = stream.read(input.slice_mut(len..cap)).await;
        if r? == 0 {
            return Ok(());
        }
        input = buf.into_inner();
    }
}
