//! Faults for tests and `kala-bench chaos`, modelled on toxiproxy and
//! Jepsen's nemeses: a TCP proxy between an instance and its database
//! that can stall (black-hole both ways without closing, which is what a
//! database sees of a dead network), cut (reset every connection and
//! refuse new ones) or delay traffic; SIGSTOP/SIGCONT pauses and clock
//! skew of a process are in [`crate::ServerProcess`] and [`faketime_env`].
//!
//! std only: one thread per direction of each proxied connection (a test
//! has tens of them), each reading with a short timeout so it sees the
//! fault change.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass as they come.
    Pass,
    /// Nothing passes either way and nothing is closed: connections stay
    /// open, bytes wait in the sockets' buffers, new connections are
    /// accepted and held without reaching the database.
    Stall,
    /// Every open connection is reset, new ones are closed at once.
    Cut,
    /// Each piece of data waits this long before it is passed on.
    Delay(Duration),
}

struct Shared {
    fault: Mutex<Fault>,
    changed: Condvar,
    /// Grows at every cut: a connection opened before it ends.
    generation: AtomicU64,
    stop: AtomicBool,
    upstream: SocketAddr,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while the proxy stalls; false when the connection must end
    /// (a cut since `born`, or the proxy stops).
    fn pass(&self, born: u64) -> bool {
        let mut f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(Ordering::Relaxed) || self.generation.load(Ordering::Relaxed) != born
            {
                return false;
            }
            match *f {
                Fault::Stall => {
                    f = self
                        .changed
                        .wait_timeout(f, Duration::from_millis(100))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                Fault::Cut => return false,
                _ => return true,
            }
        }
    }
}

/// A TCP proxy on a free loopback port in front of `upstream`.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`
    /// (`host:port`), passing everything until told otherwise.
    pub fn start(upstream: &str) -> io::Result<FaultProxy> {
        let upstream = upstream
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{upstream}: no address")))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            upstream,
        });
        let s = shared.clone();
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(FaultProxy { addr, shared })
    }

    /// The proxy's own address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes what the proxy does, at once, for open connections too.
    pub fn set(&self, fault: Fault) {
        let mut f = self.shared.fault.lock().unwrap_or_else(|e| e.into_inner());
        if fault == Fault::Cut {
            self.shared.generation.fetch_add(1, Ordering::Relaxed);
        }
        *f = fault;
        self.shared.changed.notify_all();
    }

    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    pub fn stall(&self) {
        self.set(Fault::Stall);
    }

    pub fn cut(&self) {
        self.set(Fault::Cut);
    }

    pub fn heal(&self) {
        self.set(Fault::Pass);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        // Wakes the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = conn else { continue };
        let s = shared.clone();
        let _ = thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || connection(client, s));
    }
}

fn connection(client: TcpStream, shared: Arc<Shared>) {
    let born = shared.generation.load(Ordering::Relaxed);
    if shared.fault() == Fault::Cut {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    // Held (not connected upstream) while the proxy stalls.
    if !shared.pass(born) {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(3)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let s = shared.clone();
    let up = thread::Builder::new()
        .name("fault-proxy-up".into())
        .spawn(move || pump(client, server, s, born));
    pump(s2, c2, shared, born);
    if let Ok(h) = up {
        let _ = h.join();
    }
}

/// Copies `from` to `to` while the fault allows, until either side ends.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, born: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Not read at all while stalled: the sender's buffers fill up,
        // as on a dead network.
        if !shared.pass(born) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if let Fault::Delay(d) = shared.fault() {
            thread::sleep(d);
        }
        // Read just before a stall began: held until it ends.
        if !shared.pass(born) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// The environment that skews a process's wall clock by `offset_s`
/// seconds (libfaketime, Debian's `faketime` package), leaving its
/// monotonic clock alone (timers and timeouts stay true). An error names
/// the package when the library is missing.
pub fn faketime_env(offset_s: f64) -> io::Result<Vec<(String, String)>> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "libfaketime is not installed (apt-get install faketime)",
        )
    })?;
    Ok(vec![
        ("LD_PRELOAD".into(), lib.into()),
        ("FAKETIME".into(), format!("{offset_s:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(c: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_stalls_without_closing_cuts_and_heals() {
        let proxy = FaultProxy::start(&echo_server().to_string()).unwrap();
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(round_trip(&mut c, b"hello").unwrap(), b"hello");

        proxy.stall();
        let e = round_trip(&mut c, b"stalled").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "a stall is silence, not a close: {e}"
        );
        // What was sent during the stall arrives after it.
        proxy.heal();
        let mut got = vec![0u8; 7];
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, b"stalled");

        proxy.set(Fault::Delay(Duration::from_millis(150)));
        let t = Instant::now();
        round_trip(&mut c, b"slow").unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "delayed both ways"
        );

        proxy.cut();
        let mut b = [0u8; 8];
        let _ = c.write_all(b"x");
        let r = c.read(&mut b);
        assert!(matches!(r, Ok(0) | Err(_)), "a cut closes: {r:?}");
        let mut d = TcpStream::connect(proxy.addr()).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = d.read(&mut b);
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "new connections are closed during a cut: {r:?}"
        );

        proxy.heal();
        let mut e = TcpStream::connect(proxy.addr()).unwrap();
        e.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(round_trip(&mut e, b"again").unwrap(), b"again");
    }

    #[test]
    fn a_connection_opened_during_a_stall_waits_for_the_heal() {
        let proxy = FaultProxy::start(&echo_server().to_string()).unwrap();
        proxy.stall();
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut c, b"held").is_err());
        proxy.heal();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = vec![0u8; 4];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, b"held");
    }
}
