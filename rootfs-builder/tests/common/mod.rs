//! Shared helpers for create-vm-image's tests.
#![allow(dead_code)]

#[path = "../../../tests/common/prereq.rs"]
mod prereq;
pub use prereq::require;
