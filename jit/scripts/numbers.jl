# Multiple dispatch over the numeric hierarchy, recursion, and a redefinition.
fn half(x: Real) -> Float64 = x / 2
fn half(x: Int64) -> Int64 = if x < 0 then -half(-x) else hdiv(x, 0)
fn hdiv(x: Int64, acc: Int64) -> Int64 = if x < 2 then acc else hdiv(x - 2, acc + 1)
fn collatz(n: Int64, steps: Int64) -> Int64 =
    if n == 1 then steps else if n - half(n) * 2 == 0 then collatz(half(n), steps + 1) else collatz(3 * n + 1, steps + 1)
print half(7)
print half(7.0)
print half(-9)
print collatz(27, 0)
fn half(x: Float64) -> Float64 = x * 0.5
print half(7.0)
print collatz(27, 0)
