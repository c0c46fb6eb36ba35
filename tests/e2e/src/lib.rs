//! Harness for end-to-end tests: starts the real `drover` binary on a fresh
//! port and data dir and runs a fixed kubectl version against it.
