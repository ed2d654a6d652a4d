//! The byte stream to Redis: TCP (`redis://`), TLS over TCP (`rediss://`, rustls on the shard's
//! own runtime) or a Unix socket (`unix://`). One type, so the pipelined connection and the
//! subscriber split and drive any of them the same way; [`Connector`] opens it.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;
use bytes::BytesMut;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::pki_types::ServerName;

use super::url::{RedisTarget, Transport};

/// A connection to Redis.
pub enum RedisStream {
    /// `redis://`.
    Tcp(TcpStream),
    /// `rediss://`.
    Tls(Box<ClientTlsStream<TcpStream>>),
    /// `unix://`.
    Unix(UnixStream),
}

// SAFETY: each variant is `Split` (monoio's TCP and Unix streams, and monoio-rustls over a
// `Split` stream): its read and write halves may be used at the same time.
unsafe impl Split for RedisStream {}

impl AsyncReadRent for RedisStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            RedisStream::Tcp(s) => s.read(buf).await,
            RedisStream::Tls(s) => s.read(buf).await,
            RedisStream::Unix(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            RedisStream::Tcp(s) => s.readv(buf).await,
            RedisStream::Tls(s) => s.readv(buf).await,
            RedisStream::Unix(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for RedisStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            RedisStream::Tcp(s) => s.write(buf).await,
            RedisStream::Tls(s) => s.write(buf).await,
            RedisStream::Unix(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            RedisStream::Tcp(s) => s.writev(buf).await,
            RedisStream::Tls(s) => s.writev(buf).await,
            RedisStream::Unix(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RedisStream::Tcp(s) => s.flush().await,
            RedisStream::Tls(s) => s.flush().await,
            RedisStream::Unix(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            RedisStream::Tcp(s) => s.shutdown().await,
            RedisStream::Tls(s) => s.shutdown().await,
            RedisStream::Unix(s) => s.shutdown().await,
        }
    }
}

/// How connections to one target are made: the TLS client configuration of a `rediss://`
/// target is built once (reading the system's certificates), not per reconnect.
pub(crate) struct Connector {
    tls: Option<Result<(TlsConnector, ServerName<'static>), String>>,
}

impl Connector {
    /// The connector for `t`.
    pub(crate) fn new(t: &RedisTarget) -> Connector {
        let tls = (t.transport == Transport::Tls).then(|| {
            let config = crate::tls::client_config(t.ca_file.as_deref())?;
            let name = ServerName::try_from(t.host.clone())
                .map_err(|_| format!("{:?} is not a name a certificate can show", t.host))?;
            Ok((TlsConnector::from(config), name))
        });
        Connector { tls }
    }

    /// The transport's connection to `t`: TCP (TLS over it for `rediss://`) or a Unix socket.
    pub(crate) async fn open(&self, t: &RedisTarget) -> Result<RedisStream, String> {
        if let Transport::Unix(path) = &t.transport {
            let s = UnixStream::connect(path).await.map_err(|e| e.to_string())?;
            return Ok(RedisStream::Unix(s));
        }
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(RedisStream::Tcp(tcp)),
            Some(Err(e)) => Err(format!("TLS: {e}")),
            Some(Ok((tls, name))) => {
                let s = tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(RedisStream::Tls(Box::new(s)))
            }
        }
    }
}

/// Reads what `r` has into the spare room of `buf` (grown 16 KiB at a time when less than 4 KiB
/// is left): `Ok` when bytes came, else why the connection ended.
pub(super) async fn read_more<R: AsyncReadRent>(r: &mut R, buf: &mut BytesMut) -> Result<(), String> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, b) = r.read(std::mem::take(buf).slice_mut(len..cap)).await;
    *buf = b.into_inner();
    match res {
        Ok(0) => Err("closed by redis".to_owned()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
