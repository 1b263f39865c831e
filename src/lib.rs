//! ketenpoort: the exchange gateway of the LVV pilots.
//!
//! Chain partners (municipalities, DT&V, IND, AVIM, NGOs) send case data about
//! foreign nationals through this gateway. It knows who is calling from the client
//! certificate, lets through only what the pilot's covenant allows for the stated
//! purpose, and writes every disclosure and refusal into a log anyone can verify.
//!
//! The modules in layers, each using only those above it (`tests/layers.rs`
//! keeps the graph free of cycles):
//! - configuration: [`config`] (`ketenpoort.toml`, file:line:column errors),
//!   [`problem`] (RFC 9457 problem types), [`swap`] (state replaced whole on
//!   reload), [`watch`] (reload on file change or SIGHUP), [`datadir`] (the
//!   data directory is the gateway's alone), [`text`] (shared strings a
//!   record takes from the policy without copying);
//! - the covenant: [`policy`] (partners and their declared fields, pilots,
//!   rules, the one place that decides, minimisation), [`keys`];
//! - who is calling: [`identity`] (certificate → partner), [`tls`] (rustls,
//!   ring provider only), [`crl`] (CRLs fetched and kept fresh), [`backend`] (the connector that calls back-ends),
//!   [`conn`] (limits on connections, revocation of open ones);
//! - what is kept: [`audit`] (the append-only, verifiable log, in files or
//!   in a PostgreSQL database several gateways share), [`storage`]
//!   (mailboxes, the LVV registry), [`figures`] (the registry's counts per
//!   pilot and month, small numbers suppressed), [`metrics`], [`witnessing`] (the log's
//!   checkpoints sent to partners' witnesses; only cosigned ones are
//!   published);
//! - what the partners signed: [`covenant`] (covenant versions, JWS
//!   signatures, which version of each pilot runs);
//! - the running gateway: [`gateway`] (all of the above, swapped on reload);
//! - what partners and officers call: [`exchange`] (the disclosure pipeline,
//!   stage by stage, in the order data flows), [`console`] (officers' and
//!   administrators' page and API), [`admin`] (the local socket for tools),
//!   [`backup`] (a copy of the data directory taken by the running gateway,
//!   and its restore);
//! - the listeners: [`server`] (accept, TLS, HTTP, connection lifetimes);
//! - the command: [`cli`] (its subcommands; the binary only parses and
//!   prints), with [`pki`] (development certificates), [`dpia`] (the DPIA
//!   annex from the policy), [`register`] (the register of processing
//!   activities, machine-readable), [`demo`] (simulated back-ends and a scripted
//!   case consultation), [`client`] (a partner-side client), [`logging`];
//! - beside the gateway: [`witness`] (a C2SP tlog witness a partner runs to
//!   cosign the log's checkpoints; it uses the audit log's checkpoint and
//!   Merkle code, nothing of the running gateway); [`evidence`] (one
//!   disclosure as a C2SP tlog-proof file anyone can check offline) and
//!   [`monitor`] (a partner's check that the log only grows).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod backend;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod console;
pub mod covenant;
pub mod crl;
pub mod datadir;
pub mod demo;
pub mod dpia;
pub mod evidence;
pub mod exchange;
pub mod figures;
pub mod gateway;
pub mod identity;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod pki;
pub mod policy;
pub mod problem;
pub mod register;
pub mod server;
pub mod storage;
pub mod swap;
pub mod text;
pub mod tls;
pub mod watch;
pub mod witness;
pub mod witnessing;
