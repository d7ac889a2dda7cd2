//! # ferry-client
//!
//! The client side of Ferry over mutual TLS: a library (used by the `ferry`
//! command line and the web page) and the shared [`link`] that drives a
//! `ferry_core::Connection` over an async stream (the server uses it too).
#![forbid(unsafe_code)]

pub mod link;
