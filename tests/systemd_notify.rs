//! sd_notify over a real Unix datagram socket: with `NOTIFY_SOCKET` set (systemd `Type=notify`,
//! deploy/systemd/openhqm.service) the broker sends `READY=1` once every shard listens and
//! `STOPPING=1` when SIGTERM starts the drain.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::Broker;

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_when_listening_and_stopping_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("openhqm-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let mut b = Broker::start_with_env(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    assert_eq!(next(&sock), "READY=1");
    // Ready means listening.
    assert_eq!(b.client().get("/livez").status, 200);
    b.sigterm();
    assert_eq!(next(&sock), "STOPPING=1");
    let status = b.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
