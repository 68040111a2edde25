//! The language's compiler, plugged into the engine as a [`Compiler`]:
//! - **infer** type-checks a method instance's body for its concrete argument types, dispatching
//!   every call through the context (which records the edge) and compiling the callee;
//! - **codegen** lowers the typed body to Cranelift IR and compiles it to machine code for the
//!   host, keeping the callees' slot addresses as relocations: bytes that name no address of
//!   this process, so they are stored by the persistent tier and linked in a later session;
//! - **link** resolves the callees, copies the code into executable memory with `cranelift-jit`,
//!   fills in the relocations, and stores the entry point in the call table.
//!
//! Calls between functions go through the call table: one slot per method instance, read at the
//! time of the call. So recursion needs no special case (a callee still being compiled,
//! `Callee::InProgress`, has its slot filled before anyone can run the caller), and a redefinition
//! produces new method instances with new slots while the old code keeps serving older worlds.
//! The inferred body and the code name each callee by its position in the instance's list of
//! callees (a call `f(Int64)`), and the code reaches the callee's slot through a symbol `calleeN`
//! that link binds to this session's slot: slots are session-local, the artifact is not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use compiler_caching::{
    Callee, CompileError, Compiler, Error, Fingerprint, InferCx, Method, MethodInstance,
    PersistentCompiler, PhaseCx, TableStack, Ty,
};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Imm64;
use cranelift_codegen::ir::{
    types, AbiParam, ExternalName, Function, GlobalValue, GlobalValueData, InstBuilder,
    MemFlagsData, Signature, UserExternalName, UserFuncName,
};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::FinalizedRelocTarget;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module, ModuleReloc, ModuleRelocTarget};
use serde::{Deserialize, Serialize};

use crate::syntax::{BinOp, Expr, FnDef, Pos, ScriptError};

/// The machine-level types values have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scalar {
    /// `Int64`
    Int,
    /// `Float64`
    Float,
    /// `Bool`
    Bool,
}

impl Scalar {
    /// The concrete type's name.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::Int => "Int64",
            Scalar::Float => "Float64",
            Scalar::Bool => "Bool",
        }
    }

    /// The scalar a concrete type name denotes.
    pub fn from_name(name: &str) -> Option<Scalar> {
        match name {
            "Int64" => Some(Scalar::Int),
            "Float64" => Some(Scalar::Float),
            "Bool" => Some(Scalar::Bool),
            _ => None,
        }
    }
}

/// A runtime value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// An `Int64`.
    Int(i64),
    /// A `Float64`.
    Float(f64),
    /// A `Bool`.
    Bool(bool),
}

impl Value {
    /// Its type.
    pub fn scalar(self) -> Scalar {
        match self {
            Value::Int(_) => Scalar::Int,
            Value::Float(_) => Scalar::Float,
            Value::Bool(_) => Scalar::Bool,
        }
    }

    /// Its bits in the calling convention (every argument and result is an `i64`).
    pub fn to_bits(self) -> i64 {
        match self {
            Value::Int(i) => i,
            Value::Float(x) => x.to_bits() as i64,
            Value::Bool(b) => i64::from(b),
        }
    }

    /// A value of type `scalar` from its bits.
    pub fn from_bits(scalar: Scalar, bits: i64) -> Value {
        match scalar {
            Scalar::Int => Value::Int(bits),
            Scalar::Float => Value::Float(f64::from_bits(bits as u64)),
            Scalar::Bool => Value::Bool(bits & 1 != 0),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Slots of the call table: enough for a demo session; running out is a compile error.
const TABLE_SLOTS: usize = 1 << 16;

/// What every phase shares: the target, the call table, and logs of what was inferred and what
/// was loaded from the store instead.
pub struct Shared {
    isa: OwnedTargetIsa,
    table: Box<[AtomicUsize]>,
    slots: Mutex<HashMap<u64, usize>>,
    log: Mutex<Vec<String>>,
    loaded: Mutex<Vec<String>>,
}

impl Shared {
    /// The host target and an empty call table.
    pub fn new() -> Result<Shared, String> {
        let mut flags = settings::builder();
        flags
            .set("use_colocated_libcalls", "false")
            .map_err(|e| e.to_string())?;
        flags.set("is_pic", "false").map_err(|e| e.to_string())?;
        flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
        let isa = cranelift_native::builder()
            .map_err(|e| format!("host machine not supported: {e}"))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        Ok(Shared {
            isa,
            table: (0..TABLE_SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            slots: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            loaded: Mutex::new(Vec::new()),
        })
    }

    /// The call-table slot of a method instance.
    fn slot(&self, instance: u64, pos: Pos) -> Result<usize, ScriptError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let next = slots.len();
        let slot = *slots.entry(instance).or_insert(next);
        if slot >= TABLE_SLOTS {
            return Err(ScriptError::new(pos, "call table full"));
        }
        Ok(slot)
    }

    fn slot_address(&self, slot: usize) -> *const u8 {
        &self.table[slot] as *const AtomicUsize as *const u8
    }

    /// What was inferred since the last call, in order.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What was loaded from the store (not inferred) since the last call, in order.
    pub fn take_loaded(&self) -> Vec<String> {
        std::mem::take(&mut *self.loaded.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What compiled code depends on besides the IR: the target and its settings.
    fn target(&self) -> String {
        format!("{} {}", self.isa.triple(), self.isa.flags())
    }
}

/// A type-checked expression.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Typed {
    /// A constant.
    Const(Value),
    /// The i-th parameter.
    Param(usize, Scalar),
    /// Negation.
    Neg(Box<Typed>, Scalar),
    /// An operation on operands of type `.3`.
    Bin(BinOp, Box<Typed>, Box<Typed>, Scalar),
    /// `Int64` to `Float64`.
    ToFloat(Box<Typed>),
    /// A conditional of type `.3`.
    If(Box<Typed>, Box<Typed>, Box<Typed>, Scalar),
    /// A call through the call table.
    Call {
        /// The callee, as an index into [`Inferred::callees`].
        callee: usize,
        /// Arguments.
        args: Vec<Typed>,
        /// The callee's return type.
        ret: Scalar,
    },
}

/// A call the body makes: a function and the argument types it is dispatched on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalleeRef {
    /// The function's name.
    pub function: String,
    /// The argument types.
    pub args: Vec<Scalar>,
}

/// The infer phase's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inferred {
    /// `name(T1, T2)` of the instance.
    pub label: String,
    /// Parameter types.
    pub params: Vec<Scalar>,
    /// Return type.
    pub ret: Scalar,
    /// The typed body.
    pub body: Typed,
    /// The distinct calls the body makes, in order of first appearance.
    pub callees: Vec<CalleeRef>,
}

/// What `codegen` produces: the instance's machine code for the host, and where it refers to its
/// callees' call-table slots (absolute addresses, bound by link). Serializable, and valid in any
/// session on the same target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Code {
    /// The code.
    pub bytes: Vec<u8>,
    /// Its required alignment.
    pub alignment: u64,
    /// Where it needs the address of a callee's slot.
    pub slots: Vec<SlotReloc>,
}

/// An 8-byte absolute address in [`Code`] to fill with a callee's slot address (plus `addend`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SlotReloc {
    /// Where, from the start of the code.
    pub offset: u32,
    /// Which callee, as an index into [`Inferred::callees`].
    pub callee: u32,
    /// Added to the address.
    pub addend: i64,
}

/// What `link` produces: a callable entry point.
#[derive(Clone, Copy, Debug)]
pub struct Native {
    /// The machine code's address.
    pub entry: usize,
    /// The number of `i64` arguments.
    pub arity: usize,
    /// The result's type.
    pub ret: Scalar,
}

/// The compiler, for one table stack.
pub struct Jit {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The stack its cache dispatches through, which link resolves callees through too.
    pub stack: TableStack,
    version: String,
}

impl Jit {
    /// A compiler dispatching through `stack`.
    pub fn new(shared: Arc<Shared>, stack: TableStack) -> Jit {
        // Stored code is valid for this compiler's IR and this target only.
        let version = format!("jit 3 (cranelift {}; {})", CRANELIFT, shared.target());
        Jit {
            shared,
            stack,
            version,
        }
    }

    /// The calling convention of every compiled function: `arity` `i64` parameters, one `i64`
    /// result.
    fn signature(&self, arity: usize) -> Signature {
        let mut sig = Signature::new(self.shared.isa.default_call_conv());
        for _ in 0..arity {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.returns.push(AbiParam::new(types::I64));
        sig
    }

    /// The method instance `callee` names, through this compiler's stack in `world`.
    fn resolve(
        &self,
        cx: &PhaseCx<'_, Self>,
        callee: &CalleeRef,
    ) -> Result<MethodInstance, String> {
        let engine = cx.engine();
        let f = engine
            .function(&callee.function)
            .map_err(|e| e.to_string())?;
        let mut types = Vec::new();
        for s in &callee.args {
            types.push(
                engine
                    .lattice()
                    .lookup(s.name())
                    .map_err(|e| e.to_string())?,
            );
        }
        engine
            .method_instance(f, &types, cx.world(), self.stack)
            .map_err(|e| e.to_string())
    }
}

/// The Cranelift release the IR text is written for.
const CRANELIFT: &str = "0.135";

fn scalar_of(t: &Ty) -> Option<Scalar> {
    Scalar::from_name(&t.to_string())
}

struct Checker<'c, 'a> {
    cx: &'c mut InferCx<'a, Jit>,
    params: Vec<(String, Scalar)>,
    callees: Vec<CalleeRef>,
}

impl Checker<'_, '_> {
    fn check(&mut self, e: &Expr) -> Result<(Typed, Scalar), ScriptError> {
        Ok(match e {
            Expr::Int(i, _) => (Typed::Const(Value::Int(*i)), Scalar::Int),
            Expr::Float(x, _) => (Typed::Const(Value::Float(*x)), Scalar::Float),
            Expr::Bool(b, _) => (Typed::Const(Value::Bool(*b)), Scalar::Bool),
            Expr::Var(name, pos) => {
                let i = self
                    .params
                    .iter()
                    .position(|(p, _)| p == name)
                    .ok_or_else(|| ScriptError::new(*pos, format!("unknown variable `{name}`")))?;
                (Typed::Param(i, self.params[i].1), self.params[i].1)
            }
            Expr::Neg(inner, pos) => {
                let (t, s) = self.check(inner)?;
                if s == Scalar::Bool {
                    return Err(ScriptError::new(*pos, "cannot negate a Bool"));
                }
                (Typed::Neg(Box::new(t), s), s)
            }
            Expr::Bin(op, a, b, pos) => {
                let (ta, sa) = self.check(a)?;
                let (tb, sb) = self.check(b)?;
                let (ta, tb, operand) = match (sa, sb) {
                    (Scalar::Bool, Scalar::Bool) if *op == BinOp::Eq => (ta, tb, Scalar::Bool),
                    (Scalar::Bool, _) | (_, Scalar::Bool) => {
                        return Err(ScriptError::new(
                            *pos,
                            format!(
                                "operator needs numbers, got {} and {}",
                                sa.name(),
                                sb.name()
                            ),
                        ))
                    }
                    (Scalar::Int, Scalar::Int) if *op != BinOp::Div => (ta, tb, Scalar::Int),
                    _ => (to_float(ta, sa), to_float(tb, sb), Scalar::Float),
                };
                let result = match op {
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => operand,
                    _ => Scalar::Bool,
                };
                (Typed::Bin(*op, Box::new(ta), Box::new(tb), operand), result)
            }
            Expr::If(c, a, b, pos) => {
                let (tc, sc) = self.check(c)?;
                if sc != Scalar::Bool {
                    return Err(ScriptError::new(
                        c.pos(),
                        format!("condition must be Bool, got {}", sc.name()),
                    ));
                }
                let (ta, sa) = self.check(a)?;
                let (tb, sb) = self.check(b)?;
                let (ta, tb, s) = if sa == sb {
                    (ta, tb, sa)
                } else if sa != Scalar::Bool && sb != Scalar::Bool {
                    (to_float(ta, sa), to_float(tb, sb), Scalar::Float)
                } else {
                    return Err(ScriptError::new(
                        *pos,
                        format!(
                            "branches have different types: {} and {}",
                            sa.name(),
                            sb.name()
                        ),
                    ));
                };
                (Typed::If(Box::new(tc), Box::new(ta), Box::new(tb), s), s)
            }
            Expr::Call(name, args, pos) => {
                let mut typed = Vec::new();
                let mut types = Vec::new();
                for a in args {
                    let (t, s) = self.check(a)?;
                    typed.push(t);
                    types.push(self.ty(s, *pos)?);
                }
                let f =
                    self.cx.engine().function(name).map_err(|_| {
                        ScriptError::new(*pos, format!("unknown function `{name}`"))
                    })?;
                let callee = self
                    .cx
                    .dispatch(f, &types)
                    .map_err(|e| ScriptError::new(*pos, e.to_string()))?;
                let def = callee
                    .method()
                    .source::<FnDef>()
                    .ok_or_else(|| ScriptError::new(*pos, "callee has no source"))?;
                let ret = Scalar::from_name(&def.ret.0)
                    .ok_or_else(|| ScriptError::new(*pos, "callee returns an abstract type"))?;
                match self.cx.compile(&callee) {
                    Ok(Callee::Ready(_) | Callee::InProgress) => {}
                    Err(CompileError::Phase { error, .. }) => return Err((*error).clone()),
                    Err(e) => return Err(ScriptError::new(*pos, e.to_string())),
                }
                let call = CalleeRef {
                    function: name.clone(),
                    args: types.iter().filter_map(scalar_of).collect(),
                };
                let callee = match self.callees.iter().position(|c| *c == call) {
                    Some(i) => i,
                    None => {
                        self.callees.push(call);
                        self.callees.len() - 1
                    }
                };
                (
                    Typed::Call {
                        callee,
                        args: typed,
                        ret,
                    },
                    ret,
                )
            }
        })
    }

    fn ty(&self, s: Scalar, pos: Pos) -> Result<Ty, ScriptError> {
        self.cx
            .engine()
            .lattice()
            .lookup(s.name())
            .map_err(|e| ScriptError::new(pos, e.to_string()))
    }
}

fn to_float(t: Typed, s: Scalar) -> Typed {
    if s == Scalar::Int {
        Typed::ToFloat(Box::new(t))
    } else {
        t
    }
}

impl Compiler for Jit {
    type Key = ();
    type Inferred = Inferred;
    type Artifact = Code;
    type Linked = Native;
    type Error = ScriptError;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<Inferred, ScriptError> {
        let def = cx
            .instance()
            .method()
            .source::<FnDef>()
            .cloned()
            .ok_or_else(|| ScriptError::new(Pos::default(), "method has no source"))?;
        let label = cx.instance().to_string();
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(label.clone());
        let mut params = Vec::new();
        for ((name, _, pos), t) in def.params.iter().zip(cx.instance().argtypes()) {
            let s = scalar_of(t).ok_or_else(|| {
                ScriptError::new(*pos, format!("cannot compile for abstract type {t}"))
            })?;
            params.push((name.clone(), s));
        }
        let ret = Scalar::from_name(&def.ret.0).ok_or_else(|| {
            ScriptError::new(
                def.ret.1,
                format!("return type must be concrete, got {}", def.ret.0),
            )
        })?;
        let scalars: Vec<Scalar> = params.iter().map(|p| p.1).collect();
        let mut checker = Checker {
            cx,
            params,
            callees: Vec::new(),
        };
        let (body, s) = checker.check(&def.body)?;
        let body = match (s, ret) {
            (a, b) if a == b => body,
            (Scalar::Int, Scalar::Float) => Typed::ToFloat(Box::new(body)),
            _ => {
                return Err(ScriptError::new(
                    def.body.pos(),
                    format!(
                        "`{}` is declared to return {} but its body is {}",
                        def.name,
                        ret.name(),
                        s.name()
                    ),
                ))
            }
        };
        let callees = checker.callees;
        Ok(Inferred {
            label,
            params: scalars,
            ret,
            body,
            callees,
        })
    }

    fn codegen(&self, _cx: &PhaseCx<'_, Self>, inferred: &Inferred) -> Result<Code, ScriptError> {
        let fail = |what: &str, e: String| {
            ScriptError::new(Pos::default(), format!("{what} {}: {e}", inferred.label))
        };
        let sig = self.signature(inferred.params.len());
        let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let raw: Vec<_> = b.block_params(entry).to_vec();
        let mut lower = Lower {
            b,
            callees: HashMap::new(),
            params: inferred
                .params
                .iter()
                .zip(raw)
                .map(|(s, v)| (*s, v))
                .collect(),
            call_conv: self.shared.isa.default_call_conv(),
        };
        let v = lower.expr(&inferred.body);
        let bits = lower.encode(v, inferred.ret);
        lower.b.ins().return_(&[bits]);
        lower.b.seal_all_blocks();
        lower.b.finalize(self.shared.isa.frontend_config());
        // Compile to machine code for the host; what refers outside the function (the callees'
        // slots) stays a relocation, resolved by link.
        let mut ctx = cranelift_codegen::Context::for_function(func);
        let compiled = ctx
            .compile(&*self.shared.isa, &mut Default::default())
            .map_err(|e| fail("compiling", format!("{:?}", e.inner)))?;
        let bytes = compiled.code_buffer().to_vec();
        let alignment = u64::from(compiled.buffer.alignment);
        let relocs: Vec<_> = compiled
            .buffer
            .relocs()
            .iter()
            .map(|r| (r.offset, r.kind, r.target.clone(), r.addend))
            .collect();
        let names = ctx.func.params.user_named_funcs();
        let mut slots = Vec::new();
        for (offset, kind, target, addend) in relocs {
            match (kind, target) {
                (Reloc::Abs8, FinalizedRelocTarget::ExternalName(ExternalName::User(name)))
                    if names[name].namespace == 1 =>
                {
                    slots.push(SlotReloc {
                        offset,
                        callee: names[name].index,
                        addend,
                    });
                }
                (kind, target) => {
                    return Err(fail(
                        "compiling",
                        format!("unexpected relocation {kind:?} to {target:?}"),
                    ))
                }
            }
        }
        Ok(Code {
            bytes,
            alignment,
            slots,
        })
    }

    fn link(&self, cx: &PhaseCx<'_, Self>, code: &Code) -> Result<Native, ScriptError> {
        let inferred = cx.inferred();
        let fail = |what: &str, e: String| {
            ScriptError::new(Pos::default(), format!("{what} {}: {e}", inferred.label))
        };
        // Bind each `calleeN` symbol to the callee's slot in this session.
        let mut builder = JITBuilder::with_isa(self.shared.isa.clone(), default_libcall_names());
        for (i, callee) in inferred.callees.iter().enumerate() {
            let mi = self
                .resolve(cx, callee)
                .map_err(|e| fail("resolving a callee of", e))?;
            let slot = self.shared.slot(mi.id(), Pos::default())?;
            builder.symbol(format!("callee{i}"), self.shared.slot_address(slot));
        }
        let own_slot = self.shared.slot(cx.instance().id(), Pos::default())?;
        let mut module = JITModule::new(builder);
        let id = module
            .declare_function(
                &format!("f{own_slot}"),
                Linkage::Local,
                &self.signature(inferred.params.len()),
            )
            .map_err(|e| fail("declaring", e.to_string()))?;
        // Declared in order, so that data id `i` is the symbol `u1:i` the code refers to.
        for i in 0..inferred.callees.len() {
            module
                .declare_data(&format!("callee{i}"), Linkage::Import, false, false)
                .map_err(|e| fail("declaring a callee of", e.to_string()))?;
        }
        if let Some(bad) = code
            .slots
            .iter()
            .find(|r| r.callee as usize >= inferred.callees.len())
        {
            return Err(fail("linking", format!("no callee {}", bad.callee)));
        }
        let relocs: Vec<ModuleReloc> = code
            .slots
            .iter()
            .map(|r| ModuleReloc {
                offset: r.offset,
                kind: Reloc::Abs8,
                name: ModuleRelocTarget::user(1, r.callee),
                addend: r.addend,
            })
            .collect();
        module
            .define_function_bytes(id, code.alignment, &code.bytes, &relocs)
            .map_err(|e| fail("loading", e.to_string()))?;
        module
            .finalize_definitions()
            .map_err(|e| fail("finalizing", e.to_string()))?;
        let entry = module.get_finalized_function(id) as usize;
        // The code must outlive every caller that may still jump to it (older worlds included),
        // so its module is kept for the life of the process.
        std::mem::forget(module);
        self.shared.table[own_slot].store(entry, Ordering::Release);
        Ok(Native {
            entry,
            arity: inferred.params.len(),
            ret: inferred.ret,
        })
    }
}

impl PersistentCompiler for Jit {
    fn version(&self) -> &str {
        &self.version
    }

    /// The definition's canonical text: positions and comments do not count.
    fn source_fingerprint(&self, method: &Method) -> Option<Fingerprint> {
        Some(Fingerprint::of(
            method.source::<FnDef>()?.canonical().as_bytes(),
        ))
    }

    fn loaded(&self, instance: &MethodInstance, _: &()) {
        self.shared
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance.to_string());
    }
}

struct Lower<'f> {
    b: FunctionBuilder<'f>,
    /// The symbol of each callee's slot, declared on first use.
    callees: HashMap<usize, GlobalValue>,
    params: Vec<(Scalar, cranelift_codegen::ir::Value)>,
    call_conv: cranelift_codegen::isa::CallConv,
}

type V = cranelift_codegen::ir::Value;

impl Lower<'_> {
    /// The symbol `u1:callee`: the address of the callee's call-table slot, bound at link.
    fn callee_slot(&mut self, callee: usize) -> GlobalValue {
        if let Some(gv) = self.callees.get(&callee) {
            return *gv;
        }
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(1, callee as u32));
        let gv = self.b.create_global_value(GlobalValueData::Symbol {
            name: ExternalName::user(name),
            offset: Imm64::new(0),
            colocated: false,
            tls: false,
        });
        self.callees.insert(callee, gv);
        gv
    }

    fn clif_type(s: Scalar) -> types::Type {
        match s {
            Scalar::Int => types::I64,
            Scalar::Float => types::F64,
            Scalar::Bool => types::I8,
        }
    }

    fn encode(&mut self, v: V, s: Scalar) -> V {
        match s {
            Scalar::Int => v,
            Scalar::Float => self.b.ins().bitcast(types::I64, MemFlagsData::new(), v),
            Scalar::Bool => self.b.ins().uextend(types::I64, v),
        }
    }

    fn decode(&mut self, v: V, s: Scalar) -> V {
        match s {
            Scalar::Int => v,
            Scalar::Float => self.b.ins().bitcast(types::F64, MemFlagsData::new(), v),
            Scalar::Bool => self.b.ins().ireduce(types::I8, v),
        }
    }

    fn expr(&mut self, e: &Typed) -> V {
        match e {
            Typed::Const(Value::Int(i)) => self.b.ins().iconst(types::I64, *i),
            Typed::Const(Value::Float(x)) => self.b.ins().f64const(*x),
            Typed::Const(Value::Bool(v)) => self.b.ins().iconst(types::I8, i64::from(*v)),
            Typed::Param(i, s) => {
                let (_, raw) = self.params[*i];
                self.decode(raw, *s)
            }
            Typed::Neg(inner, s) => {
                let v = self.expr(inner);
                match s {
                    Scalar::Float => self.b.ins().fneg(v),
                    _ => self.b.ins().ineg(v),
                }
            }
            Typed::ToFloat(inner) => {
                let v = self.expr(inner);
                self.b.ins().fcvt_from_sint(types::F64, v)
            }
            Typed::Bin(op, a, c, operand) => {
                let (x, y) = (self.expr(a), self.expr(c));
                let ins = self.b.ins();
                match (operand, op) {
                    (Scalar::Float, BinOp::Add) => ins.fadd(x, y),
                    (Scalar::Float, BinOp::Sub) => ins.fsub(x, y),
                    (Scalar::Float, BinOp::Mul) => ins.fmul(x, y),
                    (Scalar::Float, BinOp::Div) => ins.fdiv(x, y),
                    (Scalar::Float, cmp) => ins.fcmp(
                        match cmp {
                            BinOp::Lt => FloatCC::LessThan,
                            BinOp::Le => FloatCC::LessThanOrEqual,
                            BinOp::Gt => FloatCC::GreaterThan,
                            BinOp::Ge => FloatCC::GreaterThanOrEqual,
                            _ => FloatCC::Equal,
                        },
                        x,
                        y,
                    ),
                    (_, BinOp::Add) => ins.iadd(x, y),
                    (_, BinOp::Sub) => ins.isub(x, y),
                    (_, BinOp::Mul) => ins.imul(x, y),
                    (_, cmp) => ins.icmp(
                        match cmp {
                            BinOp::Lt => IntCC::SignedLessThan,
                            BinOp::Le => IntCC::SignedLessThanOrEqual,
                            BinOp::Gt => IntCC::SignedGreaterThan,
                            BinOp::Ge => IntCC::SignedGreaterThanOrEqual,
                            _ => IntCC::Equal,
                        },
                        x,
                        y,
                    ),
                }
            }
            Typed::If(c, a, e2, s) => {
                let cond = self.expr(c);
                let (then_b, else_b, join) = (
                    self.b.create_block(),
                    self.b.create_block(),
                    self.b.create_block(),
                );
                let result = self.b.append_block_param(join, Self::clif_type(*s));
                self.b.ins().brif(cond, then_b, &[], else_b, &[]);
                self.b.switch_to_block(then_b);
                let va = self.expr(a);
                self.b.ins().jump(join, &[va.into()]);
                self.b.switch_to_block(else_b);
                let vb = self.expr(e2);
                self.b.ins().jump(join, &[vb.into()]);
                self.b.switch_to_block(join);
                result
            }
            Typed::Call { callee, args, ret } => {
                let mut bits = Vec::new();
                for (a, s) in args.iter().map(|a| (a, scalar_of_typed(a))) {
                    let v = self.expr(a);
                    bits.push(self.encode(v, s));
                }
                let mut sig = Signature::new(self.call_conv);
                for _ in args {
                    sig.params.push(AbiParam::new(types::I64));
                }
                sig.returns.push(AbiParam::new(types::I64));
                let sig = self.b.import_signature(sig);
                let slot = self.callee_slot(*callee);
                let address = self.b.ins().symbol_value(types::I64, slot);
                let target = self
                    .b
                    .ins()
                    .load(types::I64, MemFlagsData::trusted(), address, 0);
                let call = self.b.ins().call_indirect(sig, target, &bits);
                let result = self.b.inst_results(call)[0];
                self.decode(result, *ret)
            }
        }
    }
}

/// The type an already type-checked expression has.
fn scalar_of_typed(e: &Typed) -> Scalar {
    match e {
        Typed::Const(v) => v.scalar(),
        Typed::Param(_, s) | Typed::Neg(_, s) | Typed::If(_, _, _, s) => *s,
        Typed::Bin(op, _, _, operand) => match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => *operand,
            _ => Scalar::Bool,
        },
        Typed::ToFloat(_) => Scalar::Float,
        Typed::Call { ret, .. } => *ret,
    }
}

/// Maps an engine error at `pos` to a script error.
pub fn at(pos: Pos) -> impl Fn(Error) -> ScriptError {
    move |e| ScriptError::new(pos, e.to_string())
}
