//! [`RedisStore`]: artifacts shared by a fleet of processes through a Redis server.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{
    Client, Connection, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind,
};

use super::store::{ArtifactStore, RecordKey, StoreError, StoreStats};

/// The four bytes every value this store writes begins with, then the payload's length (`u64`,
/// little-endian), then the payload.
const MAGIC: &[u8; 4] = b"CCA1";
const HEADER: usize = MAGIC.len() + 8;
/// Records written in one pipelined round trip by [`RedisStore::put_batch`].
const BATCH: usize = 128;
/// The longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 256;

/// How a [`RedisStore`] connects, names its keys and behaves when the server fails.
///
/// `Debug` prints `"<redacted>"` for the password.
#[derive(Clone)]
pub struct RedisOptions {
    /// The namespace of this store's keys: a record is stored under `{prefix}:{key in hex}`.
    /// Stores of different compilers, compiler versions or tenants use different prefixes (for
    /// example `"mycompiler-1.4.2"`). 1 to [`MAX_PREFIX_LEN`] bytes, without whitespace,
    /// control characters or the glob characters `*?[]\` (so that an ACL key pattern
    /// `~{prefix}:*` matches exactly this namespace).
    pub prefix: String,
    /// How long establishing a connection (TCP connect, TLS handshake, `AUTH`, `SELECT`) may
    /// take. Default: 500 ms.
    pub connect_timeout: Duration,
    /// How long each read from and each write to the server may block. A command that gets no
    /// answer in that time returns [`StoreError::Timeout`]. Default: 250 ms.
    pub command_timeout: Duration,
    /// After a connection-level failure (refused, dropped, timed out, authentication), how long
    /// the store answers every call at once with [`StoreError::Unavailable`] before one call
    /// tries the server again. Default: 2 s.
    pub backoff: Duration,
    /// How many idle connections the store keeps. A call takes an idle connection or opens a
    /// new one, so concurrent callers never wait for each other's commands; after the call the
    /// connection goes back to the pool if fewer than `pool_size` are idle. Default: 8.
    pub pool_size: usize,
    /// The ACL user, overriding the URL's.
    pub username: Option<String>,
    /// The password, overriding the URL's. Never printed.
    pub password: Option<String>,
    /// An expiry set on every record written (`SET ... PX`), so that a namespace no process uses
    /// any more empties itself. Default: none (configure the server's `maxmemory-policy` to
    /// evict instead).
    pub ttl: Option<Duration>,
    /// The largest record accepted by `put` (a larger one returns [`StoreError::Full`] without
    /// a round trip). Default: 64 MiB.
    pub max_record_bytes: usize,
    /// For `rediss://` URLs: a PEM root certificate to trust instead of the system's roots (for
    /// a private certificate authority).
    #[cfg(feature = "redis-tls")]
    pub tls_root_certificate: Option<Vec<u8>>,
}

impl RedisOptions {
    /// The defaults, with the given key prefix.
    pub fn new(prefix: impl Into<String>) -> RedisOptions {
        RedisOptions {
            prefix: prefix.into(),
            ..RedisOptions::default()
        }
    }
}

impl Default for RedisOptions {
    /// The defaults listed on each field, and the prefix `"compiler-caching"`.
    fn default() -> RedisOptions {
        RedisOptions {
            prefix: "compiler-caching".into(),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(250),
            backoff: Duration::from_secs(2),
            pool_size: 8,
            username: None,
            password: None,
            ttl: None,
            max_record_bytes: 64 << 20,
            #[cfg(feature = "redis-tls")]
            tls_root_certificate: None,
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RedisOptions");
        s.field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("backoff", &self.backoff)
            .field("pool_size", &self.pool_size)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .field("max_record_bytes", &self.max_record_bytes);
        #[cfg(feature = "redis-tls")]
        s.field(
            "tls_root_certificate",
            &self.tls_root_certificate.as_ref().map(|pem| pem.len()),
        );
        s.finish()
    }
}

/// The state of a [`RedisStore`]'s connection to its server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisHealth {
    /// Whether the last call reached the server (false while backing off after a failure).
    pub available: bool,
    /// Times the store went from available to unavailable.
    pub outages: u64,
    /// Times it came back.
    pub recoveries: u64,
    /// Calls answered at once with [`StoreError::Unavailable`] during a backoff, without trying
    /// the server.
    pub skipped: u64,
    /// Connections opened.
    pub connections: u64,
    /// The last connection-level failure, with credentials removed.
    pub last_error: Option<String>,
}

/// An [`ArtifactStore`] on a Redis server, shared by every process that uses the same server
/// and key prefix: what one process compiled, the others load.
///
/// ```no_run
/// use std::time::Duration;
/// use compiler_caching::persist::{ArtifactStore, RecordKey, RedisOptions, RedisStore};
///
/// let store = RedisStore::open(
///     "redis://jit:secret@127.0.0.1:6379/0",
///     RedisOptions {
///         command_timeout: Duration::from_millis(100),
///         ..RedisOptions::new("mycompiler-1.4.2")
///     },
/// )?;
/// let key = RecordKey([1; 32]);
/// store.put(&key, b"an artifact record")?;
/// assert_eq!(store.get(&key)?.as_deref(), Some(&b"an artifact record"[..]));
/// println!("{store:?}"); // prints the URL as redis://jit:<redacted>@127.0.0.1:6379/0
/// # Ok::<(), compiler_caching::persist::StoreError>(())
/// ```
///
/// # Configuration
///
/// A URL `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS (with the
/// `redis-tls` feature), and [`RedisOptions`]: the key prefix, timeouts, backoff, pool size and
/// credentials (which override the URL's). Neither `Debug` nor any error or log message shows
/// the password.
///
/// # Records
///
/// A record is stored under `{prefix}:{64 hex digits of the key}` as a value of 12 header bytes
/// (`CCA1` and the payload's length) and the payload. Writes use `SET`: a later record of a key
/// replaces the earlier one, as the trait requires (the engine rewrites a record whose
/// dependencies changed under the same identity). Any number of processes may race on a key:
/// each writes a whole value, and whichever stays is a record a reader checks before using. A value whose header is missing or whose
/// length disagrees with its header (a truncated or foreign value) is answered with
/// [`StoreError::Corrupt`], never returned. The payload itself is opaque to the store: its
/// checksum is the reader's to verify (a [`LayeredStore`](super::layered::LayeredStore) does it
/// with [`LayeredOptions::verify`](super::layered::LayeredOptions::verify) before copying a
/// record into a faster tier).
///
/// # Failures
///
/// No call blocks longer than about the connect timeout plus the command timeout (per read or
/// write). [`RedisStore::open`] fails only on a bad URL or bad options: a server that is down
/// at start leaves the store *unavailable*, and it connects when the server comes up. After a
/// connection-level failure (refused, reset, timed out, authentication rejected) the store
/// counts it, logs it once (a `tracing` warning with the crate's `tracing` feature, target
/// `compiler_caching::persist`), drops its idle connections and, for [`RedisOptions::backoff`],
/// answers every call at once with [`StoreError::Unavailable`]; then the first call after the
/// backoff tries the server (the others keep being answered at once), and on success the store
/// is available again (logged once too). So when Redis is down, the cost is one timeout per
/// backoff period, and near nothing per call. Errors that concern one command (no permission,
/// server out of memory, a corrupt value) are returned without a backoff.
///
/// Host names are resolved by the system resolver, which the connect timeout does not bound:
/// use an address, or a name the resolver answers locally.
///
/// # Security
///
/// A shared store is **trusted input**: whatever a process reads from it, it may load and run
/// as machine code. The records' checksums protect against corruption — truncation, bit rot, a
/// foreign value under the prefix — not against a malicious writer, who can write a record with
/// a valid checksum. So:
///
/// - give each tenant its own key prefix and its own Redis ACL user restricted to that prefix,
///   e.g. `ACL SETUSER tenant-a on >password ~tenant-a:* +get +set +del +ping`, so that no
///   tenant can write another's records;
/// - use TLS (`rediss://`) whenever the connection leaves the host;
/// - never expose the server beyond a trusted network (bind it to loopback or a private
///   interface, require a password).
pub struct RedisStore {
    client: Client,
    options: RedisOptions,
    /// The URL with its password replaced.
    shown_url: String,
    /// Strings never to show: the password as written in the URL and as decoded.
    secrets: Vec<String>,
    idle: Mutex<Vec<Connection>>,
    epoch: Instant,
    /// 0 while available; else the time (ns since `epoch`, plus 1) until which calls are skipped.
    down_until: AtomicU64,
    last_error: Mutex<Option<String>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    hits: AtomicU64,
    puts: AtomicU64,
    removes: AtomicU64,
    errors: AtomicU64,
    outages: AtomicU64,
    recoveries: AtomicU64,
    skipped: AtomicU64,
    connections: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn invalid(reason: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        reason: reason.into(),
    }
}

impl RedisStore {
    /// Opens a store on the server at `url` (see the type's documentation), and tries to
    /// connect once, for at most the connect timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] for a URL that does not parse or is not `redis://` (or
    /// `rediss://` with the `redis-tls` feature), an invalid prefix, a zero timeout or pool
    /// size. A server that cannot be reached is no error: the store starts unavailable (see
    /// [`RedisStore::health`]) and connects when the server answers.
    pub fn open(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let Some(mut parsed) = redis::parse_redis_url(url) else {
            return Err(invalid("invalid Redis URL"));
        };
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err(invalid("a Redis URL begins with redis:// or rediss://")),
        };
        if tls && !cfg!(feature = "redis-tls") {
            return Err(invalid(
                "rediss:// needs the crate's redis-tls feature (TLS through rustls)",
            ));
        }
        check_prefix(&options.prefix)?;
        if options.connect_timeout.is_zero() || options.command_timeout.is_zero() {
            return Err(invalid("Redis timeouts must be longer than zero"));
        }
        if options.pool_size == 0 {
            return Err(invalid("the Redis pool size must be at least 1"));
        }

        let mut secrets = Vec::new();
        if let Some(raw) = parsed.password() {
            secrets.push(raw.to_owned());
        }
        let info = url
            .into_connection_info()
            .map_err(|_| invalid("invalid Redis URL"))?;
        if let Some(decoded) = info.redis_settings().password() {
            secrets.push(decoded.to_owned());
        }
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(user) = &options.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
            secrets.push(password.clone());
        }
        secrets.retain(|s| !s.is_empty());
        // The longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        // Commands are small writes each waiting for an answer: Nagle's algorithm would hold a
        // write back until the previous segment's acknowledgement.
        let info = info
            .set_redis_settings(settings)
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));

        let shown_url = redacted(&mut parsed);

        let client = open_client(info, &options).map_err(|e| {
            invalid(scrub(
                &format!("invalid Redis configuration: {e}"),
                &secrets,
            ))
        })?;
        let store = RedisStore {
            client,
            options,
            shown_url,
            secrets,
            idle: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            last_error: Mutex::new(None),
            counters: Counters::default(),
        };
        // Warm one connection; a failure only marks the store unavailable.
        let _ = store.ping();
        Ok(store)
    }

    /// Asks the server for a `PONG`: succeeds when the store is available now. Like every
    /// call, it is answered at once during a backoff.
    ///
    /// # Errors
    ///
    /// As [`ArtifactStore::get`].
    pub fn ping(&self) -> Result<(), StoreError> {
        self.run(|con| redis::cmd("PING").query::<()>(con))
    }

    /// The state of the connection to the server.
    pub fn health(&self) -> RedisHealth {
        let c = &self.counters;
        RedisHealth {
            available: self.down_until.load(Ordering::Acquire) == 0,
            outages: c.outages.load(Ordering::Relaxed),
            recoveries: c.recoveries.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            last_error: self.lock_last_error().clone(),
        }
    }

    /// The Redis key of a record: `{prefix}:{key in lowercase hex}`.
    pub fn redis_key(&self, key: &RecordKey) -> String {
        let mut s = String::with_capacity(self.options.prefix.len() + 65);
        s.push_str(&self.options.prefix);
        s.push(':');
        for byte in key.0 {
            s.push(char::from(HEX[usize::from(byte >> 4)]));
            s.push(char::from(HEX[usize::from(byte & 15)]));
        }
        s
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn backoff_ns(&self) -> u64 {
        u64::try_from(self.options.backoff.as_nanos()).unwrap_or(u64::MAX / 2)
    }

    fn lock_last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        bump(&self.counters.connections);
        let con = self
            .client
            .get_connection_with_timeout(self.options.connect_timeout)?;
        con.set_read_timeout(Some(self.options.command_timeout))?;
        con.set_write_timeout(Some(self.options.command_timeout))?;
        Ok(con)
    }

    /// Runs `op` on a pooled connection, honouring and updating the backoff.
    fn run<T>(
        &self,
        mut op: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let until = self.down_until.load(Ordering::Acquire);
        let probe = until != 0;
        if probe {
            // Unavailable: skip, unless the backoff is over and this call wins the right to try
            // (pushing the deadline on, so that the other callers keep skipping meanwhile).
            let now = self.now();
            if now < until
                || self
                    .down_until
                    .compare_exchange(
                        until,
                        now.saturating_add(self.backoff_ns()),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
            {
                bump(&self.counters.skipped);
                bump(&self.counters.errors);
                return Err(StoreError::Unavailable {
                    reason: "Redis unavailable: backing off after a failure".into(),
                });
            }
        }
        let mut pooled = if probe { None } else { self.lock_idle().pop() };
        loop {
            let reused = pooled.is_some();
            let mut con = match pooled.take() {
                Some(con) => con,
                None => match self.connect() {
                    Ok(con) => con,
                    Err(e) => return Err(self.failed(&e, true)),
                },
            };
            match op(&mut con) {
                Ok(value) => {
                    if con.is_open() {
                        let mut idle = self.lock_idle();
                        if idle.len() < self.options.pool_size {
                            idle.push(con);
                        }
                    }
                    self.succeeded();
                    return Ok(value);
                }
                // An idle connection the server closed (it restarted, or timed the connection
                // out): the others are likely closed too; retry once on a new connection. Every
                // command of this store may run twice (GET, DEL, SET).
                Err(e) if reused && !e.is_timeout() && is_connection_error(&e) => {
                    self.lock_idle().clear();
                }
                // The connection may hold half an answer: never reuse it.
                Err(e) => return Err(self.failed(&e, false)),
            }
        }
    }

    fn succeeded(&self) {
        if self.down_until.load(Ordering::Acquire) != 0
            && self.down_until.swap(0, Ordering::AcqRel) != 0
        {
            bump(&self.counters.recoveries);
            #[cfg(feature = "tracing")]
            tracing::info!(
                target: "compiler_caching::persist",
                url = %self.shown_url,
                "Redis artifact store available again"
            );
        }
    }

    /// Counts a failed call; after a failure to connect or of the connection (`connecting`, or
    /// as classified), starts the backoff.
    fn failed(&self, e: &RedisError, connecting: bool) -> StoreError {
        bump(&self.counters.errors);
        let (error, connection_level) = classify(e, &self.secrets);
        if connecting || connection_level {
            self.lock_idle().clear();
            let reason = match &error {
                StoreError::Unavailable { reason } => reason.clone(),
                other => other.to_string(),
            };
            *self.lock_last_error() = Some(reason);
            let until = self.now().saturating_add(self.backoff_ns());
            if self.down_until.swap(until, Ordering::AcqRel) == 0 {
                bump(&self.counters.outages);
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    target: "compiler_caching::persist",
                    url = %self.shown_url,
                    error = %error,
                    backoff = ?self.options.backoff,
                    "Redis artifact store unavailable; calls fail at once until the backoff ends"
                );
            }
        } else {
            // The server answered (with an error about this command): it is available.
            self.succeeded();
        }
        error
    }

    fn set_command(&self, key: &RecordKey, record: &[u8]) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key)).arg(frame(record));
        if let Some(ttl) = self.options.ttl {
            cmd.arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd
    }

    fn check_size(&self, record: &[u8]) -> Result<(), StoreError> {
        if record.len() > self.options.max_record_bytes {
            bump(&self.counters.errors);
            return Err(StoreError::Full);
        }
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(not(feature = "redis-tls"))]
fn open_client(info: redis::ConnectionInfo, _: &RedisOptions) -> Result<Client, RedisError> {
    Client::open(info)
}

#[cfg(feature = "redis-tls")]
fn open_client(info: redis::ConnectionInfo, options: &RedisOptions) -> Result<Client, RedisError> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // rustls needs a process-wide crypto provider; keep one another part of the process
        // installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(root) = &options.tls_root_certificate {
            return Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                },
            );
        }
    }
    Client::open(info)
}

/// The URL, its password (if any) replaced by `<redacted>`.
fn redacted(url: &mut url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let has_user = !url.username().is_empty();
    let _ = url.set_password(None);
    let mut shown = url.to_string();
    let authority = shown.find("://").map_or(0, |i| i + 3);
    if has_user {
        // Percent-encoding leaves one '@' in the authority: the one after the user.
        let at = shown[authority..]
            .find('@')
            .map_or(authority, |i| authority + i);
        shown.insert_str(at, ":<redacted>");
    } else {
        shown.insert_str(authority, ":<redacted>@");
    }
    shown
}

fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(format!(
            "a Redis key prefix has 1 to {MAX_PREFIX_LEN} bytes"
        )));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(*c))
    {
        return Err(invalid(format!(
            "a Redis key prefix has no whitespace, control or glob characters (found {c:?})"
        )));
    }
    Ok(())
}

/// Replaces every secret in `text`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

/// The store's error for a client error, and whether it concerns the connection (and so starts
/// a backoff) rather than one command.
fn classify(e: &RedisError, secrets: &[String]) -> (StoreError, bool) {
    let reason = || scrub(&e.to_string(), secrets);
    if e.is_timeout() {
        return (StoreError::Timeout, true);
    }
    if is_connection_error(e) {
        return (
            StoreError::Unavailable {
                reason: format!("Redis connection failed: {}", reason()),
            },
            true,
        );
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => (
            StoreError::Unavailable {
                reason: format!("Redis authentication failed: {}", reason()),
            },
            true,
        ),
        ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown) => (
            StoreError::Unavailable {
                reason: format!("Redis not ready: {}", reason()),
            },
            true,
        ),
        ErrorKind::Server(ServerErrorKind::NoPerm | ServerErrorKind::ReadOnly) => (
            StoreError::Unavailable {
                reason: format!(
                    "Redis refused the command ({}): {}",
                    e.code().unwrap_or("error"),
                    reason()
                ),
            },
            false,
        ),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => (
            StoreError::Corrupt {
                reason: format!("unexpected answer from Redis: {}", reason()),
            },
            false,
        ),
        _ if e.code() == Some("OOM") => (StoreError::Full, false),
        _ => (
            StoreError::Io {
                reason: format!("Redis error: {}", reason()),
            },
            false,
        ),
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// A record as stored: the header, then the payload.
fn frame(record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + record.len());
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&(record.len() as u64).to_le_bytes());
    value.extend_from_slice(record);
    value
}

/// The payload of a stored value, checking its header.
fn unframe(mut value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if value.len() < HEADER || &value[..MAGIC.len()] != MAGIC {
        return Err(StoreError::Corrupt {
            reason: format!("a {}-byte value without this store's header", value.len()),
        });
    }
    let mut len = [0; 8];
    len.copy_from_slice(&value[MAGIC.len()..HEADER]);
    let len = u64::from_le_bytes(len);
    let present = (value.len() - HEADER) as u64;
    if len != present {
        return Err(StoreError::Corrupt {
            reason: format!("a record of {len} bytes has {present}"),
        });
    }
    value.drain(..HEADER);
    Ok(value)
}

impl ArtifactStore for RedisStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        bump(&self.counters.gets);
        let name = self.redis_key(key);
        let value = self.run(|con| redis::cmd("GET").arg(&name).query::<Option<Vec<u8>>>(con))?;
        match value.map(unframe).transpose() {
            Ok(found) => {
                if found.is_some() {
                    bump(&self.counters.hits);
                }
                Ok(found)
            }
            Err(e) => {
                bump(&self.counters.errors);
                Err(e)
            }
        }
    }

    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        bump(&self.counters.puts);
        self.check_size(record)?;
        let cmd = self.set_command(key, record);
        self.run(|con| cmd.query::<redis::Value>(con).map(drop))
    }

    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        bump(&self.counters.removes);
        let name = self.redis_key(key);
        self.run(|con| redis::cmd("DEL").arg(&name).query::<i64>(con).map(drop))
    }

    /// Calls, hits and errors of this client. `bytes`, `records` and `evictions` are 0: the
    /// server's contents are shared and change under other clients (its `INFO` has them).
    fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            gets: c.gets.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            puts: c.puts.load(Ordering::Relaxed),
            removes: c.removes.load(Ordering::Relaxed),
            evictions: 0,
            errors: c.errors.load(Ordering::Relaxed),
            bytes: 0,
            records: 0,
        }
    }

    /// Writes the records in pipelines of up to 128 `SET` commands, one round trip each.
    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        self.counters
            .puts
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        for (_, record) in records {
            self.check_size(record)?;
        }
        for chunk in records.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for (key, record) in chunk {
                pipe.add_command(self.set_command(key, record)).ignore();
            }
            self.run(|con| pipe.query::<()>(con))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("options", &self.options)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_caught() {
        let value = frame(b"payload");
        assert_eq!(unframe(value.clone()).unwrap(), b"payload");
        let truncated = value[..value.len() - 1].to_vec();
        assert!(matches!(
            unframe(truncated),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            unframe(b"CCA1".to_vec()),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            unframe(b"something else entirely".to_vec()),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(unframe(frame(b"")).unwrap(), b"");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("mycompiler-1.4.2").is_ok());
        for bad in [
            "",
            "a b",
            "a*",
            "t[x]",
            "a\nb",
            &"x".repeat(MAX_PREFIX_LEN + 1),
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn scrub_removes_every_secret() {
        let secrets = vec!["s3cr%40t".to_owned(), "s3cr@t".to_owned()];
        assert_eq!(
            scrub("a s3cr@t and s3cr%40t", &secrets),
            "a <redacted> and <redacted>"
        );
    }
}
