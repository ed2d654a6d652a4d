//! Proxy mode to an `https://` upstream: the broker verifies the upstream's certificate against
//! `ca_file` (a certificate the test generates with rcgen) and talks HTTP/1.1 over rustls; an
//! upstream whose certificate it does not trust gets nothing, and the job fails naming TLS.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_final, Broker, Client};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS upstream on 127.0.0.1 that answers each request with its body as JSON.
fn tls_upstream(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, count) = (config.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if tls.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if tls.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((n, v)) = h.split_once(':') {
                            if n.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if tls.read_exact(&mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
                    );
                    let out = tls.get_mut();
                    if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
                        return;
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    (addr, served)
}

fn cert_for_localhost_ip() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let der = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    (ck.cert.pem(), der, key)
}

fn broker_with(url: &str, ca_pem: &str, tag: &str) -> (Broker, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("openhqm-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let config = dir.join("openhqm.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nmax_retries = 0\n[proxy]\nenabled = true\n[proxy.endpoints.secure]\nurl = \"{url}\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let broker = Broker::start_with(&["--config", config.to_str().unwrap()]);
    (broker, dir)
}

fn run_job(broker: &Broker) -> serde_json::Value {
    let mut c = Client::connect(broker.addr);
    let r = c.post_json(
        "/api/v1/submit",
        r#"{"payload":{"over":"tls"},"metadata":{"endpoint":"secure"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    wait_final(&mut c, &id, Instant::now() + Duration::from_secs(15)).json()
}

#[test]
fn a_trusted_https_upstream_is_reached_over_tls() {
    let (pem, der, key) = cert_for_localhost_ip();
    let (addr, served) = tls_upstream(der, key);
    let (broker, dir) = broker_with(&format!("https://{addr}/secure"), &pem, "ok");
    let v = run_job(&broker);
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["result"], serde_json::json!({"over": "tls"}));
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_untrusted_certificate_gets_nothing() {
    let (_, der, key) = cert_for_localhost_ip();
    let (addr, served) = tls_upstream(der, key);
    // The broker trusts another certificate only.
    let (other_pem, _, _) = cert_for_localhost_ip();
    let (broker, dir) = broker_with(&format!("https://{addr}/secure"), &other_pem, "untrusted");
    let v = run_job(&broker);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert!(v["error"].as_str().unwrap().contains("TLS"), "{v}");
    assert_eq!(served.load(Ordering::SeqCst), 0, "no request reached it");
    let _ = std::fs::remove_dir_all(dir);
}
