//! The byte stream to Redis: TCP (`redis://`), TLS over TCP (`rediss://`, rustls on the shard's
//! own runtime) or a Unix socket (`unix://`). One type, so the pipelined connection and the
//! subscriber split and drive any of them the same way.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

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
