//! Starting and stopping the shards: bind one `SO_REUSEPORT` listener per shard on the same
//! address (the first bind picks the port when it is 0), start one thread per shard (pinned when
//! `server.cpus` is set), wire the mesh, and on request send every shard `Shutdown` and join them.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::mpsc;
use std::thread::JoinHandle;

use socket2::{Domain, Socket, Type};

use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::mesh::{self, Mesh, ShardMsg};
use crate::shard::{runtime, Wiring};
use crate::worker::Processors;

/// A started broker.
pub struct Running {
    addr: SocketAddr,
    driver: &'static str,
    inboxes: Vec<flume::Sender<ShardMsg>>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts every shard, each running `processors`; returns once all are serving.
pub(crate) fn start(
    mut config: Config,
    processors: Processors,
    keys: Option<Arc<ApiKeys>>,
) -> io::Result<Running> {
    config.server.max_connections = crate::descriptors::apply(&config);
    let driver = config.server.io_driver;
    let nr_shards = config.nr_shards();
    let wanted = (config.server.host.as_str(), config.server.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "server.host resolves to nothing",
            )
        })?;
    ensure_port_free(wanted)?;
    let first = bind(wanted)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..nr_shards {
        listeners.push(bind(addr)?);
    }

    let instance = instance_name(addr);
    let (inboxes, receivers) = mesh::inboxes(nr_shards);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, String>>();
    let mut threads = Vec::with_capacity(nr_shards);
    for (shard, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
        let config = config.clone();
        let senders = inboxes.clone();
        let ready = ready_tx.clone();
        let cpu = config.server.cpus.as_ref().map(|c| c.for_shard(shard));
        let instance = instance.clone();
        let processors = processors.clone();
        let keys = keys.clone();
        let thread = std::thread::Builder::new()
            .name(format!("openhqm-shard-{shard}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                        let _ = ready.send(Err(format!(
                            "shard {shard}: cannot pin to CPU {cpu}: {e:?}"
                        )));
                        return;
                    }
                }
                let (mut rt, name) = match runtime::build(driver) {
                    Ok(built) => built,
                    Err(e) => {
                        let _ = ready.send(Err(format!(
                            "shard {shard}: cannot start the event loop: {e}"
                        )));
                        return;
                    }
                };
                rt.block_on(async move {
                    // Inside the runtime: the Redis backend spawns its connection tasks here.
                    let wiring = Wiring {
                        id: shard,
                        config,
                        mesh: Mesh::new(shard, senders),
                        processors,
                        instance,
                        keys,
                        draining: crate::sync::shutdown::Shutdown::default(),
                    };
                    let started = move || {
                        let _ = ready.send(Ok(name));
                    };
                    crate::shard::run(wiring, listener, inbox, started).await
                });
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut running = Running {
        addr,
        driver: "",
        inboxes,
        threads,
    };
    for _ in 0..nr_shards {
        match ready_rx.recv() {
            Ok(Ok(name)) => running.driver = name,
            Ok(Err(msg)) => {
                running.shutdown();
                let _ = running.wait();
                return Err(io::Error::other(msg));
            }
            Err(_) => {
                running.shutdown();
                let _ = running.wait();
                return Err(io::Error::other("a shard thread died during start-up"));
            }
        }
    }
    Ok(running)
}

/// This process's name among brokers sharing one Redis: host name and port, stable across
/// restarts, so a restarted broker finds its own pending entries.
fn instance_name(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!(
        "{}:{}",
        if host.is_empty() { "openhqm" } else { host },
        addr.port()
    )
}

/// `SO_REUSEPORT` would let this process silently share the port with another one already
/// listening there (each getting part of the connections, and 404s for the other's ids). A plain
/// bind first turns that into a clear "address in use" error. Port 0 is always free.
fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (is another broker running?)"),
        )
    })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Running {
    /// The address every shard listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `io_uring` or `epoll`.
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Asks every shard to stop accepting and drain.
    pub fn shutdown(&self) {
        for inbox in &self.inboxes {
            // A stuck shard's full inbox must not hold up the others' shutdown.
            let _ = inbox.send_timeout(ShardMsg::Shutdown, std::time::Duration::from_secs(1));
        }
    }

    /// Whether some shard thread has ended (only expected after [`Running::shutdown`]).
    pub fn any_stopped(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Whether every shard thread has ended.
    pub fn all_stopped(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for every shard thread; an error if one panicked.
    pub fn wait(self) -> Result<(), String> {
        let mut result = Ok(());
        for (i, t) in self.threads.into_iter().enumerate() {
            if t.join().is_err() {
                result = Err(format!("shard {i} panicked"));
            }
        }
        result
    }
}
