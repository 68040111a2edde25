//! Engines set up the same way by several tests and benchmarks.

use compiler_caching::{CompilerCache, Engine, Function, Ty};

use crate::compilers::Const;
use crate::foreign::{Call, Ir};

/// The hit-path setup: `f` has methods for `(Real, Any)` and `(Int64, Any)`, and `args` is
/// `(Int64, Float64)`, so dispatch has to choose by specificity. Nothing is compiled yet.
pub struct HitSetup {
    pub engine: Engine,
    pub f: Function,
    pub args: [Ty; 2],
}

impl Default for HitSetup {
    fn default() -> Self {
        HitSetup::new()
    }
}

impl HitSetup {
    pub fn new() -> Self {
        let engine = Engine::new();
        let real = engine
            .lattice()
            .declare_abstract("Real", &Ty::any())
            .unwrap();
        let int = engine.lattice().declare_concrete("Int64", &real).unwrap();
        let float = engine.lattice().declare_concrete("Float64", &real).unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[real, Ty::any()], ()).unwrap();
        engine.add_method(f, &[int.clone(), Ty::any()], ()).unwrap();
        HitSetup {
            engine,
            f,
            args: [int, float],
        }
    }

    /// A cache of [`Const`] on this engine.
    pub fn cache(&self, tag: &str) -> CompilerCache<Const> {
        CompilerCache::new(&self.engine, tag, Const).unwrap()
    }
}

/// Numeric hierarchy used across tests: Any > Number > Real > {Integer > {Int64, Bool}, Float64}.
pub struct Types {
    pub number: Ty,
    pub real: Ty,
    pub integer: Ty,
    pub int: Ty,
    pub boolean: Ty,
    pub float: Ty,
    pub string: Ty,
}

pub fn types(engine: &Engine) -> Types {
    let l = engine.lattice();
    let number = l.declare_abstract("Number", &Ty::any()).unwrap();
    let real = l.declare_abstract("Real", &number).unwrap();
    let integer = l.declare_abstract("Integer", &real).unwrap();
    Types {
        int: l.declare_concrete("Int64", &integer).unwrap(),
        boolean: l.declare_concrete("Bool", &integer).unwrap(),
        float: l.declare_concrete("Float64", &real).unwrap(),
        string: l.declare_concrete("String", &Ty::any()).unwrap(),
        number,
        real,
        integer,
    }
}

/// An [`Ir`] with constant `value` calling each of `callees` with `(int)`.
pub fn calls(value: i64, callees: &[&str], int: &Ty) -> Ir {
    Ir {
        value,
        calls: callees
            .iter()
            .map(|c| Call {
                function: c.to_string(),
                args: vec![int.clone()],
            })
            .collect(),
        opaque_deps: Vec::new(),
    }
}
