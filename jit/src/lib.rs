//! A small multiple-dispatch language compiled to native code with Cranelift, caching its code in
//! `compiler-caching`: the crate's showcase. See `main.rs` for the command line and
//! `scripts/` for examples.

pub mod compiler;
pub mod session;
pub mod syntax;

pub use compiler::Value;
pub use session::Session;
pub use syntax::ScriptError;
