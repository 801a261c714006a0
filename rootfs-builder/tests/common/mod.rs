//! Shared helpers for create-vm-image's tests.
#![allow(dead_code)]

#[path = "../../../tests/common/prereq.rs"]
mod prereq;
// Like the rest of this module: not every test file uses it.
#[allow(unused_imports)]
pub use prereq::require;
