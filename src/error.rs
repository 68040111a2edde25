//! Typed errors. Nothing the engine is given makes it panic: every bad input below is reported
//! as a value that says what was wrong.

use std::fmt;
use std::sync::Arc;

use crate::world::World;

/// A type declaration or a type that the lattice cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// No type of that name was declared.
    #[error("unknown type `{name}`")]
    UnknownType {
        /// The name looked up.
        name: String,
    },
    /// A type of that name already exists.
    #[error("type `{name}` is already declared")]
    DuplicateType {
        /// The name declared twice.
        name: String,
    },
    /// The parents named by a batch of declarations form a cycle.
    #[error("cyclic type declaration among {}", names.join(", "))]
    CyclicDeclaration {
        /// The types on (or hanging below) the cycle, sorted.
        names: Vec<String>,
    },
    /// Concrete types are leaves: they cannot be parents.
    #[error("type `{name}` cannot have concrete type `{parent}` as its parent")]
    ConcreteParent {
        /// The type being declared.
        name: String,
        /// Its would-be parent.
        parent: String,
    },
    /// A parent must be `Any` or a declared abstract type, not a union, tuple or `Bottom`.
    #[error("type `{name}` cannot have `{parent}` as its parent")]
    InvalidParent {
        /// The type being declared.
        name: String,
        /// Its would-be parent.
        parent: String,
    },
    /// The type was made by another lattice (another engine).
    #[error("type `{ty}` belongs to another engine")]
    ForeignType {
        /// The offending type.
        ty: String,
    },
    /// Names must be non-empty, at most 1024 bytes, free of whitespace, control characters and
    /// `{}(),:`, and not a built-in name (`Any`, `Bottom`, `Union`, `Tuple`).
    #[error("`{name}` is not a valid type name")]
    InvalidName {
        /// The rejected name (shortened if long).
        name: String,
    },
    /// A union or tuple would nest deeper than the limit ([`MAX_TYPE_DEPTH`](crate::MAX_TYPE_DEPTH)).
    #[error("types may nest at most {limit} levels deep")]
    TooDeep {
        /// The limit.
        limit: u32,
    },
    /// `Bottom` was given where a type of values is needed: no value has it, so no call can have
    /// it as an argument type and no method for it could ever be called.
    #[error("`Bottom` has no values: it cannot be an argument type or in a signature")]
    Uninhabited,
    /// The lattice ran out of type ids (2^32 declarations).
    #[error("too many types declared")]
    TooManyTypes,
}

/// An error from an engine operation: defining functions and methods, dispatch, pinning worlds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A type in a signature or argument list was rejected by the lattice.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The function handle or name does not belong to this engine.
    #[error("unknown function `{function}`")]
    UnknownFunction {
        /// The function as given.
        function: String,
    },
    /// A function of that name already exists.
    #[error("function `{name}` is already declared")]
    DuplicateFunction {
        /// The name declared twice.
        name: String,
    },
    /// Function, table and cache names must be non-empty, at most 1024 bytes, and free of
    /// whitespace, control characters and `{}(),:`.
    #[error("`{name}` is not a valid name")]
    InvalidName {
        /// The rejected name (shortened if long).
        name: String,
    },
    /// An overlay table of that name already exists.
    #[error("method table `{name}` already exists")]
    DuplicateTable {
        /// The name given twice.
        name: String,
    },
    /// The engine ran out of ids for functions or tables (2^32 of them).
    #[error("too many {what}")]
    TooMany {
        /// What ran out.
        what: &'static str,
    },
    /// The owner key is not equal to itself (a float NaN under a hand-written `Eq`, say): code
    /// compiled for it could never be found again, so nothing is compiled.
    #[error("owner key {key} is not equal to itself")]
    KeyNotReflexive {
        /// The key, as `Debug` prints it.
        key: String,
    },
    /// The guard pins a world of another engine: only a guard of the cache's own engine can be
    /// used with it.
    #[error("the guard belongs to another engine")]
    ForeignGuard,
    /// The method table or table stack does not belong to this engine.
    #[error("unknown method table `{table}`")]
    UnknownTable {
        /// The table as given.
        table: String,
    },
    /// A function declared with a fixed arity was given a signature of another length.
    #[error("function `{function}` takes {expected} argument(s), got {found}")]
    ArityMismatch {
        /// The function's name.
        function: String,
        /// Its declared arity.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// No live method of the function applies to the argument types.
    #[error("no method of `{function}` matches {argtypes}")]
    NoMethod {
        /// The function's name.
        function: String,
        /// The argument types, formatted as a tuple.
        argtypes: String,
    },
    /// Several methods apply and none is more specific than every other one.
    ///
    /// Specificity is not transitive once unions appear, so the method that would have won (one
    /// no other applicable method beats) may still fail to beat some applicable method that a
    /// third one beats. The error names the would-be winner and every applicable method it fails
    /// to beat: a method more specific than all of them resolves the call.
    #[error(
        "call {function}{argtypes} is ambiguous: {candidate} is not more specific than {}",
        rivals.join(", ")
    )]
    Ambiguous {
        /// The function's name.
        function: String,
        /// The argument types, formatted as a tuple.
        argtypes: String,
        /// The would-be winner, as `f(T1, T2)`: the oldest applicable method that no other
        /// applicable method beats (or, with a specificity relation that is not a strict order,
        /// the oldest applicable method).
        candidate: String,
        /// The applicable methods `candidate` is not more specific than, oldest first.
        rivals: Vec<String>,
    },
    /// The method is already deleted or replaced in the current world, or belongs to another
    /// engine.
    #[error("method {method} is not live")]
    MethodNotLive {
        /// The method, as `f(T1, T2)`.
        method: String,
    },
    /// The world is older than the oldest world still retained (see [`crate::semantics`] §8).
    #[error("world {world} is no longer retained (oldest retained: {oldest})")]
    WorldNotRetained {
        /// The world asked for.
        world: World,
        /// The oldest world that can still be pinned.
        oldest: World,
    },
    /// The world has not happened yet.
    #[error("world {world} is in the future (current: {current})")]
    FutureWorld {
        /// The world asked for.
        world: World,
        /// The current world.
        current: World,
    },
}

/// One of the three compilation phases.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Phase {
    /// Type inference: records dependencies and creates the code instance.
    Infer,
    /// Code generation: produces a serializable artifact.
    Codegen,
    /// Linking: turns the artifact into a session-local value.
    Link,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Infer => "infer",
            Phase::Codegen => "codegen",
            Phase::Link => "link",
        })
    }
}

/// An error from [`CompilerCache::compile`](crate::CompilerCache::compile). Cloning is cheap, so
/// every caller that waited on a failed compilation receives the same error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError<E> {
    /// An engine operation failed (for example a dispatch the phase made through its context).
    #[error(transparent)]
    Engine(#[from] Error),
    /// A phase returned an error.
    #[error("{phase} of {instance} failed: {error}")]
    Phase {
        /// The phase that failed.
        phase: Phase,
        /// The method instance being compiled, as `f(T1, T2)`.
        instance: String,
        /// The phase's error.
        error: Arc<E>,
    },
    /// [`CompilerCache::compile`](crate::CompilerCache::compile) was called for an instance from
    /// inside that instance's own compilation; recursive compiles go through
    /// [`InferCx::compile`](crate::InferCx::compile), which detects the cycle.
    #[error(
        "compilation of {instance} re-entered itself; use InferCx::compile for recursive calls"
    )]
    Reentered {
        /// The method instance, as `f(T1, T2)`.
        instance: String,
    },
    /// A dependency `infer` recorded was not valid in the compilation's world, so no code
    /// instance could be published for it. The context checks what it records, so this is a
    /// defect in the engine if it is ever seen; the cache is unchanged and a later call retries.
    #[error("a dependency of {instance} was not valid in world {world}; nothing was published")]
    StaleDependency {
        /// The method instance being compiled, as `f(T1, T2)`.
        instance: String,
        /// The compilation's world.
        world: World,
    },
    /// A phase panicked; the panic was caught and the cache is intact.
    #[error("{phase} of {instance} panicked: {message}")]
    Panicked {
        /// The phase that panicked.
        phase: Phase,
        /// The method instance being compiled, as `f(T1, T2)`.
        instance: String,
        /// The panic's message, if it had a string payload.
        message: Arc<str>,
    },
}

impl<E> Clone for CompileError<E> {
    fn clone(&self) -> Self {
        match self {
            CompileError::Engine(e) => CompileError::Engine(e.clone()),
            CompileError::Phase {
                phase,
                instance,
                error,
            } => CompileError::Phase {
                phase: *phase,
                instance: instance.clone(),
                error: Arc::clone(error),
            },
            CompileError::Reentered { instance } => CompileError::Reentered {
                instance: instance.clone(),
            },
            CompileError::StaleDependency { instance, world } => CompileError::StaleDependency {
                instance: instance.clone(),
                world: *world,
            },
            CompileError::Panicked {
                phase,
                instance,
                message,
            } => CompileError::Panicked {
                phase: *phase,
                instance: instance.clone(),
                message: Arc::clone(message),
            },
        }
    }
}

/// `value` formatted with `Display`, for an error or a description. Formatting runs user code (a
/// custom lattice's types, sources): a panic there must not escape from an engine call that is
/// only reporting something, nor abort the process when the report is made while unwinding.
pub(crate) fn describe(value: &dyn fmt::Display) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| value.to_string()))
        .unwrap_or_else(|_| String::from("<a value whose Display panicked>"))
}

/// Like [`describe`], with `Debug` (owner keys).
pub(crate) fn describe_debug(value: &dyn fmt::Debug) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| format!("{value:?}")))
        .unwrap_or_else(|_| String::from("<a value whose Debug panicked>"))
}
