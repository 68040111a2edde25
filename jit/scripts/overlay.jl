# An overlay changes dispatch only for code compiled through it.
fn log_level(x: Int64) -> Int64 = 0
fn work(x: Int64) -> Int64 = x * 10 + log_level(x)
print work(4)
fn @debug log_level(x: Int64) -> Int64 = 9
print @debug work(4)
print work(4)
