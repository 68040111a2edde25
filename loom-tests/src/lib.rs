//! Loom models live in `tests/`; see the README.
