//! Test harness shared by the end-to-end tests and the demo.

pub mod kube;
