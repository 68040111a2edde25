//! Redis servers for the tests and the perf harness of the Redis artifact store.
//!
//! [`RedisServer::start`] spawns `redis-server` on a free loopback port with persistence off,
//! waits until it answers `PING`, and kills it when dropped. [`shared`] is the server a test
//! uses when any server will do: the one `COMPILER_CACHING_REDIS_URL` names (CI starts one),
//! else a server of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the server tests may share, as `redis://127.0.0.1:PORT/`.
pub const URL_VAR: &str = "COMPILER_CACHING_REDIS_URL";

/// How to get a server, for failure messages.
pub const HOW_TO: &str = "the Redis store's tests need a Redis server: install redis-server \
(`apt-get install -y redis-server`; the tests then start their own), or start one \
(`redis-server --port 6390 --save '' --appendonly no`) and set \
COMPILER_CACHING_REDIS_URL=redis://127.0.0.1:6390/";

/// A `redis-server` process of this test, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

/// A free loopback port (the OS's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl RedisServer {
    /// Starts a server on a free port. Panics, saying how to install one, if `redis-server` is
    /// not on the path.
    pub fn start() -> RedisServer {
        RedisServer::start_with::<&str>(&[])
    }

    /// Starts a server on a free port with extra configuration arguments (`["--requirepass",
    /// "x"]`).
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            // Another process may take the port between the choice and the bind: try again.
            match RedisServer::try_start(free_port(), args) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// Starts a server on `port` (to restart one where its clients expect it).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start::<&str>(port, &[])
            .unwrap_or_else(|e| panic!("could not start redis-server: {e}"))
    }

    fn try_start<S: AsRef<std::ffi::OsStr>>(port: u16, args: &[S]) -> Result<RedisServer, String> {
        let port_arg = port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{e}. {HOW_TO}"))?;
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                server.child = None;
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if ping(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING in 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server's process (SIGSTOP): connections are accepted by the kernel, nothing
    /// is answered, until [`RedisServer::resume`].
    pub fn freeze(&self) {
        assert!(self.signal("-STOP"), "kill -STOP failed");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn resume(&self) {
        assert!(self.signal("-CONT"), "kill -CONT failed");
    }

    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Sends one command and returns the server's reply (see [`command`]).
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT"); // a frozen process dies of SIGKILL too; this is for tidiness
        }
        self.kill();
    }
}

/// A server for a test that only needs one to exist: the one `COMPILER_CACHING_REDIS_URL`
/// names, or else one of its own (kept alive by the value).
#[derive(Debug)]
pub enum Shared {
    /// The server named by the environment.
    Env(String),
    /// A server started for this test.
    Own(RedisServer),
}

impl Shared {
    /// The server's URL.
    pub fn url(&self) -> String {
        match self {
            Shared::Env(url) => url.clone(),
            Shared::Own(server) => server.url(),
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        match self {
            Shared::Env(url) => url
                .rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches('/').parse().ok())
                .unwrap_or_else(|| panic!("{URL_VAR}={url}: expected redis://127.0.0.1:PORT/")),
            Shared::Own(server) => server.port(),
        }
    }
}

/// The server tests share (see [`Shared`]). Panics with instructions if there is none.
pub fn shared() -> Shared {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => {
            let shared = Shared::Env(url);
            assert!(
                ping(shared.port()),
                "{URL_VAR}={} does not answer PING. {HOW_TO}",
                shared.url()
            );
            shared
        }
        _ => Shared::Own(RedisServer::start()),
    }
}

/// Whether a server answers `PING` on the loopback port within a second.
pub fn ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A server's reply to [`command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and the like.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// A bulk string, or nil.
    Bulk(Option<Vec<u8>>),
    /// An array (of replies).
    Array(Vec<Reply>),
}

/// Sends one command on a new connection to the loopback port and returns the reply. For
/// setting a server up from a test (`CONFIG SET`, `ACL SETUSER`, writing a raw value).
pub fn command(port: u16, args: &[&[u8]]) -> Reply {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request).expect("send to redis-server");
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read from redis-server");
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Reply::Simple(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().expect("integer reply")),
        "$" => {
            let len: i64 = rest.parse().expect("bulk length");
            if len < 0 {
                return Reply::Bulk(None);
            }
            let mut data = vec![0; len as usize + 2];
            reader.read_exact(&mut data).expect("bulk reply");
            data.truncate(len as usize);
            Reply::Bulk(Some(data))
        }
        "*" => {
            let len: i64 = rest.parse().expect("array length");
            Reply::Array((0..len.max(0)).map(|_| read_reply(reader)).collect())
        }
        _ => panic!("unexpected reply from redis-server: {line:?}"),
    }
}

/// The files of a server's TLS setup (see [`tls_files`]).
#[derive(Debug)]
pub struct TlsFiles {
    /// The certificate authority's certificate (PEM): what clients trust.
    pub ca: std::path::PathBuf,
    /// The server's certificate, for `127.0.0.1` and `localhost`, signed by the authority.
    pub cert: std::path::PathBuf,
    /// The server's private key.
    pub key: std::path::PathBuf,
}

impl TlsFiles {
    /// The `redis-server` arguments serving TLS on `port` with these files (clients need no
    /// certificate of their own).
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_owned();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&self.cert),
            "--tls-key-file".into(),
            path(&self.key),
            "--tls-ca-cert-file".into(),
            path(&self.ca),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}

/// Makes a private certificate authority and a server certificate it signed, in `dir`, with
/// the `openssl` command (P-256 keys, valid for two days).
pub fn tls_files(dir: &std::path::Path) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("create the TLS directory");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e} (install it: apt-get install -y openssl)"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let ca = format!("req -x509 {key} -keyout ca.key -out ca.pem -days 2");
    run(&[
        &ca.split(' ').collect::<Vec<_>>()[..],
        &["-subj", "/CN=compiler-caching test CA"],
    ]
    .concat());
    let csr = format!("req {key} -keyout server.key -out server.csr");
    run(&[
        &csr.split(' ').collect::<Vec<_>>()[..],
        &["-subj", "/CN=localhost"],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write server.ext");
    let sign = "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                -out server.pem -days 2 -extfile server.ext";
    run(&sign.split_whitespace().collect::<Vec<_>>());
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}
