//! The gateway's own log never holds up an exchange. Its lines go to
//! stderr, and whatever reads stderr (journald, a pipe to a shipper) can
//! stop reading; the hostile reader here is a pipe nobody drains. A gateway
//! that wrote its lines from the threads that serve partners would stop at
//! the first line that no longer fits. The promise: every exchange is
//! answered, the lines that did not fit are dropped and counted on
//! `/metrics`, and the audit log is not touched by any of it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::fixture::*;
use common::node::{Node, wait_serving};
use hyper::Method;

/// Each exchange writes a line of about 200 bytes at level info: 3,000 are
/// about nine times what a pipe holds (64 KiB) and more than the gateway's
/// queue of lines as well.
const EXCHANGES: usize = 3000;
const CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_that_stops_reading_holds_up_no_exchange() {
    let (pki, _seen) = prepare().await;
    let mut node = Node::new(pki.config_file(), pki.data_dir().join("stderr.log"));
    node.spawn_with_unread_stderr();
    let client = pki.client(node.addr(), &pki.oin_cert(GEMEENTE_OIN));
    wait_serving(&client, &node).await;

    let mut load = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        load.push(tokio::spawn(async move {
            for n in 0..EXCHANGES / CLIENTS {
                let path = format!("/v1/pilots/proef/services/dtv/dossier/555{c:03}{n:04}");
                let r = tokio::time::timeout(
                    Duration::from_secs(20),
                    client.send(
                        Method::GET,
                        &path,
                        &[("ketenpoort-purpose", "casusoverleg")],
                        None,
                    ),
                )
                .await
                .unwrap_or_else(|_| {
                    panic!("exchange {n} of client {c} waited on the gateway's log output")
                })
                .unwrap();
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }
        }));
    }
    for t in load {
        t.await.unwrap();
    }

    // What did not fit was dropped, and the operator can see how much.
    let console = SocketAddr::from(([127, 0, 0, 1], node.console));
    let r = common::get(console, &pki.ca.cert_pem, None, "/metrics")
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&r.body).into_owned();
    let dropped: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ketenpoort_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped-lines counter in\n{m}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        dropped > 0.0,
        "{EXCHANGES} exchanges' lines all fitted: the test did not fill the pipe"
    );
    node.stop();
}
