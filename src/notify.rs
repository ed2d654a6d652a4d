//! sd_notify: tells the service manager (systemd `Type=notify`, `deploy/systemd/`) that the
//! broker is ready or stopping, as one datagram to the Unix socket `NOTIFY_SOCKET` names. Without
//! that variable (not started by systemd, or not `Type=notify`) nothing is sent. The protocol is
//! one `sendto` of `KEY=VALUE` lines, so std does it: no crate, no libsystemd.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// Every shard listens: the service is up.
pub const READY: &str = "READY=1";
/// Draining has begun: the service is going down.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to the socket `NOTIFY_SOCKET`
/// names. `Ok(false)` when the variable is unset or empty: there is no one to tell.
pub fn notify(state: &str) -> io::Result<bool> {
    notify_from(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// [`notify`] with [`READY`].
pub fn ready() -> io::Result<bool> {
    notify(READY)
}

/// [`notify`] with [`STOPPING`].
pub fn stopping() -> io::Result<bool> {
    notify(STOPPING)
}

/// [`notify`] with the variable's value passed in, so tests need not change the environment.
fn notify_from(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    match socket {
        Some(s) if !s.is_empty() => notify_to(s, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` as one datagram to `socket`: a path (`/run/systemd/notify`), or a name in the
/// abstract namespace when it starts with `@` (systemd's own notation, as sd_notify(3) reads it).
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = address(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    // A datagram goes whole or not at all; a short count would be a kernel surprise.
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes to NOTIFY_SOCKET", state.len()),
        ));
    }
    Ok(())
}

/// The socket address `NOTIFY_SOCKET` names. Only absolute paths and `@` names are accepted,
/// as by sd_notify(3); anything else (a relative path, systemd's `vsock:` form) is an error.
fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(Path::new(socket)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A fresh directory under the system temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "openhqm-notify-{tag}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Receives one datagram (bounded by a timeout, so a test cannot hang).
    fn receive(sock: &UnixDatagram) -> Vec<u8> {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram");
        buf[..n].to_vec()
    }

    #[test]
    fn sends_the_exact_bytes_to_a_path() {
        let dir = TempDir::new("path");
        let path = dir.0.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        for state in [READY, STOPPING, "READY=1\nSTATUS=listening on 0.0.0.0:8000"] {
            notify_to(path.as_os_str(), state).unwrap();
            assert_eq!(receive(&listener), state.as_bytes());
        }
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("openhqm-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), READY).unwrap();
        assert_eq!(receive(&listener), b"READY=1");
    }

    #[test]
    fn unset_or_empty_sends_nothing() {
        assert!(!notify_from(None, READY).unwrap());
        assert!(!notify_from(Some(OsStr::new("")), READY).unwrap());
    }

    #[test]
    fn set_sends_and_says_so() {
        let dir = TempDir::new("set");
        let path = dir.0.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notify_from(Some(path.as_os_str()), STOPPING).unwrap());
        assert_eq!(receive(&listener), b"STOPPING=1");
    }

    #[test]
    fn refuses_addresses_sd_notify_does_not_accept() {
        for bad in ["relative/notify.sock", "vsock:2:1234"] {
            let err = notify_to(OsStr::new(bad), READY).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn a_socket_no_one_listens_on_is_an_error() {
        let dir = TempDir::new("gone");
        let path = dir.0.join("nobody.sock");
        assert!(notify_to(path.as_os_str(), READY).is_err());
    }
}
