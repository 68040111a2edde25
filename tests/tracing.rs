//! The `tracing` feature: a span per compile phase with the instance, key and world, an event
//! per mutation, and one per invalidated code instance carrying its why-chain. Run with
//! `cargo test --features tracing --test tracing`; without the feature this file is empty.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};

use compiler_caching::{CompilerCache, Engine};
use test_support::foreign::{Foreign, Ir};
use test_support::setups::{calls, types};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every span opened and event emitted, as `name{field=value ...}` lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        let mut lines = self.0.lock().unwrap();
        lines.push(format!("span {}{{{}}}", span.metadata().name(), fields.0));
        Id::from_u64(lines.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(format!(
            "event {}{{{}}}",
            event.metadata().target(),
            fields.0
        ));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn phases_are_spans_and_invalidations_are_events_with_their_why_chain() {
    let capture = Capture::default();
    let lines = Arc::clone(&capture.0);
    tracing::subscriber::with_default(capture, || {
        let engine = Engine::new();
        let t = types(&engine);
        let f = engine.declare_function("f").unwrap();
        let g = engine.declare_function("g").unwrap();
        engine
            .add_method(f, &[t.int.clone()], calls(10, &["g"], &t.int))
            .unwrap();
        engine
            .add_method(g, &[t.int.clone()], Ir::constant(1))
            .unwrap();
        let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[t.int.clone()]).unwrap();
        assert_eq!(*cache.compile(&guard, mi, &7).unwrap(), 11);
        drop(guard);
        engine
            .add_method(g, &[t.int.clone()], Ir::constant(2))
            .unwrap();
    });
    let lines = lines.lock().unwrap();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    for phase in ["infer", "codegen", "link"] {
        assert!(
            has(&format!(
                "span compile_phase{{ phase={phase} instance=f(Int64) key=7 world=3"
            )),
            "no {phase} span for f: {lines:#?}"
        );
    }
    assert!(has("instance=g(Int64)"), "{lines:#?}");
    assert!(
        has("event compiler_caching::mutation{ message=method g(Int64) replaced in table global world=4 invalidated=2"),
        "{lines:#?}"
    );
    assert!(
        has("invalidated: world 4: method g(Int64) replaced in table global; dispatch g(Int64) via [global] changed -> f(Int64) in C[7]"),
        "{lines:#?}"
    );
}
