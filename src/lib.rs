//! ketenpoort: the exchange gateway of the LVV pilots.
//!
//! Chain partners (municipalities, DT&V, IND, AVIM, NGOs) send case data about
//! foreign nationals through this gateway. It knows who is calling from the client
//! certificate, lets through only what the pilot's covenant allows for the stated
//! purpose, and writes every disclosure and refusal into a log anyone can verify.
//!
//! Where to look, in the order a request flows:
//! - [`config`]: the gateway's and partners' configuration files;
//! - [`tls`]: rustls configurations (ring provider only) and their reload;
//! - [`server`]: the listeners, the TLS handshake and HTTP serving;
//! - [`identity`]: client certificate → partner;
//! - [`exchange`]: the disclosure pipeline: route, purpose, policy, minimise,
//!   forward (or mailbox), minimise the answer, record, deliver;
//! - [`policy`]: the covenant as code: which fields go from whom to whom, for
//!   which purpose; the one place that decides, and minimisation;
//! - [`audit`]: the append-only, verifiable log of every disclosure and refusal;
//! - [`console`]: the privacy officers' page and API (and its users);
//! - [`problem`]: RFC 9457 problem details, the shape of every refusal;
//! - [`pki`]: the development PKI (and the certificates tests mint);
//! - [`keys`]: secrets kept in the data directory;
//! - [`watch`]: reload on file change or SIGHUP;
//! - [`admin`]: the local socket command-line tools use beside the gateway;
//! - [`client`]: a partner-side HTTPS client;
//! - [`demo`]: simulated back-ends and the scripted case consultation;
//! - [`dpia`]: the per-pilot DPIA annex, generated from the running policy;
//! - [`cli`]: the `ketenpoort` command's subcommands (the binary only parses
//!   and prints).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod backend;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod console;
pub mod datadir;
pub mod demo;
pub mod dpia;
pub mod exchange;
pub mod gateway;
pub mod identity;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod problem;
pub mod server;
pub mod storage;
pub mod swap;
pub mod tls;
pub mod watch;
