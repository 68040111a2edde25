# A tour of the engine through a tiny language. Types: Any > Number > Real >
# {Integer > {Int64, Bool}, Float64}. Methods are chosen by their argument types.

fn scale(x: Real) -> Float64 = 1.5
fn area(x: Int64) -> Float64 = x * x * scale(x)
fn area(x: Float64) -> Float64 = x * x * scale(x)
fn describe(x: Number) -> Int64 = 0
fn describe(x: Int64) -> Int64 = 1
fn describe(x: Bool) -> Int64 = 2

# First calls compile: area(Int64) pulls in scale(Int64).
print area(2)
print area(2.0)
print describe(3)
print describe(true)
print describe(2.5)

# Repeated calls hit the cache: nothing is compiled.
print area(2)

# Recursion compiles once and calls itself through the call table.
fn fib(n: Int64) -> Int64 = if n < 2 then n else fib(n - 1) + fib(n - 2)
print fib(25)

# Mutual recursion.
fn even(n: Int64) -> Bool = if n == 0 then true else odd(n - 1)
fn odd(n: Int64) -> Bool = if n == 0 then false else even(n - 1)
print even(10)

# A more specific method for the callee: only area(Int64) depended on that dispatch.
fn scale(x: Int64) -> Float64 = 10.0
print area(2)
print area(2.0)

# Redefining it again (same signature) replaces it: area(Int64) recompiles, nothing else.
fn scale(x: Int64) -> Float64 = 100.0
print area(2)
print area(2.0)

# A method for types nothing calls with invalidates nothing.
fn scale(x: Bool) -> Float64 = 0.0
print area(2)

# A "debug" overlay table: callers compiled through [debug, global] see it, others do not.
fn @debug scale(x: Int64) -> Float64 = -1.0
print @debug area(2)
print area(2)
